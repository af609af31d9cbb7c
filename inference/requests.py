"""A reply request's state on its way through the engine, and the one vocabulary of its status.

As transformers' continuous batching (`RequestState`, `RequestStatus`) and
vLLM (`Request`, `RequestStatus`, `FinishReason`) keep it: one object per
request from submission to its Reply, and one per sampled candidate.

- `RequestState`: the caller's dialogue and callbacks, what `Replier.prepare`
  found for it (retrieval, prompt, how many candidates), its `Sequence`s while
  they run, and its `RequestStatus`.
- `Sequence`: one candidate reply. The backends append its tokens and finish it
  (an end token, the token limit, a prompt the engine could not schedule);
  after each decode step the replier's output processing turns the new tokens
  into text and may finish it too (a stop, the sentence cap). A sequence
  finished from outside leaves its batch before the next step computes it.
- `FinishReason`: why a sequence ended, in one word.

A failing callback (the caller's `on_piece` or `should_stop`) ends its own
request only: the request remembers the error and stops its sequences.
"""
import enum
from dataclasses import dataclass

from .loading import TOKENIZER_LOCK

ROLES = ("user", "bot")


class RequestStatus(enum.Enum):
    WAITING = "waiting"  # prepared (retrieval, prompt), waiting for rows in a batch
    RUNNING = "running"  # its sequences are being generated
    FINISHED = "finished"  # its Reply is made (or its callback failed: `error`)


class FinishReason(enum.Enum):
    END = "end"  # the model's end token, or the clean-up's sentence cap
    LENGTH = "length"  # the token limit
    STOPPED = "stopped"  # the caller asked to stop (or its callback failed)
    IGNORED = "ignored"  # the engine could not schedule it (a prompt too long for its key-value cache)


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "bot"
    text: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"A turn's role must be one of {', '.join(ROLES)}, not {self.role!r}.")
        if not isinstance(self.text, str):
            raise ValueError(f"A turn's text must be a string, not {type(self.text).__name__}.")


class Sequence:
    """One sampled reply while it is generated: its tokens, their log-probability, why it ended.

    `request` is None for a bare sequence (tests and benchmarks of the
    backends alone); the replier's sequences also carry their clean-up
    (`cleaner`) and `detokenizer`.
    """

    def __init__(self, request: "RequestState | None" = None, cleaner: object = None) -> None:
        self.request = request
        self.cleaner = cleaner
        self.detokenizer = IncrementalDetokenizer()
        self.token_ids: list[int] = []
        self.log_probability = 0.0  # of the reply's tokens under the model (chat engines; 0 for seq2seq)
        self.finish_reason: FinishReason | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def stopped(self) -> bool:
        return self.finish_reason is FinishReason.STOPPED

    @property
    def mean_log_probability(self) -> float | None:
        """The model's mean log-probability per reply token (None when unknown or empty)."""
        return self.log_probability / len(self.token_ids) if self.token_ids and self.log_probability else None

    def append(self, token_id: int, log_probability: float, end_ids: set[int], max_tokens: int) -> None:
        """The engine's next token: an end token finishes the sequence (END), the last allowed one too (LENGTH)."""
        if self.finished:
            return
        if token_id in end_ids:
            self.finish(FinishReason.END)
            return
        self.token_ids.append(token_id)
        self.log_probability += log_probability
        if len(self.token_ids) >= max_tokens:
            self.finish(FinishReason.LENGTH)

    def finish(self, reason: FinishReason) -> None:
        """End the sequence, unless it has ended already (the first reason stays)."""
        if self.finish_reason is None:
            self.finish_reason = reason

    def new_text(self, tokenizer: object) -> str:
        """The text its tokens added since the last call (see IncrementalDetokenizer)."""
        return self.detokenizer.add(self.token_ids, tokenizer)


class RequestState:
    """One reply request, from submission to its Reply.

    The caller gives the dialogue (`history`, a list of Turn, oldest first, and
    the `message`) and optional callbacks: `on_piece(text)` receives the reply
    as it is shown, `should_stop()` is polled after each decode step.
    `Replier.prepare` fills in the rest before the request joins a batch.
    """

    def __init__(self, history: list, message: str, on_piece: object = None, should_stop: object = None) -> None:
        if not isinstance(message, str) or not message.strip():
            raise ValueError("The message to reply to is empty.")
        if not all(isinstance(turn, Turn) for turn in history):
            raise ValueError("The history must be a list of Turn(role, text).")
        self.history = list(history)
        self.message = message
        self.on_piece = on_piece
        self.should_stop = should_stop
        self.status = RequestStatus.WAITING
        self.error: BaseException | None = None  # raised by a callback: the request ends with it
        # Set by Replier.prepare: the scripted exchange put into the prompt (the best hit over the
        # threshold), the scripted lines that compete with the generated ones, the dialogue's selector
        # vector, the prompt, when the work began and how many candidates to sample.
        self.hit = None
        self.scripted: list = []
        self.query = None
        self.prompt = ""
        self.started = 0.0
        self.candidates = 1
        # While it runs.
        self.generated: list = []  # of selection.Candidate, as its sequences finish
        self.new_tokens = 0
        self.retried = False  # a lone empty reply is sampled once more
        self.reply = None  # its Reply, once FINISHED

    @property
    def ranked(self) -> bool:
        """Whether the reply is chosen among several candidates (else it streams as it is generated)."""
        return self.candidates + len(self.scripted) > 1

    def show(self, piece: str) -> None:
        """Hand a piece of the reply to the caller; a failing callback ends the request."""
        if self.error is None and self.on_piece is not None:
            try:
                self.on_piece(piece)
            except BaseException as error:  # CancelledError too: the caller's failure, never the engine thread's
                self.error = error

    def stop_requested(self) -> bool:
        """Whether the caller asked to stop, or its callback failed."""
        if self.error is None and self.should_stop is not None:
            try:
                return bool(self.should_stop())
            except BaseException as error:  # as in show
                self.error = error
        return self.error is not None


class IncrementalDetokenizer:
    """A sequence's new text, token by token, decoding a few tokens each time instead of the whole reply.

    As vLLM's and TGI's detokenizers: the text of the tokens from
    `prefix_offset` on, less the text of those before `read_offset`, is what the
    newest tokens add; the earlier tokens in the window give the new ones
    their context (a word's leading space). Text ending in U+FFFD is half a
    multi-byte character: it waits for the next token.
    """

    def __init__(self) -> None:
        self.prefix_offset = 0
        self.read_offset = 0

    def add(self, token_ids: list[int], tokenizer: object) -> str:
        if len(token_ids) <= self.read_offset:
            return ""
        with TOKENIZER_LOCK:
            before = tokenizer.decode(token_ids[self.prefix_offset : self.read_offset], skip_special_tokens=True)
            text = tokenizer.decode(token_ids[self.prefix_offset :], skip_special_tokens=True)
        if len(text) <= len(before) or text.endswith("\ufffd"):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(token_ids)
        return text[len(before) :]
