"""Round 19: would a model of the raters' judgements choose better than the product's ranking?

A ridge regression from the shipped selector's embeddings of (dialogue, reply) to the raters' mean of sense
and fit, fitted on every rated reply of rounds 1-18 but the scripted true lines (its leave-one-round-out
check is printed first). The product's default answers 40 new validation exchanges that no earlier round
rated; `rater` chooses again from the same pools (the same candidates, the hard filters kept) by the
prediction alone. An experiment, not a product feature: the sheet went to two raters as usual and they rated
the choice no better than the default (docs/evaluation.md, round 19).

    python docs/evaluation/blind-r19/make_sheet.py
"""
import os
import sys
from dataclasses import replace
from pathlib import Path

import django
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
django.setup()

from data.corpus import find_transcripts  # noqa: E402
from data.pipeline import read_transcripts  # noqa: E402
from inference.loading import read_retriever  # noqa: E402
from inference.prompts import selector_query  # noqa: E402
from inference.systems import build_system  # noqa: E402
from training.blind import pick_items, read_items, read_key, read_ratings, write_sheet  # noqa: E402

HERE = Path(__file__).resolve().parent
ROUNDS = [HERE.parent / f"blind-r{n}" for n in range(1, 19)]
SEED = 5050
ALPHA = 1000.0
EXCHANGES = 40


def rated_replies():
    """(round, item key, query, reply, mean of sense and fit) of every rated reply but the true lines."""
    rows = []
    for number, folder in enumerate(ROUNDS, start=1):
        key = read_key(folder)
        ratings = [read_ratings(path, key) for path in sorted(folder.glob("ratings-*.jsonl"))]
        for item, candidates in read_items(folder):
            query = selector_query([text for _, text in item.context], item.line[1])
            for label, text in candidates.items():
                if {"scripted", "other"} & set(key["items"][str(item.id)]["labels"][label]):
                    continue
                marks = [rating[str(item.id)][label] for rating in ratings if str(item.id) in rating]
                value = float(np.mean([(mark["sense"] + mark["fit"]) / 2 for mark in marks]))
                rows.append((number, (item.episode, item.line[1], item.answer), query, text, value))
    return rows


def features(model, queries, replies):
    q = model.encode(queries, normalize_embeddings=True, show_progress_bar=False)
    r = model.encode(replies, normalize_embeddings=True, show_progress_bar=False)
    cosine = (q * r).sum(1, keepdims=True)
    words = np.log([max(1, len(text.split())) for text in replies])[:, None]
    return np.hstack([q * r, r, words, cosine])


def fit_ridge(x, y):
    mean, spread = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / spread
    weights = np.linalg.solve(z.T @ z + ALPHA * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return lambda new: ((new - mean) / spread) @ weights + y.mean()


def pairwise_agreement(predicted, y, groups):
    agree = total = 0
    for group in set(groups):
        index = [i for i, g in enumerate(groups) if g == group]
        for a in index:
            for b in index:
                if a < b and abs(y[a] - y[b]) >= 0.5:
                    total += 1
                    agree += (predicted[a] - predicted[b]) * (y[a] - y[b]) > 0
    return agree / total, total


def main() -> None:
    selector = read_retriever(str(Path(__file__).resolve().parents[3] / "models" / "sheldon-selector"))
    rows = rated_replies()
    x = features(selector, [row[2] for row in rows], [row[3] for row in rows])
    y = np.array([row[4] for row in rows])
    rounds = np.array([row[0] for row in rows])
    predicted = np.zeros(len(y))
    for number in set(rounds):
        held = rounds == number
        predicted[held] = fit_ridge(x[~held], y[~held])(x[held])
    groups = [f"{row[0]}:{row[1]}" for row in rows]
    agreement, pairs = pairwise_agreement(predicted, y, groups)
    cosine_agreement, _ = pairwise_agreement(x[:, -1], y, groups)
    print(f"{len(rows)} rated replies; leave-one-round-out: the model orders {agreement:.3f} of {pairs} pairs of one "
          f"item's replies as the raters did (the selector's cosine {cosine_agreement:.3f})")
    rater = fit_ridge(x, y)

    lines = read_transcripts(find_transcripts()[0])
    seen = {row[1] for row in rows}
    items = [item for item in pick_items(lines, 400, SEED) if (item.episode, item.line[1], item.answer) not in seen]
    items = [replace(item, id=number) for number, item in enumerate(items[:EXCHANGES], start=1)]
    replies = build_system("candidates=4").generate(items)
    default, chosen, moved = [], [], 0
    for item, reply in zip(items, replies):
        query = selector_query([text for _, text in item.context], item.line[1])
        allowed = [c for c in reply.candidates if not c.rejected] or [c for c in reply.candidates if c.rejected != "content"]
        scores = rater(features(selector, [query] * len(allowed), [c.text for c in allowed]))
        best = allowed[int(np.argmax(scores))].text
        default.append(reply.text)
        chosen.append(best)
        moved += best != reply.text
    print(f"{len(items)} new items; the rater's choice differs from the default's on {moved}")
    write_sheet(HERE, items, {"scripted": [item.answer for item in items], "default": default, "rater": chosen}, SEED,
                {"specs": {"scripted": "scripted", "default": "candidates=4", "rater": "candidates=4, chosen by the "
                           "ridge model of rounds 1-18's ratings (make_sheet.py)"}})


if __name__ == "__main__":
    main()
