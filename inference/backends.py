"""Generation backends: turn dialogues into prompts and prompts into streamed text.

Two kinds of generator share one interface:

- `Seq2SeqBackend` (T5 family): the reference design's prompt
  `context: <retrieved line> <dialogue></s>question: <message>` and its
  sampling parameters.
- `CausalChatBackend` (chat models such as SmolLM2): the model's chat
  template with a persona system prompt, the retrieved scripted exchange and
  the dialogue history as turns.

Batching is the normal case; a single reply is a batch of one. Every row of a
batch streams its own decoded text to its own `Row.on_text` and stops on its
own `Row.should_stop`. `open_batch()` gives a batch that takes new rows
between its steps: for chat models a `decoding.DecodeBatch`, where rows join
and leave at every token (continuous batching) and every prompt starts from
the longest key-value cache stored for its beginning (the persona's prompt,
the conversation's previous turn: `prefix_cache_tokens`); for seq2seq models
one padded `generate` call per step, which runs all its rows to the end.
"""
import threading

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from .decoding import DecodeBatch, PrefixStore, Sampling, growing_cache
from .loading import TOKENIZER_LOCK

PERSONA = (
    "You are Sheldon Cooper from The Big Bang Theory: a theoretical physicist at Caltech with an IQ of 187, "
    "brilliant, literal-minded, pedantic, fond of trains, comic books, Star Trek and his spot on the couch, "
    "and puzzled by sarcasm. Stay in character. Answer the user's last line as Sheldon would, in one to "
    "three sentences of spoken dialogue, without stage directions and without your name in front."
)

# The reference design's sampling, for the seq2seq checkpoints trained with it.
REFERENCE_SAMPLING = {
    "do_sample": True,
    "temperature": 0.95,
    "top_p": 0.9,
    "top_k": 50,
    "repetition_penalty": 2.0,
    "no_repeat_ngram_size": 2,
}
# Chat models repeat less by themselves; the reference's penalty 2.0 garbles them. Temperature 0.4:
# with sample-and-rank, blind-rated fit +0.28 over 0.7 on 40 validation exchanges (docs/evaluation.md, round 3).
CHAT_SAMPLING = {
    "do_sample": True,
    "temperature": 0.4,
    "top_p": 0.9,
    "top_k": 50,
    "repetition_penalty": 1.2,
    "no_repeat_ngram_size": 3,
}
# The reference encoder saw at most this many prompt tokens.
SEQ2SEQ_MAX_PROMPT_TOKENS = 512


class Row:
    """One dialogue of a batch while it is generated."""

    def __init__(self, on_text, should_stop=None, is_complete=None):
        self.on_text = on_text  # called with each newly decoded piece of raw text
        self.should_stop = should_stop
        self.is_complete = is_complete  # called after each piece: True ends the row as its end token would
        self.token_ids = []
        self.log_probability = 0.0  # of the reply's tokens under the model (decoded by DecodeBatch only)
        self.decoded = ""
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
        if self.done:
            return
        if token_id in eos_ids:
            self.ended = True
            return
        self.token_ids.append(token_id)
        self.log_probability += log_probability
        with TOKENIZER_LOCK:
            text = tokenizer.decode(self.token_ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return  # half a multi-byte character: wait for the rest
        piece, self.decoded = text[len(self.decoded) :], text
        if piece:
            self.on_text(piece)
            if self.is_complete is not None and self.is_complete():
                self.ended = True


class _BatchStreamer(BaseStreamer):
    """Hands each step's tokens to their rows (generate's first call is the prompt)."""

    def __init__(self, rows, tokenizer, eos_ids):
        self.rows, self.tokenizer, self.eos_ids = rows, tokenizer, eos_ids
        self.prompt_seen = False

    def put(self, value):
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, token_id in zip(self.rows, value.view(-1).tolist()):
            row.accept(token_id, self.tokenizer, self.eos_ids)

    def end(self):
        pass


class _RowStopper(StoppingCriteria):
    """Finishes each row whose should_stop() turns true, polled between steps."""

    def __init__(self, rows):
        self.rows = rows

    def __call__(self, input_ids, scores, **kwargs):
        for row in self.rows:
            if not row.done and row.should_stop is not None and row.should_stop():
                row.stopped = True
        return torch.tensor([row.stopped for row in self.rows], device=input_ids.device)


class Backend:
    """Shared batch generation; subclasses say how a dialogue becomes a prompt."""

    sampling = {}  # generate() keyword arguments

    def __init__(self, generator, max_new_tokens):
        self.generator = generator
        self.model = generator.model
        self.tokenizer = generator.tokenizer
        self.max_new_tokens = max_new_tokens
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])

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


class _GenerateBatch:
    """Rows added between steps; a step generates all of them to the end in one generate() call."""

    def __init__(self, backend):
        self.backend = backend
        self.prompts, self.rows = [], []

    def __len__(self):
        return len(self.rows)

    def add(self, prompts, rows):
        self.prompts += prompts
        self.rows += rows

    def step(self):
        prompts, rows = self.prompts, self.rows
        self.prompts, self.rows = [], []
        if rows:
            self.backend.generate_at_once(prompts, rows)


class Seq2SeqBackend(Backend):
    sampling = REFERENCE_SAMPLING
    max_prompt_tokens = SEQ2SEQ_MAX_PROMPT_TOKENS

    def prompt(self, history, message, hit):
        rag = f"{hit.text} " if hit else ""
        context = " ".join(turn.text for turn in history)
        return f"context: {rag}{context}</s>question: {message}"

    def open_batch(self):
        """A batch that runs one generate() call over the rows added since the last step."""
        return _GenerateBatch(self)

    def generate_at_once(self, prompts, rows):
        """One padded generate() call for all prompts; every row is finished when it returns."""
        inputs = self._model_inputs(prompts)
        with torch.inference_mode():
            self.model.generate(
                **inputs,
                **self.sampling,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=sorted(self.eos_ids),
                streamer=_BatchStreamer(rows, self.tokenizer, self.eos_ids),
                stopping_criteria=StoppingCriteriaList([_RowStopper(rows)]),
            )
        for row in rows:
            row.finished = True

    def _model_inputs(self, prompts):
        """generate()'s inputs for a batch: padded token ids and their attention mask."""
        with TOKENIZER_LOCK:
            self.tokenizer.padding_side = "right"
            self.tokenizer.truncation_side = "left"  # an over-long prompt loses its oldest context, not the question
            inputs = self.tokenizer(
                prompts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_prompt_tokens
            ).to(self.model.device)
        return dict(inputs)


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


def persona_messages(turns):
    """The persona's system prompt, then `(role, text)` turns as chat messages.

    Shared by reply time and training (training.chat_format), so a model is
    trained on the prompts it will get.
    """
    messages = [{"role": "system", "content": PERSONA}]
    for role, text in turns:
        # Some chat templates insist that roles alternate: merge neighbours.
        if messages[-1]["role"] == role:
            messages[-1]["content"] += "\n" + text
        else:
            messages.append({"role": role, "content": text})
    return messages


class CausalChatBackend(Backend):
    sampling = CHAT_SAMPLING

    def __init__(self, generator, max_new_tokens, prefix_cache_tokens=None, prompt_budget=None):
        super().__init__(generator, max_new_tokens)
        self.prefix_cache_tokens = prefix_cache_tokens  # finished sequences kept; None: no prefix cache at all
        self.prompt_budget = prompt_budget  # tokens; None: unbounded
        self._prefixes = None
        self._prefixes_lock = threading.Lock()

    def prompt(self, history, message, hit):
        """The chat prompt, never over `prompt_budget` tokens.

        The oldest history turns are left out first; a message that still does
        not fit is cut (`cut_to_tokens`). The persona and the retrieved
        exchange always stay, so a batch's memory is bounded by its size times
        the prompt budget.
        """
        history = list(history)
        while True:
            turns = []
            if hit:
                turns += [("user", hit.question), ("assistant", hit.text)]
            turns += [("user" if turn.role == "user" else "assistant", turn.text) for turn in history]
            turns.append(("user", message))
            # Rendering the template is plain Jinja; only the tokenizer itself needs the lock.
            text = self.tokenizer.apply_chat_template(persona_messages(turns), tokenize=False, add_generation_prompt=True)
            if self.prompt_budget is None:
                return text
            with TOKENIZER_LOCK:
                excess = len(self.tokenizer(text, add_special_tokens=False).input_ids) - self.prompt_budget
            if excess <= 0:
                return text
            if history:
                history.pop(0)
                continue
            shorter, _ = cut_to_tokens(self.tokenizer, message, max(0, count_tokens(self.tokenizer, message) - excess))
            if shorter == message:  # nothing left to cut
                return text
            message = shorter

    def open_batch(self):
        """A continuous batch: rows join and leave at every step, each prompt starting from the prefix store."""
        return _ChatBatch(self, self.prefix_store())

    def prefix_store(self):
        """The backend's PrefixStore, the persona's prompt computed into it once; None if prefix caching is off."""
        if self.prefix_cache_tokens is None:
            return None
        with self._prefixes_lock:
            if self._prefixes is None:
                with TOKENIZER_LOCK:
                    text = self.tokenizer.apply_chat_template(persona_messages([]), tokenize=False)
                    persona_ids = self.tokenizer(text, add_special_tokens=False).input_ids
                with torch.inference_mode():
                    output = self.model(
                        torch.tensor([persona_ids], device=self.model.device), cache=growing_cache(), use_cache=True
                    )
                store = PrefixStore(self.prefix_cache_tokens)
                store.pin(persona_ids, [(layer.keys, layer.values) for layer in output.cache.layers])
                self._prefixes = store
            return self._prefixes


class _ChatBatch(DecodeBatch):
    """A DecodeBatch that takes prompts as text."""

    def __init__(self, backend, prefixes):
        super().__init__(
            backend.model, backend.tokenizer, Sampling(**backend.sampling), backend.max_new_tokens,
            backend.eos_ids, prefixes,
        )

    def add(self, prompts, rows):
        with TOKENIZER_LOCK:
            prompt_ids = self.tokenizer(prompts, add_special_tokens=False).input_ids
        super().add(prompt_ids, rows)


def backend_for(generator, max_new_tokens, prefix_cache_tokens=None, prompt_budget=None):
    """The backend for a generator; `prefix_cache_tokens` and `prompt_budget` concern chat models only
    (a seq2seq prompt has no shared prefix and keeps the reference's 512-token truncation)."""
    if generator.is_seq2seq:
        return Seq2SeqBackend(generator, max_new_tokens)
    return CausalChatBackend(generator, max_new_tokens, prefix_cache_tokens, prompt_budget)
