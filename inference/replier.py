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
from .likelihood import dialogue_pmi, scoring_model
from .loading import load_generator
from .profiles import active_profile
from .retrieval import Hit, RetrievalIndex, exchanges_from_database, fingerprint
from .selection import Candidate, RankWeights, choose, rejection

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
    chosen: Candidate | None = None  # the candidate the text came from
    candidates: list = field(default_factory=list)  # every Candidate considered, with its scores


class _Attempt:
    """One generated candidate for one request: its row and its clean-up.

    A job with one candidate and nothing else to choose from streams its
    attempt as it is generated; a ranked job's attempts stream nothing, and the
    chosen reply is sent once it is chosen.
    """

    def __init__(self, job, character, max_sentences=0, first=True):
        self.job = job
        self.first = first
        self.max_sentences = max_sentences  # the row ends after this many sentences (0: never early)
        self.cleaner = ReplyCleaner(
            job.request.message, character, on_piece=None if job.ranked else job.request.on_piece
        )
        self.row = Row(self.cleaner.feed, job.request.should_stop, self._complete if max_sentences else None)

    def _complete(self):
        return self.cleaner.sentences() >= self.max_sentences

    def text(self):
        # An unfinished last sentence is cut whether the token limit or the
        # model ended it mid-way (a merged adapter may end on "And do you");
        # a stopped reply keeps exactly the text the person saw.
        return self.cleaner.finish(cut_fragment=not self.row.stopped)


@dataclass
class ReplyJob:
    """A request ready to generate (`Replier.prepare`): its retrieval, prompt, candidates and start.

    `hit` is the scripted exchange put into the prompt (the best one, when it
    passed the threshold); `scripted` are the scripted lines that compete with
    the `candidates` generated ones; `query` is the dialogue's selector vector.
    """

    request: ReplyRequest
    hit: Hit | None
    prompt: str
    started: float
    candidates: int = 1
    scripted: list = field(default_factory=list)
    query: object = None
    new_tokens: int = 0
    generated: list = field(default_factory=list)  # of Candidate, as their attempts finish

    @property
    def ranked(self):
        """Whether the reply is chosen among several candidates (else it streams as it is generated)."""
        return self.candidates + len(self.scripted) > 1


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
        """Start generating these prepared requests: `job.candidates` rows each."""
        self._start([self._attempt(job) for job in jobs for _ in range(job.candidates)])

    def step(self):
        """One generation step: the (request, Reply) pairs it finished."""
        self.generation.step()
        running, retries, finished = [], [], []
        for attempt in self.attempts:
            if not attempt.row.finished:
                running.append(attempt)
                continue
            job, text, row = attempt.job, attempt.text(), attempt.row
            job.new_tokens += len(row.token_ids)
            if not text and not row.stopped and attempt.first and not job.ranked:
                # A lone empty reply (nothing, a label only, an echo) is retried once.
                retries.append(self._attempt(job, first=False))
                continue
            job.generated.append(Candidate(text, "generated", row.mean_log_probability, stopped=row.stopped))
            if len(job.generated) == job.candidates:
                finished.append((job.request, self.replier.finish(job)))
        self.attempts = running
        self._start(retries)
        return finished

    def _attempt(self, job, first=True):
        return _Attempt(job, self.replier.character, self.replier.max_sentences, first)

    def _start(self, attempts):
        if attempts:
            self.generation.add([attempt.job.prompt for attempt in attempts], [attempt.row for attempt in attempts])
            self.attempts += attempts


class Replier:
    """Replies to dialogues: retrieval, generation of candidates, the choice, the record.

    `max_candidates`: replies sampled per request when the worker is idle (the
    engine asks for fewer under load); `scripted_candidates`: how many of the
    retrieved scripted lines that passed `threshold` compete with them.
    """

    def __init__(
        self, profile, backend, index=None, threshold=0.5, history_turns=6, character="Sheldon",
        max_candidates=1, scripted_candidates=0, weights=None, max_sentences=0,
    ):
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

    def prepare(self, requests, candidates=None):
        """A ReplyJob for each request: retrieval (one batch for all) and prompt, done before generating.

        `candidates`: replies to sample for each (default `max_candidates`).
        """
        started = time.perf_counter()
        candidates = self.max_candidates if candidates is None else max(1, candidates)
        histories = [self.bounded(request.history) for request in requests]
        jobs = []
        for request, history, (hits, query) in zip(requests, histories, self._retrieve(histories, requests)):
            passed = [hit for hit in hits if hit.score >= self.threshold]
            hit = passed[0] if passed else None
            prompt = self.backend.prompt(history, request.message, hit)
            jobs.append(
                ReplyJob(request, hit, prompt, started, candidates, passed[: self.scripted_candidates], query)
            )
        return jobs

    def _retrieve(self, histories, requests):
        """For each request (its best scripted hits, its query vector): one embedding batch for all."""
        if self.index is None or not requests:
            return [([], None)] * len(requests)
        dialogues = [[turn.text for turn in history] for history in histories]
        messages = [request.message for request in requests]
        queries = self.index.queries(dialogues, messages)
        hits = self.index.search_many(dialogues, messages, k=max(1, self.scripted_candidates), queries=queries)
        return list(zip(hits, queries))

    def finish(self, job):
        """The Reply of a job whose candidates are all generated: the best one, sent if it was not streamed."""
        scripted = [Candidate(hit.text, "scripted", hit=hit) for hit in job.scripted]
        pool = job.generated + scripted
        stopped = any(candidate.stopped for candidate in job.generated)
        if stopped or not job.ranked:
            chosen = job.generated[0]
        else:
            # A scripted line's search score is already its cosine with the query: only the generated are embedded.
            generated = (
                list(self.index.similarities(job.query, [c.text for c in job.generated]))
                if job.query is not None
                else [0.0] * len(job.generated)
            )
            similarities = generated + [hit.score for hit in job.scripted]
            pmis = self.pmis(job, pool) if self.weights.pmi else None
            chosen = choose(pool, similarities, job.request.message, self.weights, pmis)
            if chosen.text and job.request.on_piece is not None:
                job.request.on_piece(chosen.text)
        return self.record(job, chosen, pool, stopped)

    def pmis(self, job, pool):
        """Each candidate's pmi with the dialogue; one the hard filters leave out is not scored (0.0)."""
        message = job.request.message
        allowed = [candidate for candidate in pool if not rejection(candidate.text, message)]
        history = self.bounded(job.request.history)
        found = dict(zip(map(id, allowed), dialogue_pmi(self.backend, history, message, [c.text for c in allowed])))
        return [found.get(id(candidate), 0.0) for candidate in pool]

    def open_batch(self):
        """An empty ReplyBatch: prepared requests join it between generation steps."""
        return ReplyBatch(self)

    def reply_many(self, requests, candidates=None):
        """Reply to every request, generated together (`candidates` each: see `prepare`)."""
        batch = self.open_batch()
        batch.add(self.prepare(requests, candidates))
        replies = {}
        while batch:
            replies.update((id(request), reply) for request, reply in batch.step())
        return [replies[id(request)] for request in requests]

    def bounded(self, history):
        """The history turns the reply sees: the last HISTORY_TURNS."""
        return list(history)[-self.history_turns :] if self.history_turns > 0 else []

    def record(self, job, chosen, pool, stopped):
        """The Reply of a finished job; an empty, unstopped one becomes the fallback line."""
        text = chosen.text
        fallback = not text and not stopped
        if fallback and job.request.on_piece is not None:
            job.request.on_piece(FALLBACK_REPLY)
        # `retrieved` is the scripted line the reply is, so the page shows it only then; the exchange
        # that went into the prompt is recorded by its score.
        parameters = {**self.backend.parameters, "prompt_hit_score": round(job.hit.score, 4) if job.hit else None}
        if job.ranked:
            parameters.update(
                candidates=job.candidates,
                scripted_candidates=len(job.scripted),
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
            seconds=time.perf_counter() - job.started,
            new_tokens=job.new_tokens,
            fallback=fallback,
            stopped=stopped,
            chosen=chosen,
            candidates=pool,
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
        max_candidates=settings.REPLY_CANDIDATES,
        scripted_candidates=settings.SCRIPTED_CANDIDATES,
        max_sentences=settings.REPLY_MAX_SENTENCES,
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
