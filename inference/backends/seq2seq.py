"""T5-family models: the reference design's prompt and sampling, one padded generate() call per batch step."""
import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from ..loading import TOKENIZER_LOCK
from ..prompts import seq2seq_prompt
from .base import Backend

# The reference design's sampling, for the seq2seq checkpoints trained with it.
REFERENCE_SAMPLING = {
    "do_sample": True,
    "temperature": 0.95,
    "top_p": 0.9,
    "top_k": 50,
    "repetition_penalty": 2.0,
    "no_repeat_ngram_size": 2,
}
# The reference encoder saw at most this many prompt tokens.
SEQ2SEQ_MAX_PROMPT_TOKENS = 512


class Seq2SeqBackend(Backend):
    sampling = REFERENCE_SAMPLING
    max_prompt_tokens = SEQ2SEQ_MAX_PROMPT_TOKENS

    def prompt(self, history, message, hit):
        return seq2seq_prompt([turn.text for turn in history], message, hit.text if hit else "")

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
            if not row.done and row.should_stop is not None and row.should_stop():
                row.stopped = True  # a stop takes effect before the next token is shown
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
