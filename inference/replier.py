"""Sheldon's next line: retrieval, generation, clean-up and the reply's record.

    from inference.replier import get_replier, Turn
    replier = get_replier()  # once per process: models and index load here
    reply = replier.reply([Turn("user", "Hi."), Turn("bot", "Hello.")], "How are you?",
                          on_piece=print, should_stop=lambda: False)
    reply.text, reply.retrieved, reply.seconds, reply.fallback, reply.stopped

`on_piece` receives the reply word by word as it is generated; the pieces
join to `reply.text`, or to it plus the unfinished last sentence that the
clean-up cut at the end (`cleanup.streamed_as`); `stream` yields the same
pieces instead. `reply_many` answers several dialogues together, each
streaming and stopping on its own; `open_batch` gives a `ReplyBatch` that
new requests can join while it runs (the batching engine's way).
"""
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings

from .backends import Backend, backend_for
from .cleanup import ReplyCleaner
from .likelihood import dialogue_pmi, scoring_model
from .loading import load_generator
from .profiles import Profile, active_profile, retrieval_threshold
from .requests import FinishReason, RequestState, RequestStatus, Sequence, Turn
from .retrieval import Hit, RetrievalIndex, exchanges_from_database, fingerprint
from .selection import Candidate, RankWeights, choose, rejection

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "FinishReason", "Hit", "Reply", "ReplyBatch", "RequestState", "RequestStatus", "Replier", "Turn", "build_replier",
    "get_replier", "reset_replier",
]

logger = logging.getLogger(__name__)
_END = object()  # ends a stream's queue of pieces
# Said when the model gives nothing usable twice: in character, and marked fallback=True.
FALLBACK_REPLY = (
    "I'm afraid my train of thought has left the station without me. "
    "That almost never happens. Would you kindly rephrase that?"
)


@dataclass
class Reply:
    """What a finished request gives back (as vLLM's RequestOutput): the chosen text and its record."""

    text: str
    retrieved: Hit | None
    profile: str
    generator_model: str
    retriever_model: str
    parameters: dict = field(default_factory=dict)
    seconds: float = 0.0
    new_tokens: int = 0
    fallback: bool = False
    stopped: bool = False
    chosen: Candidate | None = None  # the candidate the text came from
    candidates: list = field(default_factory=list)  # every Candidate considered, with its scores


class ReplyBatch:
    """Requests being replied to together; more can join between steps (`Replier.open_batch`).

        batch = replier.open_batch()
        batch.add(replier.prepare(requests))
        while batch:
            for request in batch.step():
                request.reply  # or request.error
            ...

    The backend's batch appends tokens to each request's sequences; after
    each decode step `process_outputs` turns the new tokens into text (detokenised,
    cleaned, streamed unless the reply is ranked) and finishes a sequence that
    was asked to stop or has its sentences. A step ends the requests whose
    sequences have all finished, with their Reply.
    """

    def __init__(self, replier: "Replier") -> None:
        self.replier = replier
        self.tokenizer = replier.backend.tokenizer
        self.generation = replier.backend.open_batch(self.process_outputs)
        self.sequences: list[Sequence] = []  # running

    def __len__(self) -> int:
        return len(self.sequences)

    def add(self, requests: list[RequestState]) -> None:
        """Start generating these prepared requests: `request.candidates` sequences each."""
        for request in requests:
            request.status = RequestStatus.RUNNING
        self._start([self._sequence(request) for request in requests for _ in range(request.candidates)])

    def step(self) -> list[RequestState]:
        """One generation step: the requests it finished."""
        # Every running request is asked at every step, also one the engine gave no token this time (a long
        # prompt computed in parts, a row held back); its sequences then leave before the step computes them.
        for sequence in self.sequences:
            if not sequence.finished and sequence.request.stop_requested():
                sequence.finish(FinishReason.STOPPED)
        self.generation.step()
        running, retries, finished = [], [], []
        for sequence in self.sequences:
            if not sequence.finished:
                running.append(sequence)
                continue
            request = sequence.request
            # An unfinished last sentence is cut whether the token limit or the model ended it mid-way
            # (a merged adapter may end on "And do you"); a stopped reply keeps exactly the text shown.
            text = sequence.cleaner.stop() if sequence.stopped else sequence.cleaner.finish(cut_fragment=True)
            request.new_tokens += len(sequence.token_ids)
            retry = not (sequence.stopped or request.retried or request.ranked or request.stop_requested())
            if not text and retry:
                request.retried = True  # a lone empty reply (nothing, a label only, an echo) is sampled once more
                retries.append(self._sequence(request))
                continue
            request.generated.append(
                Candidate(text, "generated", sequence.mean_log_probability, stopped=sequence.stopped)
            )
            if len(request.generated) == request.candidates:
                self.replier.finish(request)
                finished.append(request)
        self.sequences = running
        self._start(retries)
        return finished

    def abandon(self) -> None:
        """Stop every sequence (after a failed step): a last step lets them go, freeing what the backend holds."""
        for sequence in self.sequences:
            sequence.finish(FinishReason.STOPPED)
        try:
            self.generation.step()  # finished sequences leave before a step computes anything
        except Exception:
            logger.exception("Could not release the rows of a failed batch")
        self.sequences = []

    def _sequence(self, request: RequestState) -> Sequence:
        # A ranked request's sequences show nothing: the chosen reply is shown once chosen.
        on_piece = None if request.ranked else request.show
        return Sequence(request, ReplyCleaner(request.message, self.replier.character, on_piece))

    def _start(self, sequences: list[Sequence]) -> None:
        if sequences:
            self.generation.add([sequence.request.prompt for sequence in sequences], sequences)
            self.sequences += sequences

    def process_outputs(self, sequences: list[Sequence]) -> None:
        """After a decode step: each sequence's new tokens become text, or it stops (before the text is shown)."""
        max_sentences = self.replier.max_sentences
        for sequence in sequences:
            if sequence.stopped:
                continue
            if not sequence.finished and sequence.request.stop_requested():
                sequence.finish(FinishReason.STOPPED)
                continue
            piece = sequence.new_text(self.tokenizer)
            if piece:
                sequence.cleaner.feed(piece)
                if sequence.cleaner.blocked or (max_sentences and sequence.cleaner.sentences() >= max_sentences):
                    sequence.finish(FinishReason.END)  # blocked: it ends before the word


class Replier:
    """Replies to dialogues: retrieval, generation of candidates, the choice, the record.

    `max_candidates`: replies sampled per request when the worker is idle (the
    engine asks for fewer under load); `scripted_candidates`: how many of the
    retrieved scripted lines that passed `threshold` compete with them;
    `hit_in_prompt`: whether the best of those also goes into the prompt.
    """

    def __init__(
        self, profile: Profile, backend: Backend, index: RetrievalIndex | None = None, threshold: float = 0.5,
        history_turns: int = 6, character: str = "Sheldon", max_candidates: int = 1, scripted_candidates: int = 0,
        weights: RankWeights | None = None, max_sentences: int = 0, hit_in_prompt: bool = True,
    ) -> None:
        self.profile = profile
        self.backend = backend
        self.index = index
        self.threshold = threshold
        self.history_turns = history_turns
        self.character = character
        self.max_candidates = max(1, max_candidates)
        self.scripted_candidates = scripted_candidates if index is not None else 0
        self.weights = weights or RankWeights()
        if self.weights.pmi:
            if backend.generator.is_seq2seq:
                raise ValueError("The pmi weight needs a chat (decoder-only) generator; this one is seq2seq.")
            scoring_model(backend.generator)  # loaded now rather than during the first reply
        self.max_sentences = max_sentences  # a reply ends after this many sentences (0: at the token limit)
        self.hit_in_prompt = hit_in_prompt

    def reply(
        self, history: list[Turn], message: str, on_piece: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Reply:
        return self.reply_many([RequestState(history, message, on_piece, should_stop)])[0]

    def stream(
        self, history: list[Turn], message: str, should_stop: Callable[[], bool] | None = None
    ) -> Generator[str, None, Reply]:
        """Yield the reply's pieces as they are generated; the generator returns the Reply.

        `reply = yield from replier.stream(...)` in a generator, or read
        StopIteration.value. Leaving the loop early stops the generation.
        """
        pieces = queue.Queue()
        abandoned = threading.Event()
        request = RequestState(
            history,
            message,
            on_piece=pieces.put,
            should_stop=lambda: abandoned.is_set() or bool(should_stop and should_stop()),
        )
        outcome = {}

        def generate() -> None:
            try:
                outcome["reply"] = self.reply_many([request])[0]
            except Exception as error:  # handed to the reading thread below
                outcome["error"] = error
            finally:
                pieces.put(_END)

        worker = threading.Thread(target=generate, name="reply-stream", daemon=True)
        worker.start()
        try:
            while (piece := pieces.get()) is not _END:
                yield piece
        finally:
            abandoned.set()
            worker.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["reply"]

    def prepare(self, requests: list[RequestState], candidates: int | None = None) -> list[RequestState]:
        """Ready each request to generate: retrieval (one batch for all) and prompt; returns them.

        `candidates`: replies to sample for each (default `max_candidates`).
        """
        started = time.perf_counter()
        candidates = self.max_candidates if candidates is None else max(1, candidates)
        histories = [self.bounded(request.history) for request in requests]
        for request, history, (hits, query) in zip(requests, histories, self._retrieve(histories, requests)):
            passed = [hit for hit in hits if hit.score >= self.threshold]
            request.hit = passed[0] if passed and self.hit_in_prompt else None
            request.scripted = passed[: self.scripted_candidates]
            request.query = query
            request.prompt = self.backend.prompt(history, request.message, request.hit)
            request.started = started
            request.candidates = candidates
        return requests

    def _retrieve(
        self, histories: list[list[Turn]], requests: list[RequestState]
    ) -> "list[tuple[list[Hit], np.ndarray | None]]":
        """For each request (its best scripted hits, its query vector): one embedding batch for all."""
        if self.index is None or not requests:
            return [([], None)] * len(requests)
        dialogues = [[turn.text for turn in history] for history in histories]
        messages = [request.message for request in requests]
        queries = self.index.queries(dialogues, messages)
        hits = self.index.search_many(dialogues, messages, k=max(1, self.scripted_candidates), queries=queries)
        return list(zip(hits, queries))

    def finish(self, request: RequestState) -> None:
        """End a request whose candidates are all generated: its Reply is the best one, shown if it was not streamed."""
        scripted = [Candidate(hit.text, "scripted", hit=hit) for hit in request.scripted]
        pool = request.generated + scripted
        stopped = any(candidate.stopped for candidate in request.generated)
        if stopped:
            # A stopped reply is what was shown: a streamed one's text so far, none of a ranked one (shown once chosen).
            chosen = Candidate("", "generated", stopped=True) if request.ranked else request.generated[0]
        elif not request.ranked:
            chosen = request.generated[0]
        else:
            # A scripted line's search score is already its cosine with the query: only the generated are embedded.
            generated = (
                list(self.index.similarities(request.query, [c.text for c in request.generated]))
                if request.query is not None
                else [0.0] * len(request.generated)
            )
            similarities = generated + [hit.score for hit in request.scripted]
            pmis = self.pmis(request, pool) if self.weights.pmi else None
            chosen = choose(pool, similarities, request.message, self.weights, pmis)
            if chosen.text:
                request.show(chosen.text)
        request.reply = self.record(request, chosen, pool, stopped)
        request.status = RequestStatus.FINISHED

    def pmis(self, request: RequestState, pool: list[Candidate]) -> list[float]:
        """Each candidate's pmi with the dialogue; one the hard filters leave out is not scored (0.0)."""
        message = request.message
        allowed = [candidate for candidate in pool if not rejection(candidate.text, message)]
        history = self.bounded(request.history)
        found = dict(zip(map(id, allowed), dialogue_pmi(self.backend, history, message, [c.text for c in allowed])))
        return [found.get(id(candidate), 0.0) for candidate in pool]

    def open_batch(self) -> ReplyBatch:
        """An empty ReplyBatch: prepared requests join it between generation steps."""
        return ReplyBatch(self)

    def reply_many(self, requests: list[RequestState], candidates: int | None = None) -> list[Reply]:
        """Reply to every request, generated together (`candidates` each: see `prepare`).

        A callback that raised ends its request, and the error is raised here once all are done."""
        batch = self.open_batch()
        batch.add(self.prepare(requests, candidates))
        while batch:
            batch.step()
        for request in requests:
            if request.error is not None:
                raise request.error
        return [request.reply for request in requests]

    def bounded(self, history: list[Turn]) -> list[Turn]:
        """The history turns the reply sees: the last HISTORY_TURNS."""
        return list(history)[-self.history_turns :] if self.history_turns > 0 else []

    def record(self, request: RequestState, chosen: Candidate, pool: list[Candidate], stopped: bool) -> Reply:
        """The Reply of a finished request; an empty, unstopped one becomes the fallback line."""
        text = chosen.text
        fallback = not text and not stopped
        if fallback:
            request.show(FALLBACK_REPLY)
        # `retrieved` is the scripted line the reply is, so the page shows it only then; the exchange
        # that went into the prompt is recorded by its score.
        parameters = {**self.backend.parameters, "prompt_hit_score": round(request.hit.score, 4) if request.hit else None}
        if request.ranked:
            parameters.update(
                candidates=request.candidates,
                scripted_candidates=len(request.scripted),
                chosen=chosen.source,
                rejected=sum(1 for candidate in pool if candidate.rejected),
            )
        return Reply(
            text=FALLBACK_REPLY if fallback else text,
            retrieved=chosen.hit,
            profile=self.profile.name,
            generator_model=self.profile.generator_model,
            retriever_model=self.profile.retriever_model,
            parameters=parameters,
            seconds=time.perf_counter() - request.started,
            new_tokens=request.new_tokens,
            fallback=fallback,
            stopped=stopped,
            chosen=chosen,
            candidates=pool,
        )


def build_replier() -> Replier:
    """A replier from the settings: profile, overrides, index, limits."""
    profile = active_profile()
    generator = load_generator(profile.generator_model, profile.generator_adapter)
    index = None
    if profile.retriever_model:
        data = fingerprint(exchanges_from_database(settings.SHELDON_CHARACTER))
        index = RetrievalIndex.load(settings.RETRIEVAL_INDEX_PATH, profile.retriever_model, data)
    return Replier(
        profile,
        backend_for(
            generator,
            settings.MAX_NEW_TOKENS,
            prefix_cache_tokens=settings.INFERENCE_PREFIX_CACHE_TOKENS if settings.INFERENCE_PREFIX_CACHE else None,
            prompt_budget=settings.MAX_PROMPT_TOKENS,
        ),
        index=index,
        threshold=retrieval_threshold(profile.retriever_model),
        history_turns=settings.HISTORY_TURNS,
        character=settings.SHELDON_CHARACTER,
        max_candidates=settings.REPLY_CANDIDATES,
        scripted_candidates=settings.SCRIPTED_CANDIDATES,
        max_sentences=settings.REPLY_MAX_SENTENCES,
        hit_in_prompt=settings.RETRIEVAL_IN_PROMPT,
    )


_replier = None
_replier_lock = threading.Lock()


def get_replier() -> Replier:
    """The process's replier, built on first use (models load once)."""
    global _replier
    with _replier_lock:
        if _replier is None:
            _replier = build_replier()
        return _replier


def reset_replier() -> None:
    """Forget the process's replier: the next get_replier() reads the settings again."""
    global _replier
    with _replier_lock:
        _replier = None
