"""The retrieval threshold, calibrated against blind "fit" ratings instead of copied.

A blind sheet holds, for every item, the best scripted line the retriever found
(a system such as `retrieved=candidates=0`), rated for fit by two raters. Its
selector score is the cosine of the item's dialogue (`selector_query`) with the
line. The threshold is the lowest score at which the lines that pass are rated
relevant (mean fit >= 3) at least `min_precision` of the time: the lowest such
score fires most often while keeping that precision.

    scores, fits = rated_retrievals(folder, rating_files, "retrieved", retriever)
    calibration = calibrate(scores, fits)
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.prompts import selector_query
from training.blind import judgements, read_items, read_key, read_ratings

RELEVANT_FIT = 3  # a mean fit of at least this counts as relevant
MIN_FIRED = 5  # a threshold that passes fewer items says nothing


@dataclass(frozen=True)
class Calibration:
    threshold: float | None  # None: no threshold reaches the precision
    fire_rate: float  # share of the items whose line passes it
    precision: float  # share of those rated relevant
    items: int


def rated_retrievals(folder: str | Path, rating_files: list, system: str, retriever) -> tuple[list[float], list[float]]:
    """For each item of the sheet: the selector score of `system`'s line and its mean fit over the raters."""
    key = read_key(folder)
    found = [j for j in judgements(key, {str(path): read_ratings(path, key) for path in rating_files}) if j.system == system]
    if not found:
        raise ValueError(f"No ratings of the system {system!r} in {folder}.")
    fits = {}
    for judgement in found:
        fits.setdefault(str(judgement.item), []).append(judgement.fit)
    shown = {str(item.id): (item, candidates) for item, candidates in read_items(folder)}
    rated = sorted(fits, key=int)
    lines = [_reply_of(system, key["items"][item]["labels"], shown[item][1]) for item in rated]
    items = {item: shown[item][0] for item in rated}
    queries = [selector_query([text for _, text in items[item].context], items[item].line[1]) for item in rated]
    vectors = retriever.encode(queries + lines, normalize_embeddings=True, convert_to_numpy=True)
    scores = (vectors[: len(rated)] * vectors[len(rated) :]).sum(-1)
    return [float(s) for s in scores], [float(np.mean(fits[item])) for item in rated]


def _reply_of(system, labels, candidates):
    """The text `system` gave for an item: its label's candidate."""
    return next(candidates[label] for label, systems in labels.items() if system in systems)


def calibrate(scores: list[float], fits: list[float], min_precision: float = 0.7) -> Calibration:
    """The lowest threshold whose passing lines are relevant at least `min_precision` of the time."""
    if len(scores) != len(fits) or not scores:
        raise ValueError("Calibration needs one fit rating per score, and at least one of each.")
    scores_array, relevant = np.array(scores), np.array(fits) >= RELEVANT_FIT
    for threshold in sorted(set(scores)):
        fired = scores_array >= threshold
        if fired.sum() < MIN_FIRED:
            break
        if relevant[fired].mean() >= min_precision:
            return Calibration(round(threshold, 3), float(fired.mean()), float(relevant[fired].mean()), len(scores))
    return Calibration(None, 0.0, 0.0, len(scores))


def precision_table(scores: list[float], fits: list[float], thresholds: list[float]) -> str:
    """A markdown table: for each threshold, how often retrieval fires and how often it is relevant then."""
    scores_array, relevant = np.array(scores), np.array(fits) >= RELEVANT_FIT
    rows = ["| threshold | fires | relevant when it fires |", "| --- | --- | --- |"]
    for threshold in thresholds:
        fired = scores_array >= threshold
        precision = f"{relevant[fired].mean():.2f} ({fired.sum()})" if fired.any() else "-"
        rows.append(f"| {threshold:.2f} | {fired.mean():.2f} | {precision} |")
    return "\n".join(rows)
