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

Sampling follows generate()'s for the same parameters: repetition penalty
over the prompt and the reply, no repeated n-grams, then temperature, top-k
and top-p; only the top-k candidates are sorted and drawn from, which gives
the same distribution (top-p keeps a subset of the top k) without sorting
the whole vocabulary.
"""
from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache, DynamicLayer


class GrowingLayer(DynamicLayer):
    """One layer's keys and values, in buffers with room for the next tokens."""

    ROOM = 64  # columns added whenever the buffer is full

    def update(self, key_states, value_states, *args, **kwargs):
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

    def get_seq_length(self):
        return self.length if self.is_initialized else 0

    def rows(self, indices):
        """A new layer with the batch rows at `indices` (a row may repeat)."""
        return self._with(self.keys[indices], self.values[indices])

    def left_padded(self, width):
        """A new layer whose rows are padded with zeros on the left to `width` columns."""
        missing = width - self.length
        if missing == 0:
            return self
        pad = self.keys.new_zeros(*self.keys.shape[:2], missing, self.keys.shape[-1])
        return self._with(torch.cat([pad, self.keys], dim=2), torch.cat([pad, self.values], dim=2))

    def without_first_columns(self, count):
        return self._with(self.keys[:, :, count:], self.values[:, :, count:])

    @classmethod
    def stacked(cls, layers):
        """The rows of all `layers` in one layer (their widths must match)."""
        return layers[0]._with(torch.cat([l.keys for l in layers]), torch.cat([l.values for l in layers]))

    def _with(self, keys, values):
        layer = GrowingLayer()
        layer.device, layer.is_initialized, layer.length = keys.device, True, keys.shape[-2]
        layer._key_buffer, layer._value_buffer = keys, values
        layer._expose()
        return layer

    def _reserve(self, columns):
        for name in ("_key_buffer", "_value_buffer"):
            old = getattr(self, name)
            new = old.new_empty(*old.shape[:2], columns, old.shape[-1])
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)

    def _expose(self):
        self.keys = self._key_buffer[:, :, : self.length]
        self.values = self._value_buffer[:, :, : self.length]


def growing_cache(layers=None):
    """A key-value cache of GrowingLayers: empty (the model fills it), or made of `layers`."""
    return Cache(layers=layers) if layers is not None else Cache(layer_class_to_replicate=GrowingLayer)


@dataclass(frozen=True)
class Sampling:
    """generate()'s sampling parameters, applied to one step of a batch."""

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0

    def adjust(self, logits, seen, ngrams):
        """Penalise the tokens a row has seen; forbid those that would repeat one of its n-grams."""
        if self.repetition_penalty != 1.0:
            penalised = torch.where(logits < 0, logits * self.repetition_penalty, logits / self.repetition_penalty)
            logits = torch.where(seen, penalised, logits)
        for row, table in enumerate(ngrams):
            banned = table.banned() if table is not None else ()
            if banned:
                logits[row, list(banned)] = -float("inf")
        return logits

    def candidates(self, logits):
        """Each row's candidate tokens and their probabilities, after temperature, top-k and top-p."""
        values, token_ids = logits.topk(min(self.top_k or logits.shape[-1], logits.shape[-1]), dim=-1)
        values = values / self.temperature
        if self.top_p < 1.0:
            # As generate's top-p: ascending order, drop what sums to at most 1 - top_p, keep the likeliest.
            ascending = values.flip(-1)
            drop = ascending.softmax(-1).cumsum(-1) <= 1 - self.top_p
            drop[:, -1] = False
            values = ascending.masked_fill(drop, -float("inf")).flip(-1)
        return values.softmax(-1), token_ids

    def choose(self, logits):
        """The next token of each row."""
        if not self.do_sample:
            return logits.argmax(-1)
        probabilities, token_ids = self.candidates(logits)
        picked = torch.multinomial(probabilities, 1)
        return token_ids.gather(-1, picked).squeeze(-1)


class NGramTable:
    """The n-grams of one sequence, updated token by token: which next tokens would repeat one."""

    def __init__(self, size, token_ids):
        self.size = size
        self.tokens = []
        self.followers = {}  # (n-1)-gram -> tokens seen after it
        for token_id in token_ids:
            self.add(token_id)

    def add(self, token_id):
        self.tokens.append(token_id)
        if len(self.tokens) >= self.size:
            *head, last = self.tokens[-self.size :]
            self.followers.setdefault(tuple(head), set()).add(last)

    def banned(self):
        if len(self.tokens) < self.size - 1:
            return ()
        return self.followers.get(tuple(self.tokens[len(self.tokens) - self.size + 1 :]), ())


@dataclass
class _Sequence:
    row: object  # backends.Row
    ngrams: NGramTable | None
    generated: int = 0


class DecodeBatch:
    """Dialogues generated together; new ones join between steps.

    `prefix`: (token ids, cache of one row) that every prompt starts with,
    computed once (the chat persona), or None.
    """

    def __init__(self, model, tokenizer, sampling, max_new_tokens, eos_ids, prefix=None):
        self.model, self.tokenizer = model, tokenizer
        self.sampling = sampling
        self.max_new_tokens = max_new_tokens
        self.eos_ids = eos_ids
        self.prefix_ids, self.prefix_cache = prefix if prefix is not None else ([], None)
        self.sequences = []
        self.cache = None  # of GrowingLayers, a row per sequence, left-padded
        self.attention_mask = None  # (rows, columns of the cache)
        self.positions = None  # (rows,) position id of each row's next token
        self.last_tokens = None  # (rows,) the token each row feeds in next
        self.seen = None  # (rows, vocabulary) tokens each row has had, for the repetition penalty

    def __len__(self):
        return len(self.sequences)

    def add(self, prompt_ids, rows):
        """Compute these prompts (token lists, each starting with the prefix) and their first token."""
        if not prompt_ids:
            return
        if any(ids[: len(self.prefix_ids)] != self.prefix_ids for ids in prompt_ids):
            raise ValueError("Every prompt of this batch must start with its shared prefix.")
        device = self.model.device
        dialogues = [ids[len(self.prefix_ids) :] for ids in prompt_ids]
        width = max(map(len, dialogues))
        # Each dialogue right after the prefix, its padding between them, masked.
        input_ids = [[self.tokenizer.pad_token_id] * (width - len(ids)) + ids for ids in dialogues]
        attention_mask = torch.tensor(
            [[1] * len(self.prefix_ids) + [0] * (width - len(ids)) + [1] * len(ids) for ids in dialogues],
            device=device,
        )
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, len(self.prefix_ids) :]
        if self.prefix_cache is not None:
            row_zero = torch.zeros(len(rows), dtype=torch.long, device=device)
            cache = growing_cache([layer.rows(row_zero) for layer in self.prefix_cache.layers])
        else:
            cache = growing_cache()
        with torch.inference_mode():
            output = self.model(
                input_ids=torch.tensor(input_ids, device=device),
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        vocabulary = output.logits.shape[-1]
        seen = torch.zeros(len(rows), vocabulary, dtype=torch.bool, device=device)
        for row_index, ids in enumerate(prompt_ids):
            seen[row_index, ids] = True
        size = self.sampling.no_repeat_ngram_size
        sequences = [_Sequence(row, NGramTable(size, ids) if size else None) for row, ids in zip(rows, prompt_ids)]
        self._merge(sequences, output.cache, attention_mask, attention_mask.sum(-1), seen)
        self._advance(output.logits[:, -1], first=len(self.sequences) - len(rows))

    def step(self):
        """One more token for every row; rows that end, stop or reach the limit leave the batch."""
        if not self.sequences:
            return
        attention_mask = torch.cat([self.attention_mask, self.attention_mask.new_ones(len(self), 1)], dim=-1)
        with torch.inference_mode():
            output = self.model(
                input_ids=self.last_tokens[:, None],
                attention_mask=attention_mask,
                position_ids=self.positions[:, None],
                cache=self.cache,
                use_cache=True,
            )
        self.attention_mask = attention_mask
        self.positions = self.positions + 1
        self._advance(output.logits[:, -1])

    def _advance(self, logits, first=0):
        """Sample the next token of rows `first:`, hand it to those not asked to stop, let finished rows go."""
        sequences = self.sequences[first:]
        ngrams = [sequence.ngrams for sequence in sequences]
        logits = self.sampling.adjust(logits.float(), self.seen[first:], ngrams)
        tokens = self.sampling.choose(logits)
        self.last_tokens[first:] = tokens
        self.seen[torch.arange(first, len(self), device=tokens.device), tokens] = True
        for sequence, token_id in zip(sequences, tokens.tolist()):
            row = sequence.row
            if row.should_stop is not None and row.should_stop():
                row.stopped = True  # a stop takes effect before the next token is shown
            else:
                sequence.generated += 1
                if sequence.ngrams is not None:
                    sequence.ngrams.add(token_id)
                row.accept(token_id, self.tokenizer, self.eos_ids)
            row.finished = row.done or sequence.generated >= self.max_new_tokens
        self._drop_finished()

    def _merge(self, sequences, cache, attention_mask, positions, seen):
        """Append rows to the batch, padding the narrower side's cache on the left."""
        last_tokens = positions.new_zeros(len(sequences))
        if not self.sequences:
            self.sequences, self.cache, self.attention_mask = sequences, cache, attention_mask
            self.positions, self.last_tokens, self.seen = positions, last_tokens, seen
            return
        width = max(self.attention_mask.shape[-1], attention_mask.shape[-1])
        self.cache = growing_cache(
            [
                GrowingLayer.stacked([old.left_padded(width), new.left_padded(width)])
                for old, new in zip(self.cache.layers, cache.layers)
            ]
        )
        self.attention_mask = torch.cat([_left_padded(self.attention_mask, width), _left_padded(attention_mask, width)])
        self.sequences = self.sequences + sequences
        self.positions = torch.cat([self.positions, positions])
        self.last_tokens = torch.cat([self.last_tokens, last_tokens])
        self.seen = torch.cat([self.seen, seen])

    def _drop_finished(self):
        keep = [index for index, sequence in enumerate(self.sequences) if not sequence.row.finished]
        if len(keep) == len(self.sequences):
            return
        self.sequences = [self.sequences[index] for index in keep]
        if not keep:
            self.cache = self.attention_mask = self.positions = self.last_tokens = self.seen = None
            return
        indices = torch.tensor(keep, device=self.attention_mask.device)
        attention_mask = self.attention_mask[indices]
        # Columns that only the rows that left needed go too.
        unused = int(attention_mask.any(0).long().argmax())
        layers = [layer.rows(indices) for layer in self.cache.layers]
        if unused:
            layers = [layer.without_first_columns(unused) for layer in layers]
        self.cache = growing_cache(layers)
        self.attention_mask = attention_mask[:, unused:]
        self.positions, self.last_tokens, self.seen = self.positions[indices], self.last_tokens[indices], self.seen[indices]


def _left_padded(mask, width):
    return torch.cat([mask.new_zeros(mask.shape[0], width - mask.shape[-1]), mask], dim=-1)
