"""What every backend shares: a row of a batch, the backend base class, token counting."""
from ..loading import TOKENIZER_LOCK


class Row:
    """One dialogue of a batch while it is generated."""

    def __init__(self, on_text, should_stop=None, is_complete=None):
        self.on_text = on_text  # called with each newly decoded piece of raw text
        self.should_stop = should_stop
        self.is_complete = is_complete  # called after each piece: True ends the row as its end token would
        self.token_ids = []
        self.log_probability = 0.0  # of the reply's tokens under the model (chat engines; 0 for seq2seq)
        self.decoded = ""
        self._detokenizer = IncrementalDetokenizer()
        self.ended = False  # the model produced its end-of-sequence token
        self.stopped = False  # should_stop() said so
        self.finished = False  # its generation is over, for whichever reason (the token limit too)

    @property
    def done(self):
        return self.ended or self.stopped

    @property
    def mean_log_probability(self):
        """The model's mean log-probability per reply token (None when unknown or empty)."""
        return self.log_probability / len(self.token_ids) if self.token_ids and self.log_probability else None

    def accept(self, token_id, tokenizer, eos_ids, log_probability=0.0):
        """Take the row's next token: end on an end token, else decode it and hand on the new text."""
        if self.done:
            return
        if token_id in eos_ids:
            self.ended = True
            return
        self.token_ids.append(token_id)
        self.log_probability += log_probability
        piece = self._detokenizer.add(self.token_ids, tokenizer)
        if piece:
            self.decoded += piece
            self.on_text(piece)
            if self.is_complete is not None and self.is_complete():
                self.ended = True


class IncrementalDetokenizer:
    """A row's new text, token by token, decoding a few tokens each time instead of the whole reply.

    As vLLM's and TGI's detokenizers: the text of the tokens from
    `prefix_offset` on, less the text of those before `read_offset`, is what the
    newest tokens add; the earlier tokens in the window give the new ones
    their context (a word's leading space). Text ending in U+FFFD is half a
    multi-byte character: it waits for the next token.
    """

    def __init__(self):
        self.prefix_offset = 0
        self.read_offset = 0

    def add(self, token_ids, tokenizer) -> str:
        with TOKENIZER_LOCK:
            before = tokenizer.decode(token_ids[self.prefix_offset : self.read_offset], skip_special_tokens=True)
            text = tokenizer.decode(token_ids[self.prefix_offset :], skip_special_tokens=True)
        if len(text) <= len(before) or text.endswith("\ufffd"):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(token_ids)
        return text[len(before) :]


class Backend:
    """Shared batch generation; subclasses say how a dialogue becomes a prompt."""

    sampling = {}  # generate() keyword arguments

    def __init__(self, generator, max_new_tokens):
        self.generator = generator
        self.model = generator.model
        self.tokenizer = generator.tokenizer
        self.max_new_tokens = max_new_tokens
        self.eos_ids = set(generator.eos_ids)

    @property
    def parameters(self):
        """The generation parameters, as recorded with each reply."""
        return {**self.sampling, "max_new_tokens": self.max_new_tokens}

    def prompt(self, history, message, hit):
        """The prompt text for a dialogue: history (list of Turn), message, retrieved Hit or None."""
        raise NotImplementedError

    def generate(self, prompts, rows):
        """Generate for all prompts together, streaming into `rows` (same order)."""
        batch = self.open_batch()
        batch.add(prompts, rows)
        while batch:
            batch.step()

    def open_batch(self):
        """An empty batch: `add(prompts, rows)` between `step()`s; its len() is the rows still running."""
        raise NotImplementedError


def count_tokens(tokenizer, text: str) -> int:
    with TOKENIZER_LOCK:
        return len(tokenizer(text, add_special_tokens=False).input_ids)


def cut_to_tokens(tokenizer, text: str, max_tokens: int) -> tuple[str, int]:
    """`text` cut to at most `max_tokens` tokens, and how many tokens the whole text had.

    Cut at a token boundary; the cut text is tokenized again and cut further
    in the rare case that its tokens merge differently, so it never exceeds
    `max_tokens`.
    """
    with TOKENIZER_LOCK:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        total, keep = len(ids), max_tokens
        while len(ids) > max_tokens and keep > 0:
            # A cut inside a character's bytes decodes to U+FFFD: leave that character out.
            text = tokenizer.decode(ids[:keep], skip_special_tokens=True).rstrip("\ufffd")
            ids = tokenizer(text, add_special_tokens=False).input_ids
            keep -= max(1, len(ids) - max_tokens)
        return (text if len(ids) <= max_tokens else ""), total
