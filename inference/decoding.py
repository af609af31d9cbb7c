"""Continuous batching for decoder-only models: rows join and leave a running batch between steps.

`generate()` runs a batch until its longest row ends, so a request that
arrives meanwhile waits for all of it. A `DecodeBatch` instead takes new
dialogues at any step (`add`: their prompts are computed, their first token
sampled, and their key-value cache merged into the batch's), moves every row
one token on per `step`, and lets a row go as soon as it ends, stops or
reaches its token limit.

The rows of one batch differ in length: each row's cache is left-padded to the
batch's width, the padding masked out, and each row's position ids count its
own tokens only, so a row is computed as it would be alone. The cache grows in
place (`GrowingLayer`) instead of being copied at every step.

A `PrefixStore` keeps the key-value cache of the persona's prompt and of the
latest finished sequences: a prompt computes only what follows the longest
stored sequence it starts with (the persona; in a conversation, the previous
turn's prompt and reply as well).

Sampling follows generate()'s for the same parameters: repetition penalty
(over the reply's own tokens: `prompt_ignore_length`), no repeated n-grams, then temperature, top-k,
top-p and min-p; only the top-k candidates are sorted and drawn from, which gives
the same distribution (top-p keeps a subset of the top k) without sorting
the whole vocabulary.
"""
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .requests import FinishReason, Sequence

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class GrowingLayer(DynamicLayer):
    """One layer's keys and values, in buffers with room for the next tokens.

    Made for DecodeBatch, which rebuilds layers when rows join or leave;
    generate()'s own cache edits (beam reordering, cropping) are refused.
    """

    ROOM = 64  # columns added whenever the buffer is full

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.length = 0
            self._key_buffer, self._value_buffer = key_states[:, :, :0], value_states[:, :, :0]
        added = key_states.shape[-2]
        if self.length + added > self._key_buffer.shape[-2]:
            self._reserve(self.length + added + self.ROOM)
        self._key_buffer[:, :, self.length : self.length + added] = key_states
        self._value_buffer[:, :, self.length : self.length + added] = value_states
        self.length += added
        self._expose()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def _refused(self, *args: object, **kwargs: object) -> NoReturn:
        raise NotImplementedError("A GrowingLayer is edited by DecodeBatch only.")

    crop = batch_repeat_interleave = batch_select_indices = reorder_cache = _refused

    @classmethod
    def of_rows(cls, parts: list[tuple[torch.Tensor, torch.Tensor]], width: int) -> "GrowingLayer":
        """A layer stacking the rows of `parts` ((keys, values) pairs), each right-aligned in `width`
        columns with zeros on its left, and room to grow: one copy of every part, no more."""
        keys, values = parts[0]
        rows = sum(part_keys.shape[0] for part_keys, _ in parts)
        layer = cls()
        layer.device, layer.is_initialized, layer.length = keys.device, True, width
        layer._key_buffer = keys.new_empty(rows, keys.shape[1], width + cls.ROOM, keys.shape[-1])
        layer._value_buffer = values.new_empty(layer._key_buffer.shape)
        row = 0
        for part_keys, part_values in parts:
            end, start = row + part_keys.shape[0], width - part_keys.shape[-2]
            for buffer, part in ((layer._key_buffer, part_keys), (layer._value_buffer, part_values)):
                buffer[row:end, :, :start] = 0  # padding is masked, but must not be NaN
                buffer[row:end, :, start:width] = part
            row = end
        layer._expose()
        return layer

    def selected(self, indices: torch.Tensor, skip_columns: int = 0) -> "GrowingLayer":
        """A new layer with the rows at `indices`, all but their first `skip_columns`, and the same room."""
        layer = GrowingLayer()
        layer.device, layer.is_initialized, layer.length = self.device, True, self.length - skip_columns
        layer._key_buffer = self._key_buffer[:, :, skip_columns:].index_select(0, indices)
        layer._value_buffer = self._value_buffer[:, :, skip_columns:].index_select(0, indices)
        layer._expose()
        return layer

    def _reserve(self, columns: int) -> None:
        for name in ("_key_buffer", "_value_buffer"):
            old = getattr(self, name)
            new = old.new_empty(*old.shape[:2], columns, old.shape[-1])
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)

    def _expose(self) -> None:
        self.keys = self._key_buffer[:, :, : self.length]
        self.values = self._value_buffer[:, :, : self.length]


def growing_cache(layers: list[GrowingLayer] | None = None) -> Cache:
    """A key-value cache of GrowingLayers: empty (the model fills it), or made of `layers`."""
    return Cache(layers=layers) if layers is not None else Cache(layer_class_to_replicate=GrowingLayer)


@dataclass(frozen=True)
class Sampling:
    """generate()'s sampling parameters, applied to one step of a batch."""

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    min_p: float = 0.0  # drop tokens less likely than min_p times the likeliest (0: off)
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0

    def adjust(self, logits: torch.Tensor, seen: torch.Tensor, ngrams: "list[NGramTable | None]") -> torch.Tensor:
        """Penalise the tokens a row has seen; forbid those that would repeat one of its n-grams."""
        if self.repetition_penalty != 1.0:
            penalised = torch.where(logits < 0, logits * self.repetition_penalty, logits / self.repetition_penalty)
            logits = torch.where(seen, penalised, logits)
        for row, table in enumerate(ngrams):
            banned = table.banned() if table is not None else ()
            if banned:
                logits[row, list(banned)] = -float("inf")
        return logits

    def candidates(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's candidate tokens and their probabilities, after temperature, top-k, top-p and min-p."""
        values, token_ids = logits.topk(min(self.top_k or logits.shape[-1], logits.shape[-1]), dim=-1)
        values = values / self.temperature
        if self.top_p < 1.0:
            # As generate's top-p: ascending order, drop what sums to at most 1 - top_p, keep the likeliest.
            ascending = values.flip(-1)
            drop = ascending.softmax(-1).cumsum(-1) <= 1 - self.top_p
            drop[:, -1] = False
            values = ascending.masked_fill(drop, -float("inf")).flip(-1)
        if self.min_p > 0.0:
            # As generate's min-p: relative to the likeliest token left, which always stays.
            probabilities = values.softmax(-1)
            drop = probabilities < self.min_p * probabilities.max(-1, keepdim=True).values
            values = values.masked_fill(drop, -float("inf"))
        return values.softmax(-1), token_ids

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """The next token of each row."""
        if not self.do_sample:
            return logits.argmax(-1)
        probabilities, token_ids = self.candidates(logits)
        picked = torch.multinomial(probabilities, 1)
        return token_ids.gather(-1, picked).squeeze(-1)


class NGramTable:
    """The n-grams of one sequence, updated token by token: which next tokens would repeat one."""

    def __init__(self, size: int, token_ids: Iterable[int]) -> None:
        self.tail = deque(maxlen=size - 1)  # the last n-1 tokens: the start of the next n-gram
        self.followers = {}  # (n-1)-gram -> tokens seen after it
        for token_id in token_ids:
            self.add(token_id)

    def add(self, token_id: int) -> None:
        if len(self.tail) == self.tail.maxlen:
            self.followers.setdefault(tuple(self.tail), set()).add(token_id)
        self.tail.append(token_id)

    def banned(self) -> Collection[int]:
        if len(self.tail) < self.tail.maxlen:
            return ()
        return self.followers.get(tuple(self.tail), ())


@dataclass
class _Stored:
    token_ids: list
    layers: list  # per layer (keys, values), each (1, heads, tokens, head size)


class PrefixStore:
    """Key-value caches of sequences computed before, to start prompts that begin the same way.

    The persona's prompt stays for good (`pin`); finished sequences are kept
    (`remember`) up to `max_tokens` tokens in all, the least recently used
    leaving first. A stored sequence is the same whatever followed it, since
    a token's keys and values depend only on the tokens before it.
    """

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._pinned = []
        self._recent = OrderedDict()  # id -> _Stored, least recently used first
        self._tokens = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pinned) + len(self._recent)

    @property
    def tokens(self) -> int:
        return self._tokens

    def pin(self, token_ids: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        with self._lock:
            self._pinned.append(_Stored(list(token_ids), layers))

    def remember(self, token_ids: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep a finished sequence, unless a stored one continues it; stored sequences it continues
        are dropped (it serves their prompts too)."""
        if len(token_ids) > self.max_tokens:
            return
        with self._lock:
            for key, stored in list(self._recent.items()):
                if stored.token_ids[: len(token_ids)] == token_ids:
                    self._recent.move_to_end(key)
                    return
                if token_ids[: len(stored.token_ids)] == stored.token_ids:
                    self._forget(key)
            stored = _Stored(list(token_ids), layers)
            self._recent[id(stored)] = stored
            self._tokens += len(token_ids)
            while self._tokens > self.max_tokens:
                self._forget(next(iter(self._recent)))

    def longest(self, token_ids: list[int]) -> tuple[int, _Stored | None]:
        """(length, stored) of the stored sequence sharing the longest start with `token_ids`; (0, None) if none."""
        with self._lock:
            best, best_length = None, 0
            for stored in [*self._pinned, *self._recent.values()]:
                # commonprefix compares any sequences element-wise, token ids included.
                length = len(os.path.commonprefix([token_ids, stored.token_ids]))
                if length > best_length:
                    best, best_length = stored, length
            if best is not None and id(best) in self._recent:
                self._recent.move_to_end(id(best))
            return best_length, best

    def _forget(self, key: int) -> None:
        self._tokens -= len(self._recent.pop(key).token_ids)


@dataclass
class _Slot:
    """A sequence's place in the batch: what the decoder keeps for it besides the cache rows."""

    sequence: Sequence
    ngrams: NGramTable | None
    prompt_ids: list
    cached: int  # how many tokens of the prompt and then the reply the key-value cache holds


class DecodeBatch:
    """Dialogues generated together; new ones join between steps.

    `prefixes`: a PrefixStore to start prompts from and to keep finished
    sequences in, or None (every prompt computed from its first token).
    `on_step` is called with the sequences that got a token, after each
    sampling (backends.base.GenerationBatch).
    """

    def __init__(
        self, model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", sampling: Sampling,
        max_new_tokens: int, eos_ids: set[int], prefixes: "PrefixStore | None" = None,
        on_step: "Callable[[list[Sequence]], None] | None" = None,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.sampling = sampling
        self.max_new_tokens = max_new_tokens
        self.eos_ids = eos_ids
        self.prefixes = prefixes
        self.on_step = on_step
        self.slots = []  # a _Slot per row, in the cache's row order
        self.cache = None  # of GrowingLayers, a row per sequence, left-padded
        self.attention_mask = None  # (rows, columns of the cache)
        self.positions = None  # (rows,) position id of each row's next token
        self.last_tokens = None  # (rows,) the token each row feeds in next
        self.seen = None  # (rows, vocabulary) tokens each row has had, for the repetition penalty

    def __len__(self) -> int:
        return len(self.slots)

    @torch.inference_mode()
    def add(self, prompt_ids: list[list[int]], sequences: list[Sequence]) -> None:
        """Compute these prompts (lists of token ids) and sample their first token.

        Each sequence's cache starts with the longest stored sequence its prompt
        begins with. Rows whose stored starts are equally long are computed
        together ([stored, padding, new tokens]), so that a long stored start
        never widens a short one's padding.
        """
        starts = [self.prefixes.longest(ids) if self.prefixes is not None else (0, None) for ids in prompt_ids]
        groups = {}
        for index, ((length, _), ids) in enumerate(zip(starts, prompt_ids)):
            # At least the last prompt token is computed: its logits give the first token.
            groups.setdefault(min(length, len(ids) - 1), []).append(index)
        for length, indices in groups.items():
            self._prefill(
                [prompt_ids[i] for i in indices], [sequences[i] for i in indices], [starts[i][1] for i in indices],
                length,
            )

    @torch.inference_mode()
    def step(self) -> None:
        """One more token for every row; rows that end, stop or reach the limit leave the batch."""
        self._drop_finished()  # finished from outside since the last step: a stop, the sentence cap
        if not self.slots:
            return
        attention_mask = torch.cat([self.attention_mask, self.attention_mask.new_ones(len(self), 1)], dim=-1)
        output = self.model(
            input_ids=self.last_tokens[:, None],
            attention_mask=attention_mask,
            position_ids=self.positions[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.attention_mask = attention_mask
        self.positions = self.positions + 1
        for slot in self.slots:
            slot.cached += 1
        self._advance(output.logits[:, -1])

    def _prefill(
        self, prompt_ids: list[list[int]], sequences: list[Sequence], stored: list[_Stored | None], length: int
    ) -> None:
        """Compute prompts whose first `length` tokens come from `stored` sequences, and join them.

        Equal prompts (the candidates of one request) are computed once: their rows of the cache and of the
        logits are copies of one, and each row samples its own first token from them.
        """
        device = self.model.device
        unique = {}  # prompt -> its row among the computed ones
        rows = [unique.setdefault(tuple(ids), len(unique)) for ids in prompt_ids]
        firsts = [rows.index(row) for row in range(len(unique))]
        cache, attention_mask, logits = self._compute([prompt_ids[i] for i in firsts], [stored[i] for i in firsts], length)
        if len(unique) < len(prompt_ids):
            copies = torch.tensor(rows, device=device)
            cache = growing_cache([layer.selected(copies) for layer in cache.layers])
            attention_mask, logits = attention_mask[copies], logits[copies]
        # The repetition penalty counts the reply's own tokens only: penalising the prompt's (the persona,
        # the user's words) pushed the model off common word pieces and broke words ("wasn tough").
        seen = torch.zeros(len(sequences), logits.shape[-1], dtype=torch.bool, device=device)
        size = self.sampling.no_repeat_ngram_size
        slots = [
            _Slot(sequence, NGramTable(size, ids) if size else None, ids, cached=len(ids))
            for sequence, ids in zip(sequences, prompt_ids)
        ]
        self._merge(slots, cache, attention_mask, attention_mask.sum(-1), seen)
        self._advance(logits, first=len(self.slots) - len(sequences))

    def _compute(
        self, prompt_ids: list[list[int]], stored: list[_Stored | None], length: int
    ) -> tuple[Cache, torch.Tensor, torch.Tensor]:
        """(cache, attention mask, last logits) of prompts whose first `length` tokens come from `stored`."""
        device = self.model.device
        new_ids = [ids[length:] for ids in prompt_ids]
        width = max(map(len, new_ids))
        attention_mask = torch.tensor(
            [[1] * length + [0] * (width - len(ids)) + [1] * len(ids) for ids in new_ids], device=device
        )
        input_ids = [[self.tokenizer.pad_token_id] * (width - len(ids)) + ids for ids in new_ids]
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, length:]
        cache = growing_cache(_stacked_starts(stored, length)) if length else growing_cache()
        output = self.model(
            input_ids=torch.tensor(input_ids, device=device),
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return output.past_key_values, attention_mask, output.logits[:, -1]

    def _advance(self, logits: torch.Tensor, first: int = 0) -> None:
        """Sample the next token of rows `first:` and append it to their sequences; then `on_step`."""
        slots = self.slots[first:]
        ngrams = [slot.ngrams for slot in slots]
        log_probabilities = logits.float().log_softmax(-1)  # the model's own, before any sampling rule
        logits = self.sampling.adjust(logits.float(), self.seen[first:], ngrams)
        tokens = self.sampling.choose(logits)
        chosen_log_probabilities = log_probabilities.gather(-1, tokens[:, None]).squeeze(-1).tolist()
        self.last_tokens[first:] = tokens
        self.seen[torch.arange(first, len(self), device=tokens.device), tokens] = True
        for slot, token_id, log_probability in zip(slots, tokens.tolist(), chosen_log_probabilities):
            if slot.ngrams is not None:
                slot.ngrams.add(token_id)
            slot.sequence.append(token_id, log_probability, self.eos_ids, self.max_new_tokens)
        if self.on_step is not None:
            self.on_step([slot.sequence for slot in slots])
        self._drop_finished()

    def _merge(
        self, slots: list[_Slot], cache: Cache, attention_mask: torch.Tensor, positions: torch.Tensor,
        seen: torch.Tensor,
    ) -> None:
        """Append rows to the batch, padding the narrower side's cache on the left."""
        last_tokens = positions.new_zeros(len(slots))
        if not self.slots:
            self.slots, self.cache, self.attention_mask = slots, cache, attention_mask
            self.positions, self.last_tokens, self.seen = positions, last_tokens, seen
            return
        width = max(self.attention_mask.shape[-1], attention_mask.shape[-1])
        # Layer by layer, in place: the old copy of each layer is freed before the next is made.
        for index, (old, new) in enumerate(zip(self.cache.layers, cache.layers)):
            self.cache.layers[index] = GrowingLayer.of_rows([(old.keys, old.values), (new.keys, new.values)], width)
        self.attention_mask = torch.cat([_left_padded(self.attention_mask, width), _left_padded(attention_mask, width)])
        self.slots = self.slots + slots
        self.positions = torch.cat([self.positions, positions])
        self.last_tokens = torch.cat([self.last_tokens, last_tokens])
        self.seen = torch.cat([self.seen, seen])

    def _drop_finished(self) -> None:
        finished = [index for index, slot in enumerate(self.slots) if slot.sequence.finished]
        if not finished:
            return
        if self.prefixes is not None:
            for index in finished:
                # A stopped row is not kept: a person's stop is rare, and a batch abandoned after a failed step
                # stops every row, whose keys and values a half-done step may have left inconsistent.
                if self.slots[index].sequence.finish_reason is not FinishReason.STOPPED:
                    self._remember(index)
        keep = [index for index, slot in enumerate(self.slots) if not slot.sequence.finished]
        self.slots = [self.slots[index] for index in keep]
        if not keep:
            self.cache = self.attention_mask = self.positions = self.last_tokens = self.seen = None
            return
        indices = torch.tensor(keep, device=self.attention_mask.device)
        attention_mask = self.attention_mask[indices]
        # Columns that only the rows that left needed go too.
        unused = int(attention_mask.any(0).long().argmax())
        for index, layer in enumerate(self.cache.layers):
            self.cache.layers[index] = layer.selected(indices, unused)
        self.attention_mask = attention_mask[:, unused:]
        self.positions, self.last_tokens, self.seen = self.positions[indices], self.last_tokens[indices], self.seen[indices]

    def _remember(self, index: int) -> None:
        """Store a finished row's tokens and their keys and values, without its padding."""
        slot = self.slots[index]
        columns = self.attention_mask[index].nonzero().squeeze(-1)
        layers = [
            (layer.keys[index : index + 1, :, columns], layer.values[index : index + 1, :, columns])
            for layer in self.cache.layers
        ]
        # [:cached]: a reply's last token, sampled at the token limit, never went through the model.
        self.prefixes.remember((slot.prompt_ids + slot.sequence.token_ids)[: slot.cached], layers)


def _stacked_starts(stored: list[_Stored], length: int) -> list[GrowingLayer]:
    """Per layer, the first `length` columns of each stored sequence, as one batch."""
    return [
        GrowingLayer.of_rows([(keys[:, :, :length], values[:, :, :length]) for keys, values in layers], length)
        for layers in zip(*(sequence.layers for sequence in stored))
    ]


def _left_padded(mask: torch.Tensor, width: int) -> torch.Tensor:
    """An attention mask with masked columns put before it, up to `width`."""
    return torch.cat([mask.new_zeros(mask.shape[0], width - mask.shape[-1]), mask], dim=-1)
