"""Generation backends: turn dialogues into prompts and prompts into streamed text.

One file per backend, behind `base.Backend`:

- `seq2seq.Seq2SeqBackend` (T5 family): the reference design's prompt
  (`prompts.seq2seq_prompt`) and sampling; one padded `generate` call per
  batch step, which runs all its rows to the end.
- `openvino.OpenVINOChatBackend` (chat models on CPU, the default): OpenVINO
  GenAI's continuous-batching pipeline with int8 weights; rows join and
  leave at every step, prompts start from its prefix cache, and the
  candidates of one request compute their prompt once.
- `chat.CausalChatBackend` (chat models on torch: CUDA, or
  INFERENCE_ENGINE=torch): the same prompt, `decoding.DecodeBatch` for
  continuous batching and its own `PrefixStore`.

Batching is the normal case; a single reply is a batch of one. Every row of
a batch generates into its own `requests.Sequence`: the backend appends its
tokens and finishes it at an end token or the token limit; a sequence the
caller finishes (a stop, the sentence cap) leaves at the next step. The
contract is `base.GenerationBatch`: `open_batch(on_step)` gives a batch that
takes new sequences between its `step()`s and calls `on_step` with those
that changed after each decode step (the replier turns their tokens into
text there); its len() is the sequences still running.
"""
from typing import TYPE_CHECKING

from ..loading import Engine
from .base import Backend, GenerationBatch, OnStep, count_tokens, cut_to_tokens
from .chat import CHAT_SAMPLING, CausalChatBackend
from .openvino import OpenVINOChatBackend
from .seq2seq import REFERENCE_SAMPLING, Seq2SeqBackend

if TYPE_CHECKING:
    from ..loading import Generator

__all__ = [
    "CHAT_SAMPLING", "REFERENCE_SAMPLING", "Backend", "CausalChatBackend", "GenerationBatch", "OnStep",
    "OpenVINOChatBackend", "Seq2SeqBackend", "backend_for", "count_tokens", "cut_to_tokens",
]


def backend_for(
    generator: "Generator", max_new_tokens: int, prefix_cache_tokens: int | None = None,
    prompt_budget: int | None = None,
) -> Backend:
    """The backend for a generator; `prefix_cache_tokens` and `prompt_budget` concern chat models only
    (a seq2seq prompt has no shared prefix and keeps the reference's 512-token truncation)."""
    if generator.is_seq2seq:
        return Seq2SeqBackend(generator, max_new_tokens)
    if generator.engine == Engine.OPENVINO:
        return OpenVINOChatBackend(generator, max_new_tokens, prefix_cache_tokens, prompt_budget)
    return CausalChatBackend(generator, max_new_tokens, prefix_cache_tokens, prompt_budget)
