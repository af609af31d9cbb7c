"""The reference experiment, made repeatable: how sampling and retrieval change the replies.

Every condition answers the same validation exchanges (held-out episodes,
picked by seed) through the product's own replier, and is scored on:

- style: P(character) of the reply from a classifier trained on the
  training episodes (training/style.py): does it sound like him?
- relevance: embedding cosine of the reply to the dialogue it answers;
- answer similarity: embedding cosine of the reply to the scripted answer;
- ROUGE-L against the scripted answer; distinct-1 and distinct-2 over all
  replies; mean length in words; seconds per reply.

Conditions are (system, sampling, retrieval). Systems are each generator
variant (e.g. the base model and the fine-tuned one), "retrieval alone"
(the retrieved scripted line itself is the reply) and "scripted" (the
show's true answer, a reference point for the scores). Retrieval uses an
index of the training episodes only, so it can never hand the generator the
answer it is scored against.

    data = EvaluationData.load(transcripts, "Sheldon", seed=42, n=50)
    replier = sampled_replier(generator, SamplingPoint(0.7, 0.9), index, profile, 60, "Sheldon")
    replies = generated_replies(replier, condition, data.exchanges, "Sheldon", seed=42)
    row = Scorer(data.exchanges, style_scorer, embedder).score(replies)
    write_outputs(folder, rows, reply_lines(all_replies, data.exchanges), run, title)

The command (management/commands/evaluate_generator.py) puts these together.
"""

import csv
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.pipeline import build_exchanges, episode_names, read_transcripts, split_episodes

from .metrics import distinct_n, mean, rouge_l, words

# (temperature, top_p) points of the reference experiment.
REFERENCE_GRID = ((0.2, 0.1), (0.5, 0.5), (0.7, 0.8), (1.0, 0.95))
RETRIEVAL_ALONE = "retrieval alone"
SCRIPTED = "scripted"

# Column name, heading, and whether higher is better (None: neither).
METRICS = (
    ("style", "style P(char)", True),
    ("relevance", "relevance", True),
    ("answer_similarity", "sim. to answer", True),
    ("rouge_l", "ROUGE-L", True),
    ("distinct_1", "distinct-1", True),
    ("distinct_2", "distinct-2", True),
    ("mean_words", "mean words", None),
    ("seconds_per_reply", "s / reply", False),
)


@dataclass(frozen=True)
class SamplingPoint:
    """One (temperature, top_p) point of the evaluation grid; the decoder's whole setting is inference's `Sampling`."""

    temperature: float
    top_p: float

    @property
    def label(self):
        return f"T={self.temperature:g} p={self.top_p:g}"


def parse_samplings(text, default):
    """`0.2/0.1,0.7/0.8,default` -> [SamplingPoint, ...]; `default` is the product's sampling."""
    samplings = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item == "default":
            samplings.append(default)
            continue
        try:
            temperature, top_p = (float(value) for value in item.split("/"))
        except ValueError:
            raise ValueError(
                f"{item!r} is not a setting: write TEMPERATURE/TOP_P (e.g. 0.7/0.8) or `default`."
            ) from None
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(f"{item!r}: the temperature must be above 0 and top_p in (0, 1].")
        samplings.append(SamplingPoint(temperature, top_p))
    if not samplings:
        raise ValueError("No settings given: write e.g. `0.2/0.1,default`.")
    return list(dict.fromkeys(samplings))


@dataclass(frozen=True)
class DialogueTurn:
    speaker: str
    text: str


@dataclass(frozen=True)
class EvaluationExchange:
    """A validation exchange with its context's speakers, as the product would see it."""

    history: tuple  # DialogueTurn, oldest first, the question excluded
    question: str
    answer: str
    episode: str

    @property
    def dialogue(self):
        """The lines the reply answers, joined: what relevance is measured against."""
        return " ".join([*(turn.text for turn in self.history), self.question])


@dataclass
class EvaluationData:
    character: str
    seed: int
    train_lines: list  # ScriptLines of the training episodes (for the style classifier)
    train_exchanges: list  # pipeline Exchanges of the training episodes (for the retrieval index)
    exchanges: list  # EvaluationExchange, the n sampled from the validation episodes
    validation_episodes: int

    @classmethod
    def load(cls, transcripts, character, seed=42, n=50):
        lines = read_transcripts(transcripts)
        train_episodes, validation_episodes = split_episodes(episode_names(lines), seed=seed)
        exchanges = build_exchanges(lines, character)
        validation = [e for e in exchanges if e.episode in validation_episodes]
        if not validation:
            raise ValueError(
                f"The validation episodes of {transcripts} (seed {seed}) hold no exchange of {character}: "
                f"use a larger transcripts file or another seed."
            )
        picked = sorted(random.Random(seed).sample(range(len(validation)), min(n, len(validation))))
        speakers = {(line.episode, line.position): line.speaker for line in lines}
        return cls(
            character=character,
            seed=seed,
            train_lines=[line for line in lines if line.episode in train_episodes],
            train_exchanges=[e for e in exchanges if e.episode in train_episodes],
            exchanges=[_with_speakers(validation[i], speakers) for i in picked],
            validation_episodes=len(validation_episodes),
        )


def _with_speakers(exchange, speakers):
    # The context lines are the scene's lines right before the question, which
    # is right before the answer: positions are consecutive within an episode.
    first = exchange.answer_position - 1 - len(exchange.context)
    history = tuple(
        DialogueTurn(speakers[(exchange.episode, first + offset)], text) for offset, text in enumerate(exchange.context)
    )
    return EvaluationExchange(history, exchange.question, exchange.answer, exchange.episode)


@dataclass(frozen=True)
class Condition:
    system: str
    sampling: SamplingPoint | None  # None for the systems that do not sample
    retrieval: bool

    @property
    def label(self):
        parts = [self.system]
        if self.sampling:
            parts.append(self.sampling.label)
        if self.system != SCRIPTED:
            parts.append("with retrieval" if self.retrieval else "no retrieval")
        return ", ".join(parts)


@dataclass
class Replies:
    """What one condition said to every exchange."""

    condition: Condition
    texts: list = field(default_factory=list)
    seconds: list = field(default_factory=list)  # per reply
    retrieved: list = field(default_factory=list)  # the Hit given to the generator, or None
    fallback: list = field(default_factory=list)


class Scorer:
    """Scores a condition's replies against the exchanges they answer."""

    def __init__(self, exchanges, style_scorer, embedder):
        self.exchanges = exchanges
        self.style_scorer = style_scorer
        self.embedder = embedder
        self.dialogue_vectors = self.embed([e.dialogue for e in exchanges])
        self.answer_vectors = self.embed([e.answer for e in exchanges])

    def embed(self, texts):
        return self.embedder.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True)

    def score(self, replies):
        texts = replies.texts
        vectors = self.embed(texts)
        return {
            "system": replies.condition.system,
            "temperature": replies.condition.sampling.temperature if replies.condition.sampling else "",
            "top_p": replies.condition.sampling.top_p if replies.condition.sampling else "",
            "retrieval": replies.condition.retrieval,
            "n": len(texts),
            "style": mean(self.style_scorer.probabilities(texts)),
            "relevance": float(np.mean(np.sum(vectors * self.dialogue_vectors, axis=1))),
            "answer_similarity": float(np.mean(np.sum(vectors * self.answer_vectors, axis=1))),
            "rouge_l": mean(rouge_l(text, e.answer) for text, e in zip(texts, self.exchanges)),
            "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
            "mean_words": mean(len(words(text)) for text in texts),
            "seconds_per_reply": mean(replies.seconds),
            "retrieval_used": mean(hit is not None for hit in replies.retrieved),
            "fallback": mean(replies.fallback),
        }


# --- The product's machinery, set up for one condition ----------------------


def training_index(cache_dir, retriever_model, exchanges):
    """A retrieval index of these (training) exchanges, built once and cached on disk."""
    from inference.retrieval import IndexedExchange, cached_index

    indexed = [IndexedExchange(e.question, e.answer, e.episode, e.scene, tuple(e.context)) for e in exchanges]
    return cached_index(cache_dir, retriever_model, indexed)


def product_sampling(generator):
    """The sampling the product uses with this generator."""
    from inference.backends import backend_for

    sampling = backend_for(generator, 1).sampling
    return SamplingPoint(sampling["temperature"], sampling["top_p"])


def sampled_replier(generator, sampling, index, profile, max_new_tokens, character):
    """The product's replier, with this temperature and top_p in place of the product's."""
    from django.conf import settings

    from inference.backends import backend_for
    from inference.profiles import retrieval_threshold
    from inference.replier import Replier

    backend = backend_for(generator, max_new_tokens)
    # Everything else (top_k, repetition penalties) stays as the product has it;
    # an instance attribute shadows the backend class's sampling.
    backend.sampling = {**backend.sampling, "temperature": sampling.temperature, "top_p": sampling.top_p}
    return Replier(
        profile,
        backend,
        index=index,
        threshold=retrieval_threshold(profile.retriever_model),
        history_turns=settings.HISTORY_TURNS,
        character=character,
    )


# --- Producing the replies -------------------------------------------------


def scripted_replies(exchanges):
    replies = Replies(Condition(SCRIPTED, None, False))
    for exchange in exchanges:
        replies.texts.append(exchange.answer)
        replies.seconds.append(0.0)
        replies.retrieved.append(None)
        replies.fallback.append(False)
    return replies


def retrieval_alone_replies(index, exchanges, progress=None):
    """The best retrieved scripted line as the reply, whatever its score."""
    replies = Replies(Condition(RETRIEVAL_ALONE, None, True))
    for exchange in exchanges:
        started = time.perf_counter()
        hit = index.search([turn.text for turn in exchange.history], exchange.question, k=1)[0]
        replies.texts.append(hit.text)
        replies.seconds.append(time.perf_counter() - started)
        replies.retrieved.append(hit)
        replies.fallback.append(False)
        if progress is not None:
            progress.update(1)
    return replies


def generated_replies(replier, condition, exchanges, character, seed, batch_size=8, progress=None):
    """The replier's replies, a batch at a time, as the product makes them.

    Seconds per reply are the batch's wall time shared among its replies.
    """
    from transformers import set_seed

    from inference.replier import RequestState, Turn

    set_seed(seed)  # every condition samples from the same random state
    replies = Replies(condition)
    for start in range(0, len(exchanges), batch_size):
        batch = exchanges[start : start + batch_size]
        requests = [
            RequestState(
                [Turn("bot" if turn.speaker == character else "user", turn.text) for turn in exchange.history],
                exchange.question,
            )
            for exchange in batch
        ]
        for reply in replier.reply_many(requests):
            replies.texts.append(reply.text)
            replies.seconds.append(reply.seconds / len(batch))
            replies.retrieved.append(reply.retrieved)
            replies.fallback.append(reply.fallback)
        if progress is not None:
            progress.update(len(batch))
    return replies


# --- Outputs ---------------------------------------------------------------


def condition_label(row):
    sampling = f"T={row['temperature']:g} p={row['top_p']:g}" if row["temperature"] != "" else "-"
    return row["system"], sampling, "yes" if row["retrieval"] else "no"


def format_table(rows, markdown=False):
    """The results as an aligned text table (or a Markdown table)."""
    headings = ["system", "sampling", "retrieval", *(heading for _, heading, _ in METRICS), "retrieved used"]
    body = []
    for row in rows:
        values = [f"{row[name]:.3f}" if name != "mean_words" else f"{row[name]:.1f}" for name, _, _ in METRICS]
        body.append([*condition_label(row), *values, f"{row['retrieval_used']:.0%}"])
    if markdown:
        lines = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(cells[i]) for cells in [headings, *body]) for i in range(len(headings))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths))
        for cells in [headings, ["-" * width for width in widths], *body]
    )


def write_csv(rows, path):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path):
    """Rows written by write_csv, with their types back."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for name in row:
            if name == "retrieval":
                row[name] = row[name] == "True"
            elif name == "n":
                row[name] = int(row[name])
            elif name != "system" and row[name] != "":
                row[name] = float(row[name])
    return rows


def merge_runs(folders):
    """The rows and replies of several runs on the same exchanges, each condition once.

    Runs made apart (one per generator, in parallel, or on other machines)
    become one table; runs on other exchanges are refused.
    """
    runs = [json.loads((Path(folder) / "run.json").read_text()) for folder in folders]
    keys = {(run["transcripts"], run["character"], run["seed"], run["exchanges"]) for run in runs}
    if len(keys) > 1:
        raise ValueError(
            "These runs answered different exchanges (transcripts, character, seed or --n differ): "
            + "; ".join(f"{folder}: seed {run['seed']}, n {run['exchanges']}" for folder, run in zip(folders, runs))
        )
    rows, replies = [], []
    for folder in folders:
        # Conditions every run has (scripted, retrieval alone) are kept from the first.
        known_rows = {condition_label(row) for row in rows}
        known_replies = {json.loads(line)["condition"] for line in replies}
        rows += [row for row in read_csv(Path(folder) / "results.csv") if condition_label(row) not in known_rows]
        replies += [
            line
            for line in (Path(folder) / "replies.jsonl").read_text().splitlines()
            if json.loads(line)["condition"] not in known_replies
        ]
    # Each system's rows together, in the order of settings, without retrieval first.
    systems = list(dict.fromkeys(row["system"] for row in rows))
    rows.sort(
        key=lambda row: (systems.index(row["system"]), row["temperature"] or 0, row["top_p"] or 0, row["retrieval"])
    )
    return rows, replies, runs


def reply_lines(all_replies, exchanges):
    """Every reply beside its dialogue and scripted answer, as JSON lines."""
    return [
        json.dumps(
            {
                "condition": replies.condition.label,
                "dialogue": [f"{turn.speaker}: {turn.text}" for turn in exchange.history] + [exchange.question],
                "scripted": exchange.answer,
                "reply": text,
                "retrieved": {"text": hit.text, "score": round(hit.score, 4)} if hit else None,
                "fallback": fallback,
            },
            ensure_ascii=False,
        )
        for replies in all_replies
        for exchange, text, hit, fallback in zip(exchanges, replies.texts, replies.retrieved, replies.fallback)
    ]


def write_outputs(folder, rows, replies, run, title):
    """results.csv, results.md, replies.jsonl, metrics.png and run.json in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(rows, folder / "results.csv")
    (folder / "results.md").write_text(format_table(rows, markdown=True) + "\n")
    (folder / "replies.jsonl").write_text("".join(line + "\n" for line in replies))
    plot_metrics(rows, folder / "metrics.png", title)
    (folder / "run.json").write_text(json.dumps(run, indent=2) + "\n")


def plot_metrics(rows, path, title):
    """One panel per metric: each system's value over the sampling settings,
    with and without retrieval; systems that do not sample are flat lines."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    sampled = [row for row in rows if row["temperature"] != ""]
    # Settings from coolest to hottest along the x axis.
    by_heat = sorted(sampled, key=lambda row: (row["temperature"], row["top_p"]))
    settings = list(dict.fromkeys(condition_label(row)[1] for row in by_heat))
    series = list(dict.fromkeys((row["system"], row["retrieval"]) for row in sampled))
    flat = [row for row in rows if row["temperature"] == ""]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    systems = list(dict.fromkeys(row["system"] for row in rows))

    figure, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for axis, (name, heading, higher_is_better) in zip(axes.flat, METRICS):
        for system, retrieval in series:
            points = {
                condition_label(r)[1]: r[name] for r in by_heat if (r["system"], r["retrieval"]) == (system, retrieval)
            }
            axis.plot(
                [settings.index(s) for s in points],
                list(points.values()),
                "o-" if retrieval else "s--",
                color=colours[systems.index(system) % len(colours)],
                label=f"{system}, {'with' if retrieval else 'no'} retrieval",
            )
        for row in flat:
            axis.axhline(
                row[name],
                color=colours[systems.index(row["system"]) % len(colours)],
                linestyle=":",
                label=row["system"],
            )
        axis.set_xticks(range(len(settings)))
        axis.set_xticklabels(settings, rotation=30, ha="right", fontsize=8)
        direction = {True: " (higher is better)", False: " (lower is better)", None: ""}[higher_is_better]
        axis.set_title(heading + direction, fontsize=10)
        axis.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=9)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.08, 1, 0.96))
    figure.savefig(path, dpi=80)
    plt.close(figure)
