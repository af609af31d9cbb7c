"""T5-family models: the reference design's prompt and sampling, one padded generate() call per batch step."""
from typing import TYPE_CHECKING

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from ..loading import TOKENIZER_LOCK
from ..prompts import seq2seq_prompt
from ..requests import FinishReason, Sequence, Turn
from .base import Backend, OnStep

if TYPE_CHECKING:
    from ..retrieval import Hit

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

    def prompt(self, history: list[Turn], message: str, hit: "Hit | None") -> str:
        return seq2seq_prompt([turn.text for turn in history], message, hit.text if hit else "")

    def open_batch(self, on_step: OnStep | None = None) -> "_GenerateBatch":
        """A batch that runs one generate() call over the sequences added since the last step."""
        return _GenerateBatch(self, on_step)

    def generate_at_once(self, prompts: list[str], sequences: list[Sequence], on_step: OnStep | None) -> None:
        """One padded generate() call for all prompts; every sequence is finished when it returns."""
        inputs = self._model_inputs(prompts)
        with torch.inference_mode():
            self.model.generate(
                **inputs,
                **self.sampling,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=sorted(self.eos_ids),
                streamer=_BatchStreamer(self, sequences, on_step),
                stopping_criteria=StoppingCriteriaList([_FinishedStopper(sequences)]),
            )
        for sequence in sequences:
            sequence.finish(FinishReason.LENGTH)  # generate() is over: the ones still running reached the limit

    def _model_inputs(self, prompts: list[str]) -> dict:
        """generate()'s inputs for a batch: padded token ids and their attention mask."""
        with TOKENIZER_LOCK:
            self.tokenizer.padding_side = "right"
            self.tokenizer.truncation_side = "left"  # an over-long prompt loses its oldest context, not the question
            inputs = self.tokenizer(
                prompts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_prompt_tokens
            ).to(self.model.device)
        return dict(inputs)


class _GenerateBatch:
    """Sequences added between steps; a step generates all of them to the end in one generate() call.

    generate() runs the whole reply in one call, so `on_step` is called from
    inside it, by its streamer, after each token (the reference's way; a
    hand-written seq2seq decode loop was not needed).
    """

    def __init__(self, backend: Seq2SeqBackend, on_step: OnStep | None) -> None:
        self.backend = backend
        self.on_step = on_step
        self.prompts, self.sequences = [], []

    def __len__(self) -> int:
        return len(self.sequences)

    def add(self, prompts: list[str], sequences: list[Sequence]) -> None:
        self.prompts += prompts
        self.sequences += sequences

    def step(self) -> None:
        # Sequences finished before their generate() call (a stop) are not computed.
        pending = [(prompt, sequence) for prompt, sequence in zip(self.prompts, self.sequences) if not sequence.finished]
        self.prompts, self.sequences = [], []
        if pending:
            prompts, sequences = map(list, zip(*pending))
            self.backend.generate_at_once(prompts, sequences, self.on_step)


class _BatchStreamer(BaseStreamer):
    """Appends each step's tokens to their sequences (generate's first call is the prompt), then `on_step`."""

    def __init__(self, backend: Seq2SeqBackend, sequences: list[Sequence], on_step: OnStep | None) -> None:
        self.backend, self.sequences, self.on_step = backend, sequences, on_step
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        running = [sequence for sequence in self.sequences if not sequence.finished]
        for sequence, token_id in zip(self.sequences, value.view(-1).tolist()):
            sequence.append(token_id, 0.0, self.backend.eos_ids, self.backend.max_new_tokens)
        if self.on_step is not None:
            self.on_step(running)

    def end(self) -> None:
        pass


class _FinishedStopper(StoppingCriteria):
    """Ends generate()'s rows whose sequence has finished (a stop, the sentence cap), checked between steps."""

    def __init__(self, sequences: list[Sequence]) -> None:
        self.sequences = sequences

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return torch.tensor([sequence.finished for sequence in self.sequences], device=input_ids.device)
