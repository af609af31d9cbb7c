"""Reply systems for blind comparisons: a spec string names a configuration of the replier.

    system = build_system("candidates=4,scripted=5,temperature=0.7")
    texts = system.replies(items)      # items: training.blind.Item, one reply each

A spec is comma-separated `key=value` pairs; what is left out is the product's
setting. Keys:

    candidates   replies sampled per request (1: no ranking among generated ones; 0: none at all,
                 the reply is the best retrieved scripted line, whatever its score)
    scripted     retrieved scripted lines that compete with them (0: none)
    threshold    lowest selector score of a retrieved line (prompt and pool)
    prompt_hit   1: the best retrieved exchange over the threshold goes into the prompt; 0: only into the pool
    sentences    a reply ends after this many sentences (0: at the token limit)
    temperature, top_p, top_k, min_p, repetition_penalty   the generator's sampling
    fluency, length, pmi   the ranking's weights (inference.selection.RankWeights; pmi: the
                 candidate's pointwise mutual information with the dialogue, 0 = off)
    adapter      `default` (the profile's), `none`, or a LoRA adapter folder
    retriever    `default` (the profile's), `none`, or a sentence-transformers folder
    generator    `default` (the profile's) or a model folder / hub id / .gguf file
    seed         torch's seed before generating (default 1234)

The retrieval index of a system holds the training episodes only (the
validation episodes' lines would give the answers away); it is built once per
retriever and data under VAR_DIR/evaluation/cache/.
"""
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from django.conf import settings

from data.pipeline import build_exchanges, episode_names, read_transcripts, split_episodes

from .profiles import DISABLED, active_profile, retrieval_threshold
from .selection import RankWeights

if TYPE_CHECKING:
    from pathlib import Path

    from training.blind import Item

    from .replier import Replier, Reply
    from .retrieval import RetrievalIndex

_SAMPLING_KEYS = {"temperature": float, "top_p": float, "top_k": int, "min_p": float, "repetition_penalty": float}
_WEIGHT_KEYS = {"fluency": float, "length": float, "pmi": float}
_KEYS = {
    "candidates": int, "scripted": int, "threshold": float, "sentences": int, "seed": int, "prompt_hit": int,
    **_SAMPLING_KEYS, **_WEIGHT_KEYS,
}
_MODEL_KEYS = ("adapter", "retriever", "generator")
BATCH = 8  # dialogues generated together


class SystemSpecError(ValueError):
    """A spec that cannot be read; the message says which part and why."""


@dataclass(frozen=True)
class SystemSpec:
    candidates: int
    scripted: int
    threshold: float
    sentences: int
    sampling: dict
    adapter: str
    retriever: str
    generator: str
    weights: dict
    seed: int = 1234
    prompt_hit: int = 1


def parse_spec(spec: str) -> SystemSpec:
    """The spec string as a SystemSpec over the product's settings."""
    profile = active_profile()
    values = {
        "candidates": settings.REPLY_CANDIDATES,
        "scripted": settings.SCRIPTED_CANDIDATES,
        "threshold": None,  # the spec's retriever's, unless named
        "sentences": settings.REPLY_MAX_SENTENCES,
        "seed": 1234,
        "prompt_hit": int(settings.RETRIEVAL_IN_PROMPT),
        "adapter": profile.generator_adapter,
        "retriever": profile.retriever_model,
        "generator": profile.generator_model,
    }
    sampling, weights = {}, {}
    for part in filter(None, (piece.strip() for piece in spec.split(","))):
        key, separator, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not separator or not value:
            raise SystemSpecError(f"{part!r} in the spec {spec!r} is not key=value.")
        if key in _MODEL_KEYS:
            values[key] = {"default": values[key], DISABLED: ""}.get(value, value)
        elif key in _KEYS:
            try:
                parsed = _KEYS[key](value)
            except ValueError:
                raise SystemSpecError(f"{key}={value!r}: not a {_KEYS[key].__name__}.") from None
            (sampling if key in _SAMPLING_KEYS else weights if key in _WEIGHT_KEYS else values)[key] = parsed
        else:
            known = ", ".join([*_KEYS, *_MODEL_KEYS])
            raise SystemSpecError(f"Unknown key {key!r} in the spec {spec!r}; the keys are {known}.")
    if values["threshold"] is None:
        values["threshold"] = retrieval_threshold(values["retriever"])
    if values["candidates"] < 0 or values["scripted"] < 0:
        raise SystemSpecError("candidates and scripted must be at least 0.")
    if values["candidates"] == 0 and not values["retriever"]:
        raise SystemSpecError("candidates=0 replies with retrieved lines only: it needs a retriever.")
    return SystemSpec(sampling=sampling, weights=weights, **values)


class ReplySystem:
    """One configuration of the replier, answering blind-sheet items."""

    def __init__(self, spec: SystemSpec, transcripts: "str | Path | None" = None) -> None:
        self.spec = spec
        self.transcripts = transcripts
        self._replier = None

    def replier(self) -> "Replier":
        if self._replier is None:
            self._replier = _build(self.spec, self.transcripts)
        return self._replier

    def replies(self, items: "list[Item]") -> list[str]:
        """Sheldon's reply to each item's last line, given the lines before it."""
        replier = self.replier()
        requests = self._requests(items)
        if self.spec.candidates == 0:
            histories = [[turn.text for turn in replier.bounded(request.history)] for request in requests]
            hits = replier.index.search_many(histories, [request.message for request in requests], k=1)
            return [found[0].text for found in hits]
        return [reply.text for reply in self._replies(requests)]

    def generate(self, items: "list[Item]") -> "list[Reply]":
        """Each item's Reply, with every candidate of its pool and their scores (`Reply.candidates`)."""
        if self.spec.candidates == 0:
            raise SystemSpecError("candidates=0 generates nothing: give candidates=1 or more.")
        return self._replies(self._requests(items))

    def samples(self, items: "list[Item]") -> list[list[str]]:
        """Each item's generated candidates as the ranking would see them (cleaned and cut), before the choice."""
        return [
            [candidate.text for candidate in reply.candidates if candidate.source == "generated"]
            for reply in self.generate(items)
        ]

    def _requests(self, items: "list[Item]") -> list:
        from .replier import RequestState, Turn

        character = settings.SHELDON_CHARACTER
        return [
            RequestState(
                [Turn("bot" if speaker == character else "user", text) for speaker, text in item.context],
                item.line[1],
            )
            for item in items
        ]

    def _replies(self, requests: list) -> list:
        import torch

        replier = self.replier()
        torch.manual_seed(self.spec.seed)
        replies = []
        for start in range(0, len(requests), BATCH):
            replies += replier.reply_many(requests[start : start + BATCH], self.spec.candidates)
        return replies


def build_system(spec: str, transcripts: "str | Path | None" = None) -> ReplySystem:
    """The reply system a spec names (see the module's docstring)."""
    return ReplySystem(parse_spec(spec), transcripts)


def _build(spec: SystemSpec, transcripts: "str | Path | None") -> "Replier":
    from data.corpus import find_transcripts

    from .backends import backend_for
    from .loading import load_generator
    from .replier import Replier

    generator = load_generator(spec.generator, spec.adapter)
    backend = backend_for(
        generator,
        settings.MAX_NEW_TOKENS,
        prefix_cache_tokens=settings.INFERENCE_PREFIX_CACHE_TOKENS if settings.INFERENCE_PREFIX_CACHE else None,
        prompt_budget=settings.MAX_PROMPT_TOKENS,
    )
    backend.sampling = {**backend.sampling, **spec.sampling}
    index = training_index(spec.retriever, transcripts or find_transcripts()[0]) if spec.retriever else None
    profile = replace(
        active_profile(), generator_model=spec.generator, generator_adapter=spec.adapter, retriever_model=spec.retriever
    )
    return Replier(
        profile, backend, index=index, threshold=spec.threshold, history_turns=settings.HISTORY_TURNS,
        character=settings.SHELDON_CHARACTER, max_candidates=spec.candidates, scripted_candidates=spec.scripted,
        weights=RankWeights(**spec.weights), max_sentences=spec.sentences, hit_in_prompt=bool(spec.prompt_hit),
    )


def training_index(retriever_model: str, transcripts: "str | Path") -> "RetrievalIndex":
    """The retrieval index of the training episodes' exchanges (VAR_DIR/evaluation/cache/), built on first use."""
    from .retrieval import IndexedExchange, cached_index

    lines = read_transcripts(transcripts)
    train, _ = split_episodes(episode_names(lines), seed=42)
    exchanges = [
        IndexedExchange(e.question, e.answer, e.episode, e.scene, tuple(e.context))
        for e in build_exchanges(lines, settings.SHELDON_CHARACTER)
        if e.episode in train
    ]
    return cached_index(settings.VAR_DIR / "evaluation" / "cache", retriever_model, exchanges)
