"""Causal chat models on torch: the chat template with the persona, continuous batching (decoding.DecodeBatch)
and a prefix store of key-value caches. Served on CUDA, and on CPU when INFERENCE_ENGINE=torch."""
import threading
from typing import TYPE_CHECKING

import torch

from ..decoding import DecodeBatch, PrefixStore, Sampling, growing_cache
from ..loading import TOKENIZER_LOCK
from ..prompts import persona_messages
from ..requests import Sequence, Turn
from .base import Backend, OnStep, count_tokens, cut_to_tokens

if TYPE_CHECKING:
    from ..loading import Generator
    from ..retrieval import Hit

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

# Over the prompt budget, a message is cut rather than lose the retrieved exchange, down to this many tokens;
# below that the exchange gives way (a long scripted line once left a prompt with no message at all).
MESSAGE_KEPT_TOKENS = 64


class CausalChatBackend(Backend):
    sampling = CHAT_SAMPLING

    def __init__(
        self, generator: "Generator", max_new_tokens: int, prefix_cache_tokens: int | None = None,
        prompt_budget: int | None = None,
    ) -> None:
        super().__init__(generator, max_new_tokens)
        self.prefix_cache_tokens = prefix_cache_tokens  # finished sequences kept; None: no prefix cache at all
        self.prompt_budget = prompt_budget  # tokens; None: unbounded
        self._prefixes = None
        self._prefixes_lock = threading.Lock()

    def prompt(self, history: list[Turn], message: str, hit: "Hit | None") -> str:
        """The chat prompt, never over `prompt_budget` tokens.

        The oldest history turns are left out first; a message that still does
        not fit is cut (`cut_to_tokens`), but the retrieved exchange gives way
        first where the cut would leave the message under MESSAGE_KEPT_TOKENS
        (or under its own length, if shorter). The persona always stays, so a
        batch's memory is bounded by its size times the prompt budget.
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
            message_tokens = count_tokens(self.tokenizer, message)
            if hit and message_tokens - excess < min(message_tokens, MESSAGE_KEPT_TOKENS):
                hit = None  # the message matters more than a scripted example
                continue
            shorter, _ = cut_to_tokens(self.tokenizer, message, max(0, message_tokens - excess))
            if shorter == message:  # nothing left to cut
                return text
            message = shorter

    def open_batch(self, on_step: OnStep | None = None) -> "_ChatBatch":
        """A continuous batch: sequences join and leave at every step, each prompt starting from the prefix store."""
        return _ChatBatch(self, self.prefix_store(), on_step)

    def prefix_store(self) -> PrefixStore | None:
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
                        torch.tensor([persona_ids], device=self.model.device), past_key_values=growing_cache(), use_cache=True
                    )
                store = PrefixStore(self.prefix_cache_tokens)
                store.pin(persona_ids, [(layer.keys, layer.values) for layer in output.past_key_values.layers])
                self._prefixes = store
            return self._prefixes


class _ChatBatch(DecodeBatch):
    """A DecodeBatch that takes prompts as text."""

    def __init__(self, backend: CausalChatBackend, prefixes: PrefixStore | None, on_step: OnStep | None) -> None:
        super().__init__(
            backend.model, backend.tokenizer, Sampling(**backend.sampling), backend.max_new_tokens,
            backend.eos_ids, prefixes, on_step,
        )

    def add(self, prompts: list[str], sequences: list[Sequence]) -> None:
        with TOKENIZER_LOCK:
            prompt_ids = self.tokenizer(prompts, add_special_tokens=False).input_ids
        super().add(prompt_ids, sequences)
