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
import queue
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings

from .backends import Row, backend_for
from .cleanup import ReplyCleaner
from .loading import load_generator
from .profiles import active_profile
from .retrieval import Hit, RetrievalIndex, exchanges_from_database, fingerprint

__all__ = ["Hit", "Reply", "ReplyBatch", "ReplyJob", "ReplyRequest", "Replier", "Turn", "build_replier", "get_replier", "reset_replier"]

ROLES = ("user", "bot")
_END = object()  # ends a stream's queue of pieces
# Said when the model gives nothing usable twice: in character, and marked fallback=True.
FALLBACK_REPLY = (
    "I'm afraid my train of thought has left the station without me. "
    "That almost never happens. Would you kindly rephrase that?"
)


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "bot"
    text: str

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"A turn's role must be one of {', '.join(ROLES)}, not {self.role!r}.")
        if not isinstance(self.text, str):
            raise ValueError(f"A turn's text must be a string, not {type(self.text).__name__}.")


@dataclass
class ReplyRequest:
    history: list  # of Turn, oldest first
    message: str
    on_piece: object = None  # callable(str) or None
    should_stop: object = None  # callable() -> bool, or None

    def __post_init__(self):
        if not isinstance(self.message, str) or not self.message.strip():
            raise ValueError("The message to reply to is empty.")
        if not all(isinstance(turn, Turn) for turn in self.history):
            raise ValueError("The history must be a list of Turn(role, text).")


@dataclass
class Reply:
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


class _Attempt:
    """One generation for one request: its stream row and its clean-up."""

    def __init__(self, job, character, first=True):
        self.job = job
        self.first = first
        self.cleaner = ReplyCleaner(job.request.message, character, on_piece=job.request.on_piece)
        self.row = Row(self.cleaner.feed, job.request.should_stop)

    def text(self):
        # An unfinished last sentence is cut whether the token limit or the
        # model ended it mid-way (a merged adapter may end on "And do you");
        # a stopped reply keeps exactly the text the person saw.
        return self.cleaner.finish(cut_fragment=not self.row.stopped)


@dataclass
class ReplyJob:
    """A request ready to generate (`Replier.prepare`): its retrieved exchange, prompt and start."""

    request: ReplyRequest
    hit: Hit | None
    prompt: str
    started: float
    new_tokens: int = 0


class ReplyBatch:
    """Requests being replied to together; more can join between steps (`Replier.open_batch`).

        batch = replier.open_batch()
        batch.add(replier.prepare(requests))
        while batch:
            for request, reply in batch.step():
                ...
    """

    def __init__(self, replier):
        self.replier = replier
        self.generation = replier.backend.open_batch()
        self.attempts = []

    def __len__(self):
        return len(self.attempts)

    def add(self, jobs):
        """Start generating these prepared requests."""
        self._start([_Attempt(job, self.replier.character) for job in jobs])

    def step(self):
        """One generation step: the (request, Reply) pairs it finished."""
        self.generation.step()
        running, retries, finished = [], [], []
        for attempt in self.attempts:
            if not attempt.row.finished:
                running.append(attempt)
                continue
            job, text = attempt.job, attempt.text()
            job.new_tokens += len(attempt.row.token_ids)
            if not text and not attempt.row.stopped and attempt.first:
                # An empty reply (nothing, a label only, an echo) is retried once.
                retries.append(_Attempt(job, self.replier.character, first=False))
            else:
                finished.append((job.request, self.replier.record(job, text, attempt.row.stopped)))
        self.attempts = running
        self._start(retries)
        return finished

    def _start(self, attempts):
        if attempts:
            self.generation.add([attempt.job.prompt for attempt in attempts], [attempt.row for attempt in attempts])
            self.attempts += attempts


class Replier:
    def __init__(self, profile, backend, index=None, threshold=0.89, history_turns=6, character="Sheldon"):
        self.profile = profile
        self.backend = backend
        self.index = index
        self.threshold = threshold
        self.history_turns = history_turns
        self.character = character

    def retrieve_many(self, histories, messages):
        """For each dialogue the closest scripted exchange, or None under the threshold."""
        if self.index is None:
            return [None] * len(messages)
        dialogues = [[turn.text for turn in history] for history in histories]
        return self.index.best_many(dialogues, messages, self.threshold)

    def reply(self, history, message, on_piece=None, should_stop=None):
        return self.reply_many([ReplyRequest(history, message, on_piece, should_stop)])[0]

    def stream(self, history, message, should_stop=None):
        """Yield the reply's pieces as they are generated; the generator returns the Reply.

        `reply = yield from replier.stream(...)` in a generator, or read
        StopIteration.value. Leaving the loop early stops the generation.
        """
        pieces = queue.Queue()
        abandoned = threading.Event()
        request = ReplyRequest(
            history,
            message,
            on_piece=pieces.put,
            should_stop=lambda: abandoned.is_set() or bool(should_stop and should_stop()),
        )
        outcome = {}

        def generate():
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

    def prepare(self, requests):
        """A ReplyJob for each request: retrieval (one batch for all) and prompt, done before generating."""
        started = time.perf_counter()
        histories = [self.bounded(request.history) for request in requests]
        hits = self.retrieve_many(histories, [request.message for request in requests]) if requests else []
        return [
            ReplyJob(request, hit, self.backend.prompt(history, request.message, hit), started)
            for request, history, hit in zip(requests, histories, hits)
        ]

    def open_batch(self):
        """An empty ReplyBatch: prepared requests join it between generation steps."""
        return ReplyBatch(self)

    def reply_many(self, requests):
        """Reply to every request, generated together."""
        batch = self.open_batch()
        batch.add(self.prepare(requests))
        replies = {}
        while batch:
            replies.update((id(request), reply) for request, reply in batch.step())
        return [replies[id(request)] for request in requests]

    def bounded(self, history):
        """The history turns the reply sees: the last HISTORY_TURNS."""
        return list(history)[-self.history_turns :] if self.history_turns > 0 else []

    def record(self, job, text, stopped):
        """The Reply of a finished job; an empty, unstopped one becomes the fallback line."""
        fallback = not text and not stopped
        if fallback and job.request.on_piece is not None:
            job.request.on_piece(FALLBACK_REPLY)
        return Reply(
            text=FALLBACK_REPLY if fallback else text,
            retrieved=job.hit,
            profile=self.profile.name,
            generator_model=self.profile.generator_model,
            retriever_model=self.profile.retriever_model,
            parameters=dict(self.backend.parameters),
            seconds=time.perf_counter() - job.started,
            new_tokens=job.new_tokens,
            fallback=fallback,
            stopped=stopped,
        )


def build_replier():
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
        threshold=settings.RETRIEVAL_THRESHOLD,
        history_turns=settings.HISTORY_TURNS,
        character=settings.SHELDON_CHARACTER,
    )


_replier = None
_replier_lock = threading.Lock()


def get_replier():
    """The process's replier, built on first use (models load once)."""
    global _replier
    with _replier_lock:
        if _replier is None:
            _replier = build_replier()
        return _replier


def reset_replier():
    """Forget the process's replier: the next get_replier() reads the settings again."""
    global _replier
    with _replier_lock:
        _replier = None
