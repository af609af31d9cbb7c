"""Blind ratings of replies: the yardstick every reply system is judged by.

Validation exchanges of the show (held-out episodes, the split training uses)
are answered by several systems; the replies go into one sheet, shuffled per
item and without names, under a fixed rubric; raters answer in JSON lines;
the hidden key turns their ratings into a table per system with confidence
intervals.

    items = pick_items(lines, n=40, seed=1234)
    replies = {name: build_system(spec, lines, seed).replies(items) for name, spec in systems}
    write_sheet(folder, items, replies, seed)       # sheet.md, key.json, items.json
    rows, table = score(folder, ["rater-a.jsonl", "rater-b.jsonl"])

The staff "Compare replies" page scores its ratings with `summarize` too, so
the command and the page compute one thing. No torch at import: only the
`retrieved` system loads a model.
"""

import json
import math
import random
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from data.pipeline import ScriptLine, build_exchanges, episode_names, split_episodes

# Word for word what raters read at the top of every sheet and on the compare page.
# Never edit it: tables compare across versions only while it stays the same.
# (The source is ../shared/eval/blind-rubric.md; tests/training/test_blind.py checks they agree.)
RUBRIC = """\
You are rating replies in a chat with a fan-made bot that plays Sheldon Cooper of "The Big Bang Theory".
For each item you see the last lines of a scene and several candidate replies for Sheldon, in random order.
Some candidates may be the real scripted line; do not try to guess which, rate what you read.
Rate EVERY candidate on three 1-5 scales, independently:
- sense: is it fluent, coherent English that makes sense as a reply to the last line? (1 = word salad or
  contradicts itself, 3 = understandable but odd or generic, 5 = a natural, sensible reply)
- character: does it sound like Sheldon (precise, pedantic, literal, science references, social obliviousness)?
  (1 = nothing like him or like another character, 3 = neutral, 5 = unmistakably Sheldon)
- fit: does it respond to what was actually said (1 = ignores it, 5 = directly and specifically answers it)
and flag "bad": true when it is offensive, sexual or creepy beyond what the show would air, else false.
Answer with one JSON object per line and nothing else, one line per item:
{"item": 3, "A": {"sense": 4, "character": 2, "fit": 5, "bad": false}, "B": {...}, ...}"""

SCALES = ("sense", "character", "fit")
SCALE_RANGE = (1, 5)
GOOD_AT_LEAST = 4  # "good" = sense >= 4 and fit >= 4 and not bad
CONTEXT_LINES = 5
LAST_LINE_MARK = "<- the last line"
SPLIT_SEED = 42  # the episode split training uses
BOOTSTRAP_RESAMPLES = 2000
SHEET, KEY, ITEMS = "sheet.md", "key.json", "items.json"
BUILTIN_SPECS = ("scripted", "other", "retrieved")

_SPACES = re.compile(r"\s+")


class BlindError(ValueError):
    """Input a blind sheet or score cannot use; the message says what and where."""


@dataclass(frozen=True)
class Item:
    """An exchange to answer, as a rater sees it (plus the hidden true answer)."""

    id: int
    episode: str
    scene: int
    context: tuple  # (speaker, text) pairs, oldest first, at most CONTEXT_LINES
    line: tuple  # (speaker, text): the line to answer
    answer: str  # the character's scripted reply

    @classmethod
    def from_dict(cls, data: dict) -> "Item":
        return cls(
            id=int(data["id"]),
            episode=data["episode"],
            scene=int(data["scene"]),
            context=tuple(tuple(pair) for pair in data["context"]),
            line=tuple(data["line"]),
            answer=data["answer"],
        )


# --- Items ---------------------------------------------------------------------------------------


def pick_items(
    lines: list[ScriptLine], n: int, seed: int = 1234, character: str = "Sheldon", max_line_words: int | None = None
) -> list[Item]:
    """`n` exchanges of `character` from the validation episodes, spread across episodes.

    Only exchanges that answer another character's line count (a line that
    continues his own speech is no reply), and with `max_line_words` only
    those whose line to answer has at most that many words (a round on short
    messages: greetings, yes-or-no questions). Episodes take turns, each giving
    its exchanges in a seeded random order, so every validation episode
    contributes before any gives a second one.
    """
    if n < 1:
        raise BlindError("The number of exchanges must be at least 1.")
    by_episode = defaultdict(list)
    for item in split_items(lines, "validation", character):
        if max_line_words is None or len(item.line[1].split()) <= max_line_words:
            by_episode[item.episode].append(item)
    if not by_episode:
        if max_line_words is not None:
            raise BlindError(
                f"The validation episodes hold no exchange of {character} answering a line of at most "
                f"{max_line_words} words: allow more words."
            )
        raise BlindError(f"The validation episodes hold no exchange of {character}: use a larger transcripts file.")
    rng = random.Random(seed)
    episodes = sorted(by_episode)
    rng.shuffle(episodes)
    for episode in episodes:
        rng.shuffle(by_episode[episode])
    picked = []
    while len(picked) < n and any(by_episode.values()):
        for episode in episodes:
            if by_episode[episode] and len(picked) < n:
                picked.append(by_episode[episode].pop())
    return [replace(item, id=number) for number, item in enumerate(picked, start=1)]


def split_items(lines: list[ScriptLine], split: str, character: str = "Sheldon") -> list[Item]:
    """Every exchange of `character` in the `split` ("train" or "validation") episodes that answers another
    character's line, in script order, numbered from 1."""
    train, validation = split_episodes(episode_names(lines), seed=SPLIT_SEED)
    episodes = {"train": train, "validation": validation}[split]
    by_position = {(line.episode, line.position): line for line in lines}
    items = []
    for exchange in build_exchanges(lines, character):
        question = by_position[(exchange.episode, exchange.answer_position - 1)]
        if exchange.episode not in episodes or question.speaker == character:
            continue
        first = question.position - len(exchange.context)
        context = tuple(
            (by_position[(exchange.episode, first + offset)].speaker, text)
            for offset, text in enumerate(exchange.context)
        )
        items.append(
            Item(
                len(items) + 1,
                exchange.episode,
                exchange.scene,
                context,
                (question.speaker, question.text),
                exchange.answer,
            )
        )
    return items


# --- Systems -------------------------------------------------------------------------------------


class ReplySystem(Protocol):
    """What a system is to a sheet: one reply per item, in order."""

    def replies(self, items: list[Item]) -> list[str]: ...


class ScriptedSystem:
    """The show's true line."""

    def replies(self, items: list[Item]) -> list[str]:
        return [item.answer for item in items]


class OtherCharacterSystem:
    """A random line of another character from another episode: the floor a reply must beat."""

    def __init__(self, lines: list[ScriptLine], seed: int, character: str = "Sheldon"):
        self.lines = [line for line in lines if line.speaker != character]
        self.seed = seed

    def replies(self, items: list[Item]) -> list[str]:
        rng = random.Random(f"{self.seed}:other")
        replies = []
        for item in items:
            elsewhere = [line for line in self.lines if line.episode != item.episode]
            if not elsewhere:
                raise BlindError(f"`other` needs lines of other characters outside {item.episode!r}: there are none.")
            replies.append(rng.choice(elsewhere).text)
        return replies


def parse_systems(pairs: list[str]) -> dict[str, str]:
    """`["base=scripted", ...]` -> {name: spec}, in order; clear errors for bad or repeated names."""
    systems = {}
    for pair in pairs:
        name, separator, spec = pair.partition("=")
        name, spec = name.strip(), spec.strip()
        if not separator or not name or not spec:
            raise BlindError(f"{pair!r} is not NAME=SPEC (e.g. scripted=scripted, default=default).")
        if name in systems:
            raise BlindError(f"The system name {name!r} is given twice: each system needs its own name.")
        systems[name] = spec
    if not systems:
        raise BlindError("Give at least one system: --system NAME=SPEC.")
    return systems


def build_system(
    spec: str,
    lines: list[ScriptLine],
    seed: int,
    character: str = "Sheldon",
    transcripts: str | Path | None = None,
) -> ReplySystem:
    """An object with `.replies(items) -> list[str]` for `spec`.

    Built in: `scripted`, `other`, `retrieved` (optionally `retrieved:RETRIEVER`, a sentence-transformers
    model; default the profile's retriever): the best scripted line of the training episodes, which is
    `inference.systems` with no generated candidate. Every other spec goes to
    `inference.systems.build_system(spec, transcripts=transcripts)`.
    """
    kind, _, argument = spec.partition(":")
    if kind == "scripted" and not argument:
        return ScriptedSystem()
    if kind == "other" and not argument:
        return OtherCharacterSystem(lines, seed, character)
    if kind == "retrieved":
        spec = "candidates=0" + (f",retriever={argument}" if argument else "")
    try:
        from inference.systems import build_system as build_inference_system
    except ImportError as error:
        raise BlindError(
            f"The spec {spec!r} is no built-in ({', '.join(BUILTIN_SPECS)}) and inference.systems.build_system, "
            f"which builds every other spec, cannot be imported: {error}"
        ) from error
    try:
        # The transcripts the items came from, so its retrieval index leaves out the same episodes.
        return build_inference_system(spec, transcripts=transcripts)
    except (ValueError, LookupError) as error:
        raise BlindError(f"The spec {spec!r} is not understood by inference.systems.build_system: {error}") from error


def collect_replies(
    systems: dict[str, str], items: list[Item], build: Callable[[str], ReplySystem]
) -> dict[str, list[str]]:
    """{name: replies} from each system, checked to answer every item with text.

    Every spec is built before any system replies, so a bad spec fails at once.
    """
    built = {name: build(spec) for name, spec in systems.items()}
    replies = {}
    for name, system in built.items():
        texts = list(system.replies(items))
        if len(texts) != len(items) or not all(isinstance(text, str) for text in texts):
            raise BlindError(
                f"The system {name!r} gave {len(texts)} replies for {len(items)} items (need one text each)."
            )
        replies[name] = texts
    return replies


# --- The sheet -----------------------------------------------------------------------------------


def one_line(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def labels(count: int) -> list[str]:
    """A, B, ..., Z, AA, AB, ...: as many as candidates."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26] for i in range(count)]


def shuffled_candidates(item_id: int, replies: dict[str, str], seed: int) -> list[tuple[str, str, list[str]]]:
    """[(label, text, [systems])] for one item: each distinct text once, in a seeded order.

    `replies` is {system: text}. The order depends on the seed and the item
    only, so the same sheet is written again from the same inputs.
    """
    systems_by_text = defaultdict(list)
    for system, text in replies.items():
        systems_by_text[one_line(text)].append(system)
    texts = list(systems_by_text)
    random.Random(f"{seed}:{item_id}").shuffle(texts)
    return [(label, text, systems_by_text[text]) for label, text in zip(labels(len(texts)), texts)]


def write_sheet(
    folder: str | Path, items: list[Item], replies_by_system: dict[str, list[str]], seed: int, about: dict | None = None
) -> dict:
    """sheet.md (for raters), key.json (hidden: which label is which system) and items.json.

    `about` (e.g. the systems' specs, the transcripts) is kept in the key as it is.
    """
    folder = Path(folder)
    for name, texts in replies_by_system.items():
        if len(texts) != len(items):
            raise BlindError(f"{name!r} has {len(texts)} replies for {len(items)} items.")
    sections = [RUBRIC, ""]
    key_items, shown_items = {}, []
    for index, item in enumerate(items):
        candidates = shuffled_candidates(
            item.id, {name: texts[index] for name, texts in replies_by_system.items()}, seed
        )
        dialogue = [f"{speaker}: {one_line(text)}" for speaker, text in item.context]
        dialogue.append(f"{item.line[0]}: {one_line(item.line[1])} {LAST_LINE_MARK}")
        sections += [f"## Item {item.id}", "", *dialogue, ""]
        sections += [f"{label}: {text or '(empty reply)'}" for label, text, _ in candidates] + [""]
        key_items[str(item.id)] = {
            "episode": item.episode,
            "scene": item.scene,
            "answer": item.answer,
            "labels": {label: systems for label, _, systems in candidates},
        }
        shown_items.append({**asdict(item), "candidates": {label: text for label, text, _ in candidates}})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SHEET).write_text("\n".join(sections))
    key = {"seed": seed, "systems": list(replies_by_system), "about": about or {}, "items": key_items}
    (folder / KEY).write_text(json.dumps(key, indent=2, ensure_ascii=False) + "\n")
    (folder / ITEMS).write_text(json.dumps(shown_items, indent=2, ensure_ascii=False) + "\n")
    return key


def read_key(folder: str | Path) -> dict:
    path = Path(folder) / KEY
    try:
        key = json.loads(path.read_text())
        if not isinstance(key.get("systems"), list) or not isinstance(key.get("items"), dict):
            raise ValueError('it lacks "systems" or "items"')
    except FileNotFoundError:
        raise BlindError(f"No {KEY} in {folder}: give the folder `blind_sheet --output` wrote.") from None
    except (ValueError, KeyError, TypeError) as error:
        raise BlindError(f"{path} is not a blind sheet key: {error}") from error
    return key


def read_items(folder: str | Path) -> list[tuple[Item, dict[str, str]]]:
    """The items of a sheet, each with its shown candidates ({label: text})."""
    path = Path(folder) / ITEMS
    try:
        rows = json.loads(path.read_text())
        return [(Item.from_dict(row), row["candidates"]) for row in rows]
    except FileNotFoundError:
        raise BlindError(f"No {ITEMS} in {folder}: give the folder `blind_sheet --output` wrote.") from None
    except (ValueError, KeyError, TypeError) as error:
        raise BlindError(f"{path} is not a blind sheet's items file: {error}") from error


# --- Ratings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """One rater's rating of one system's reply to one item."""

    rater: str
    item: str
    system: str
    sense: int
    character: int
    fit: int
    bad: bool

    @property
    def good(self) -> bool:
        return self.sense >= GOOD_AT_LEAST and self.fit >= GOOD_AT_LEAST and not self.bad


def check_rating(rating: object, where: str) -> dict:
    """A candidate's {sense, character, fit, bad}, checked; BlindError says what is wrong and `where`."""
    if not isinstance(rating, dict):
        raise BlindError(f'{where}: expected {{"sense": .., "character": .., "fit": .., "bad": ..}}, got {rating!r}.')
    for scale in SCALES:
        if scale not in rating:
            raise BlindError(f"{where}: the scale {scale!r} is missing.")
        value = rating[scale]
        low, high = SCALE_RANGE
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BlindError(f"{where}: {scale} is {value!r}, it must be a whole number from {low} to {high}.")
    if not isinstance(rating.get("bad"), bool):
        raise BlindError(f'{where}: "bad" must be true or false, got {rating.get("bad")!r}.')
    return rating


def read_ratings(path: str | Path, key: dict | None = None) -> dict[str, dict[str, dict]]:
    """A rater's JSON lines: {item id: {label: rating}}.

    Blank lines and ``` fences are skipped. With the sheet's `key`, unknown
    items and labels and unrated candidates are refused too. Errors name the
    file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BlindError(f"Ratings file not found: {path}") from None
    except UnicodeDecodeError as error:
        raise BlindError(f"{path} is not UTF-8 text: {error}") from error
    ratings = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("```"):
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line)
        except ValueError as error:
            raise BlindError(f"{where} is not JSON: {error}") from error
        if not isinstance(row, dict) or "item" not in row:
            raise BlindError(f'{where}: expected an object with "item" and one entry per label.')
        item = str(row.pop("item"))
        if item in ratings:
            raise BlindError(f"{where}: item {item} is rated twice in this file.")
        if key is not None:
            if item not in key["items"]:
                raise BlindError(f"{where}: the sheet has no item {item}.")
            expected = set(key["items"][item]["labels"])
            unknown = sorted(set(row) - expected)
            if unknown:
                raise BlindError(
                    f"{where}: item {item} has no label(s) {', '.join(unknown)} (it has {', '.join(sorted(expected))})."
                )
            missing = sorted(expected - set(row))
            if missing:
                raise BlindError(f"{where}: item {item} lacks a rating of {', '.join(missing)}.")
        ratings[item] = {label: check_rating(rating, f"{where}, item {item}, {label}") for label, rating in row.items()}
    if not ratings:
        raise BlindError(f"{path} holds no ratings.")
    return ratings


def judgements(key: dict, ratings_by_rater: dict[str, dict]) -> list[Judgement]:
    """Each rater's ratings through the key: one Judgement per rater, item and system."""
    found = []
    for rater, ratings in ratings_by_rater.items():
        for item, by_label in ratings.items():
            for label, rating in by_label.items():
                for system in key["items"][item]["labels"][label]:
                    found.append(Judgement(rater, item, system, *(rating[scale] for scale in SCALES), rating["bad"]))
    return found


# --- Scores --------------------------------------------------------------------------------------

MEASURES = (*SCALES, "good", "flagged")


def _value(judgement: Judgement, measure: str) -> float:
    if measure == "good":
        return float(judgement.good)
    if measure == "flagged":
        return float(judgement.bad)
    return float(getattr(judgement, measure))


def mean_with_interval(item_values: list[float], rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean over items and its 95% percentile bootstrap interval (items resampled)."""
    values = np.asarray(item_values, dtype=float)
    if len(values) == 1:
        return float(values[0]), float(values[0]), float(values[0])
    resampled = values[rng.integers(0, len(values), size=(BOOTSTRAP_RESAMPLES, len(values)))].mean(axis=1)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def sign_test(up: int, down: int) -> float:
    """Two-sided exact sign test: how likely a split at least this uneven is when each item is a coin toss.

    With few items whose reply differs, a bootstrap over items can exclude zero on one lucky round (rounds 12
    and 14 of docs/evaluation.md did, and the next rounds did not repeat them); this counts those items."""
    up, down = int(up), int(down)  # numpy's counts would overflow 2**n past 62 items
    n = up + down
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(up, down) + 1)) / 2**n
    return min(1.0, 2 * tail)


def summarize(found: list[Judgement], systems: list[str] | None = None, seed: int = 0) -> list[dict]:
    """One row per system: each measure's mean with its 95% interval, n items, n raters,
    per-rater means and the largest gap between two raters' means.

    A measure is averaged over a system's raters per item first, then over
    items; the interval resamples items (seeded, so a table is reproducible).
    "good" and "flagged" are rates: each rater's verdict per item, averaged.
    """
    by_system = defaultdict(list)
    for judgement in found:
        by_system[judgement.system].append(judgement)
    order = list(systems or []) + sorted(set(by_system) - set(systems or []))
    rows = []
    for system in order:
        own = by_system.get(system)
        if not own:
            continue
        rng = np.random.default_rng(seed)
        by_item = defaultdict(list)
        by_rater = defaultdict(list)
        for judgement in own:
            by_item[judgement.item].append(judgement)
            by_rater[judgement.rater].append(judgement)
        row = {"system": system, "items": len(by_item), "raters": len(by_rater)}
        for measure in MEASURES:
            item_means = [np.mean([_value(j, measure) for j in each]) for each in by_item.values()]
            row[measure], row[f"{measure}_low"], row[f"{measure}_high"] = mean_with_interval(item_means, rng)
        row["per_rater"] = {
            rater: {measure: float(np.mean([_value(j, measure) for j in each])) for measure in MEASURES}
            for rater, each in sorted(by_rater.items())
        }
        row["rater_gap"] = max(
            (
                max(means[measure] for means in row["per_rater"].values())
                - min(means[measure] for means in row["per_rater"].values())
                for measure in SCALES
            ),
            default=0.0,
        )
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """The issue's table: system | sense | character | fit | good | flagged, each `mean [low, high]`."""
    items = max((row["items"] for row in rows), default=0)
    raters = max((row["raters"] for row in rows), default=0)
    heading = f"system ({items} exchanges, {raters} raters)"
    lines = [f"| {heading} | " + " | ".join(MEASURES) + " |", "|---" * (len(MEASURES) + 1) + "|"]
    for row in rows:
        cells = [f"{row[m]:.2f} [{row[m + '_low']:.2f}, {row[m + '_high']:.2f}]" for m in MEASURES]
        lines.append(f"| {row['system']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def agreement_lines(rows: list[dict]) -> list[str]:
    """Per system, each rater's means and the largest gap between two raters' means."""
    lines = []
    for row in rows:
        raters = "; ".join(
            f"{rater}: " + " ".join(f"{m} {means[m]:.2f}" for m in SCALES) for rater, means in row["per_rater"].items()
        )
        lines.append(f"- {row['system']}: {raters}; largest gap between raters {row['rater_gap']:.2f}")
    if rows:
        lines.append(
            "Largest gap between two raters' means, over every system and scale: "
            f"{max(row['rater_gap'] for row in rows):.2f}"
        )
    return lines


def paired(key: dict, found: list[Judgement], baseline: str) -> list[dict]:
    """Per other system, its difference from `baseline` item by item (the two systems' item means, over the
    items both answered): each measure's mean with a 95% bootstrap interval, on how many items it is rated
    higher (`_up`) and lower (`_down`) with the sign test's p of that split (`_p`), and on how many items the
    two showed different replies (an identical reply is shown once, so it differs by nothing)."""
    if baseline not in key["systems"]:
        raise BlindError(f"No system {baseline!r} in this sheet; its systems are {', '.join(key['systems'])}.")
    means = defaultdict(list)
    for judgement in found:
        means[(judgement.system, judgement.item)].append(judgement)
    rows = []
    for system in key["systems"]:
        items = [item for item in key["items"] if (system, item) in means and (baseline, item) in means]
        if system == baseline or not items:
            continue
        rng = np.random.default_rng(key.get("seed", 0))
        row = {"system": system, "against": baseline, "items": len(items)}
        row["differ"] = sum(
            not any({system, baseline} <= set(shown) for shown in key["items"][item]["labels"].values())
            for item in items
        )
        for measure in MEASURES[:4]:
            differences = [
                np.mean([_value(j, measure) for j in means[(system, item)]])
                - np.mean([_value(j, measure) for j in means[(baseline, item)]])
                for item in items
            ]
            row[measure], row[f"{measure}_low"], row[f"{measure}_high"] = mean_with_interval(differences, rng)
            row[f"{measure}_up"] = sum(difference > 0 for difference in differences)
            row[f"{measure}_down"] = sum(difference < 0 for difference in differences)
            row[f"{measure}_p"] = sign_test(row[f"{measure}_up"], row[f"{measure}_down"])
        rows.append(row)
    return rows


def format_paired(rows: list[dict]) -> str:
    """The paired table: system | each measure's mean difference [interval], items up and down, sign test p |
    items whose reply differs."""
    if not rows:
        return ""
    lines = [
        f"| against {rows[0]['against']}, item by item | " + " | ".join(MEASURES[:4]) + " | items whose reply differs |",
        "|---" * 6 + "|",
    ]
    for row in rows:
        cells = [
            f"{row[m]:+.2f} [{row[m + '_low']:+.2f}, {row[m + '_high']:+.2f}] "
            f"{row[m + '_up']} up {row[m + '_down']} down p {row[m + '_p']:.2f}"
            for m in MEASURES[:4]
        ]
        lines.append(f"| {row['system']} | " + " | ".join(cells) + f" | {row['differ']} of {row['items']} |")
    return "\n".join(lines)


def score(folder: str | Path, rating_files: list, against: str = "") -> tuple[list[dict], str]:
    """Rows and the Markdown table of a sheet's ratings, one rating file per rater; with `against`, the
    paired table of every system against that one follows."""
    key = read_key(folder)
    ratings_by_rater = {}
    for path in rating_files:
        rater = Path(path).stem
        if rater in ratings_by_rater:
            raise BlindError(f"Two rating files are named {rater!r}: a rater is known by the file name, rename one.")
        ratings_by_rater[rater] = read_ratings(path, key)
    found = judgements(key, ratings_by_rater)
    rows = summarize(found, key["systems"], seed=key.get("seed", 0))
    table = format_table(rows)
    if against:
        table += "\n\n" + format_paired(paired(key, found, against))
    return rows, table
