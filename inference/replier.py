"""Sheldon's next line: retrieval, generation, clean-up and the reply's record.

    from inference.replier import get_replier, Turn
    replier = get_replier()  # once per process: models and index load here
    reply = replier.reply([Turn("user", "Hi."), Turn("bot", "Hello.")], "How are you?",
                          on_piece=print, should_stop=lambda: False)
    reply.text, reply.retrieved, reply.seconds, reply.fallback, reply.stopped

`on_piece` receives the reply word by word as it is generated; the pieces
join to `reply.text`, or to it plus the unfinished last sentence that the
clean-up cut at the end (`cleanup.streamed_as`); `stream` yields the same
pieces instead. `reply_many` answers several dialogues in one padded
batch, each streaming and stopping on its own.
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

__all__ = ["Hit", "Reply", "ReplyRequest", "Replier", "Turn", "build_replier", "get_replier", "reset_replier"]

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


@dataclass(frozen=True)
class _Outcome:
    text: str
    new_tokens: int
    stopped: bool


class _Attempt:
    """One generation of one request: its stream row and its clean-up."""

    def __init__(self, request, character):
        self.cleaner = ReplyCleaner(request.message, character, on_piece=request.on_piece)
        self.row = Row(self.cleaner.feed, request.should_stop)


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

    def reply_many(self, requests):
        """Reply to every request with one batched generate call (plus one for retries)."""
        if not requests:
            return []
        started = time.perf_counter()
        histories = [self._bounded(request.history) for request in requests]
        hits = self.retrieve_many(histories, [request.message for request in requests])
        prompts = [self.backend.prompt(h, r.message, hit) for h, r, hit in zip(histories, requests, hits)]

        outcomes = self._generate(requests, prompts, range(len(requests)))
        # An empty reply (nothing, a label only, an echo) is retried once.
        empty = [i for i, outcome in outcomes.items() if not outcome.text and not outcome.stopped]
        if empty:
            for i, retry in self._generate(requests, prompts, empty).items():
                outcomes[i] = _Outcome(retry.text, outcomes[i].new_tokens + retry.new_tokens, retry.stopped)

        seconds = time.perf_counter() - started
        replies = []
        for i, request in enumerate(requests):
            outcome = outcomes[i]
            fallback = not outcome.text and not outcome.stopped
            if fallback and request.on_piece is not None:
                request.on_piece(FALLBACK_REPLY)
            replies.append(
                Reply(
                    text=FALLBACK_REPLY if fallback else outcome.text,
                    retrieved=hits[i],
                    profile=self.profile.name,
                    generator_model=self.profile.generator_model,
                    retriever_model=self.profile.retriever_model,
                    parameters=dict(self.backend.parameters),
                    seconds=seconds,
                    new_tokens=outcome.new_tokens,
                    fallback=fallback,
                    stopped=outcome.stopped,
                )
            )
        return replies

    def _bounded(self, history):
        return list(history)[-self.history_turns :] if self.history_turns > 0 else []

    def _generate(self, requests, prompts, indices):
        """Generate for the requests at `indices` in one batch: {index: _Outcome}."""
        attempts = {i: _Attempt(requests[i], self.character) for i in indices}
        self.backend.generate([prompts[i] for i in indices], [attempts[i].row for i in indices])
        outcomes = {}
        for i, attempt in attempts.items():
            row = attempt.row
            # An unfinished last sentence is cut whether the token limit or the
            # model ended it mid-way (a merged adapter may end on "And do you");
            # a stopped reply keeps exactly the text the person saw.
            text = attempt.cleaner.finish(cut_fragment=not row.stopped)
            outcomes[i] = _Outcome(text, len(row.token_ids), row.stopped)
        return outcomes


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
            reuse_prefix=settings.INFERENCE_PREFIX_CACHE,
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
