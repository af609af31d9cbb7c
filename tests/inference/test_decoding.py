"""Continuous batching computes what generate() computes: rows joining and leaving mid-way, prompts
starting from stored prefixes, the same sampling."""
from dataclasses import replace

import pytest
import torch
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from inference.backends import CHAT_SAMPLING, backend_for
from inference.decoding import DecodeBatch, NGramTable, PrefixStore, Sampling
from inference.loading import load_generator
from inference.requests import FinishReason, Sequence, Turn
from inference.retrieval import Hit

HIT = Hit(text="Bazinga!", question="Did you fool me?", score=0.95, episode="E1", scene=2)
GREEDY = dict(do_sample=False, repetition_penalty=1.2, no_repeat_ngram_size=3)
# generate() penalises the prompt's tokens too; the decoder penalises the reply's only.
GENERATE_GREEDY = {key: value for key, value in GREEDY.items() if key != "repetition_penalty"}


class RecordingBatch(DecodeBatch):
    """Keeps the raw logits each row's tokens were chosen from."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.logits = {}

    def _advance(self, logits, first=0):
        for slot, row_logits in zip(self.slots[first:], logits):
            self.logits.setdefault(id(slot.sequence), []).append(row_logits.clone())
        super()._advance(logits, first)


@pytest.fixture
def full_precision_chat(tiny_chat, settings):
    # The torch engine, in full precision: padded and unpadded rows compute the same.
    settings.INFERENCE_ENGINE = "torch"
    return backend_for(load_generator(str(tiny_chat)), max_new_tokens=6, prefix_cache_tokens=4096)


def alone(backend, prompt, max_new_tokens):
    """generate()'s greedy tokens and raw logits for one unpadded prompt."""
    tokenizer = backend.tokenizer
    input_ids = torch.tensor([tokenizer(prompt, add_special_tokens=False).input_ids])
    reply_penalty = RepetitionPenaltyLogitsProcessor(GREEDY["repetition_penalty"], prompt_ignore_length=input_ids.shape[1])
    with torch.inference_mode():
        output = backend.model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
            output_logits=True, return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
            top_k=None, top_p=None, temperature=None, logits_processor=LogitsProcessorList([reply_penalty]),
            **GENERATE_GREEDY,
        )
    tokens = output.sequences[0, input_ids.shape[1] :].tolist()
    return [token for token in tokens if token not in backend.eos_ids], [step[0] for step in output.logits]


def recording_args(backend, sampling, prefixes=None):
    return backend.model, backend.tokenizer, sampling, 6, backend.eos_ids, prefixes


def recording_batch(backend, prefixes, on_step=None):
    return RecordingBatch(*recording_args(backend, Sampling(**GREEDY), prefixes), on_step)


def token_ids(backend, prompts):
    return [backend.tokenizer(prompt, add_special_tokens=False).input_ids for prompt in prompts]


def assert_computed_as_alone(backend, batch, prompts, rows):
    for prompt, row in zip(prompts, rows):
        tokens, logits = alone(backend, prompt, max_new_tokens=6)
        steps = len(batch.logits[id(row)])
        assert row.token_ids == tokens[: len(row.token_ids)]
        assert torch.allclose(torch.stack(batch.logits[id(row)]), torch.stack(logits[:steps]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("use_prefixes", [True, False])
@pytest.mark.parametrize("first_is_widest", [True, False])
def test_rows_that_join_and_leave_mid_way_compute_what_their_prompt_computes_alone(
    full_precision_chat, use_prefixes, first_is_widest
):
    backend = full_precision_chat
    prompts = [
        backend.prompt([Turn("user", "A long opening line, to make this prompt the widest.")] * 3, "Well?", HIT),
        backend.prompt([], "Hi.", None),
        backend.prompt([Turn("user", "Hello."), Turn("bot", "Hello.")], "How are you?", None),
    ]
    if not first_is_widest:
        prompts.reverse()
    rows = [Sequence(), Sequence(), Sequence()]

    def stop_the_first_at_three_tokens(changed):
        if rows[0] in changed and len(rows[0].token_ids) == 3:
            rows[0].finish(FinishReason.STOPPED)

    batch = recording_batch(backend, backend.prefix_store() if use_prefixes else None, stop_the_first_at_three_tokens)
    prompt_ids = token_ids(backend, prompts)

    batch.add(prompt_ids[:1], rows[:1])
    batch.step()
    batch.add(prompt_ids[1:], rows[1:])  # join a running batch, narrower or wider than its first row
    assert len(batch) == 3
    while batch:
        batch.step()

    assert rows[0].stopped and len(rows[0].token_ids) == 3  # stopped after its third token: no fourth
    assert all(row.finished for row in rows)
    assert_computed_as_alone(backend, batch, prompts, rows)
    # The rows that stayed went on to their end or the token limit.
    assert all(row.finish_reason in (FinishReason.END, FinishReason.LENGTH) for row in rows[1:])
    assert all(row.finish_reason is FinishReason.END or len(row.token_ids) == 6 for row in rows[1:])


def test_the_next_turn_of_a_conversation_starts_from_the_stored_previous_turn(full_precision_chat):
    backend = full_precision_chat
    store = backend.prefix_store()
    persona_length = store.longest(token_ids(backend, [backend.prompt([], "x", None)])[0])[0]
    first_prompt = backend.prompt([], "Hi.", None)
    first = Sequence()
    batch = recording_batch(backend, store)
    batch.add(token_ids(backend, [first_prompt]), [first])
    while batch:
        batch.step()

    first_reply = backend.tokenizer.decode(first.token_ids, skip_special_tokens=True)
    next_prompt = backend.prompt([Turn("user", "Hi."), Turn("bot", first_reply)], "And then?", None)
    stored_length, _ = store.longest(token_ids(backend, [next_prompt])[0])
    # All of the first prompt is reused but, at most, its last token: tokenised again with the reply
    # after it, the prompt's closing newline may merge with the reply's first word.
    assert stored_length >= len(token_ids(backend, [first_prompt])[0]) - 1 > persona_length
    # Joined by a new conversation, which starts from the persona only.
    new_prompt = backend.prompt([], "A new conversation, with a somewhat longer first message?", None)
    rows = [Sequence(), Sequence()]
    prompt_ids = token_ids(backend, [next_prompt, new_prompt])
    batch.add(prompt_ids, rows)
    assert batch.attention_mask.shape[-1] == max(map(len, prompt_ids))  # no padding beyond the longest prompt
    while batch:
        batch.step()
    assert_computed_as_alone(backend, batch, [next_prompt, new_prompt], rows)


@pytest.mark.parametrize("use_prefixes", [True, False])
def test_equal_prompts_are_computed_once_and_each_row_goes_on_as_alone(full_precision_chat, use_prefixes):
    """The candidates of one request have one prompt: it is computed in one row, and the copies of its keys
    and values grow apart: each row, sampled, computes what its prompt and its own tokens compute alone."""
    backend = full_precision_chat
    prompt = backend.prompt([Turn("user", "Hello."), Turn("bot", "Hello.")], "How are you?", HIT)
    prompts = [prompt, prompt, backend.prompt([], "Hi.", None), prompt]
    rows = [Sequence() for _ in prompts]
    prefixes = backend.prefix_store() if use_prefixes else None  # the persona computed before counting
    computed = []  # rows of each forward pass over more than one token (a prompt's)
    hook = backend.model.register_forward_pre_hook(
        lambda module, args, kwargs: computed.append(len(kwargs["input_ids"])) if kwargs["input_ids"].shape[1] > 1 else None,
        with_kwargs=True,
    )

    def stop_the_second_at_two_tokens(changed):  # a copy leaves (and is stored) while the others go on
        if rows[1] in changed and len(rows[1].token_ids) == 2:
            rows[1].finish(FinishReason.STOPPED)

    torch.manual_seed(7)
    sampling = Sampling(do_sample=True, temperature=1.0, top_k=0)
    batch = RecordingBatch(*recording_args(backend, sampling, prefixes), stop_the_second_at_two_tokens)
    try:
        batch.add(token_ids(backend, prompts), rows)
        while batch:
            batch.step()
    finally:
        hook.remove()
    assert computed == [2]  # two distinct prompts, four rows
    copies = [rows[0].token_ids, rows[1].token_ids, rows[3].token_ids]
    assert len(rows[1].token_ids) == 2 and copies[0] != copies[2]  # the copies sampled apart
    for prompt_ids, row in zip(token_ids(backend, prompts), rows):
        # One unpadded pass over the prompt and the row's tokens: the logits each of its tokens was drawn from.
        ids = torch.tensor([prompt_ids + row.token_ids[:-1]])
        with torch.inference_mode():
            logits = backend.model(input_ids=ids).logits[0, len(prompt_ids) - 1 :]
        assert torch.allclose(torch.stack(batch.logits[id(row)]), logits, atol=1e-5, rtol=0)


def test_the_prefix_store_keeps_recent_sequences_within_its_token_budget():
    store = PrefixStore(max_tokens=10)
    store.pin([1, 2, 3], layers=[])
    store.remember([1, 2, 3, 4, 5], layers=[])
    assert store.longest([1, 2, 3, 4, 5, 6])[0] == 5
    store.remember([1, 2, 3, 4, 5, 6, 7], layers=[])  # the same conversation, one turn on: replaces it
    assert len(store) == 2 and store.tokens == 7
    store.remember([9, 9, 9, 9], layers=[])  # over budget: the least recently used leaves
    assert store.tokens == 4
    assert store.longest([1, 2, 3, 4, 5])[0] == 3  # the pinned persona stays
    store.remember(list(range(11)), layers=[])  # longer than the whole budget: not kept
    assert store.tokens == 4 and store.longest([9, 9, 9])[0] == 3
    store.remember([9, 9], layers=[])  # a stored sequence already continues it: nothing new
    assert len(store) == 2 and store.tokens == 4


def test_no_repeated_ngrams_without_a_repetition_penalty(full_precision_chat):
    """The n-gram ban alone edits the model's logits in place (no penalty copies them first)."""
    backend = full_precision_chat
    row = Sequence()
    batch = DecodeBatch(
        backend.model, backend.tokenizer, Sampling(do_sample=False, no_repeat_ngram_size=2), 6, backend.eos_ids
    )
    batch.add(token_ids(backend, [backend.prompt([], "Hi.", None)]), [row])
    while batch:
        batch.step()
    prompt_ids = token_ids(backend, [backend.prompt([], "Hi.", None)])[0]
    tokens = prompt_ids + row.token_ids
    assert row.token_ids
    for end in range(len(prompt_ids), len(tokens)):  # no generated token completes a bigram seen before
        assert (tokens[end - 1], tokens[end]) not in set(zip(tokens[: end - 1], tokens[1:end]))


def test_the_repetition_penalty_spares_the_prompt_and_rows_keep_their_log_probability(full_precision_chat):
    """Only the reply's own tokens count as seen (a penalised prompt broke words: "wasn tough"),
    and each row adds up the model's log-probability of the tokens it was given."""
    backend = full_precision_chat
    prompt_ids = token_ids(backend, [backend.prompt([], "Hi.", None)])
    batch = RecordingBatch(*recording_args(backend, Sampling(do_sample=False, repetition_penalty=5.0)))
    row = Sequence()
    batch.add(prompt_ids, [row])
    assert not row.finished and len(row.token_ids) == 1
    assert batch.seen[0].nonzero().flatten().tolist() == row.token_ids  # not one of the prompt's tokens
    batch.step()
    expected = sum(
        logits.log_softmax(-1)[token].item() for logits, token in zip(batch.logits[id(row)], row.token_ids)
    )
    assert row.log_probability == pytest.approx(expected, abs=1e-4)
    assert row.mean_log_probability == pytest.approx(expected / len(row.token_ids), abs=1e-4)


def test_sampling_draws_from_the_distribution_generate_draws_from():
    torch.manual_seed(0)
    logits = torch.randn(4, 1000) * 3
    sampling = Sampling(**CHAT_SAMPLING)
    warpers = [
        TemperatureLogitsWarper(CHAT_SAMPLING["temperature"]),
        TopKLogitsWarper(CHAT_SAMPLING["top_k"]),
        TopPLogitsWarper(CHAT_SAMPLING["top_p"]),
    ]
    expected = logits.clone()
    for warper in warpers:
        expected = warper(None, expected)
    probabilities, token_ids = sampling.candidates(logits)
    ours = torch.zeros_like(logits).scatter(-1, token_ids, probabilities)
    assert torch.allclose(ours, expected.softmax(-1), atol=1e-6)
    assert (ours > 0).sum(-1).lt(CHAT_SAMPLING["top_k"]).all()  # top-p did leave some out
    chosen = sampling.choose(logits)
    assert expected.softmax(-1).gather(-1, chosen[:, None]).gt(0).all()


def test_min_p_draws_from_the_distribution_generate_draws_from():
    """min-p after temperature, top-k and top-p, as generate() applies them: at a higher temperature it leaves out
    the long tail that top-p keeps."""
    torch.manual_seed(2)
    logits = torch.randn(4, 1000) * 3
    sampling = Sampling(**{**CHAT_SAMPLING, "temperature": 0.9, "min_p": 0.1})
    expected = logits.clone()
    for warper in (TemperatureLogitsWarper(0.9), TopKLogitsWarper(50), TopPLogitsWarper(0.9), MinPLogitsWarper(0.1)):
        expected = warper(None, expected)
    probabilities, token_ids = sampling.candidates(logits)
    ours = torch.zeros_like(logits).scatter(-1, token_ids, probabilities)
    assert torch.allclose(ours, expected.softmax(-1), atol=1e-6)
    without = replace(sampling, min_p=0.0).candidates(logits)[0]
    assert (ours > 0).sum() < (without > 0).sum()  # min-p left out tokens that top-p kept


def test_penalties_match_generate_processors():
    torch.manual_seed(1)
    vocabulary = 50
    ids = torch.randint(0, 4, (3, 40))  # a small alphabet: many repeated n-grams
    logits = torch.randn(3, vocabulary)
    expected = RepetitionPenaltyLogitsProcessor(1.2)(ids, logits.clone())
    expected = NoRepeatNGramLogitsProcessor(3)(ids, expected)

    seen = torch.zeros(3, vocabulary, dtype=torch.bool).scatter(-1, ids, True)
    ngrams = [NGramTable(3, row.tolist()) for row in ids]
    ours = Sampling(repetition_penalty=1.2, no_repeat_ngram_size=3).adjust(logits.clone(), seen, ngrams)
    assert torch.isinf(expected).any()
    assert torch.equal(ours, expected)


def test_a_stopped_row_is_not_kept_in_the_prefix_store(full_precision_chat):
    # A batch abandoned after a failed step stops every row, and a half-done step may have left their keys and
    # values inconsistent: stopped rows are let go without being stored; a row that ended is stored.
    backend = full_precision_chat
    store = backend.prefix_store()
    stopped, ended = Sequence(), Sequence()
    batch = recording_batch(backend, store)
    batch.add(token_ids(backend, [backend.prompt([], "Hi.", None), backend.prompt([], "Hello?", None)]), [stopped, ended])
    stopped.finish(FinishReason.STOPPED)
    while batch:
        batch.step()
    assert len(store) == 2  # the persona, pinned, and the row that ended
    stopped_start, _ = store.longest(token_ids(backend, [backend.prompt([], "Hi.", None)])[0])
    persona_length = store.longest(token_ids(backend, [backend.prompt([], "x", None)])[0])[0]
    assert stopped_start == persona_length


@pytest.mark.parametrize("max_new_tokens", [1, 2, 6])
def test_a_stored_sequence_holds_the_keys_and_values_of_every_token_it_names(full_precision_chat, max_new_tokens):
    """A row ended by the token limit sampled its last token without computing it: stored with that token, the
    next turn (which starts with it) would take one key-value column too few."""
    backend = full_precision_chat
    store = backend.prefix_store()
    row = Sequence()
    sampling = Sampling(**GREEDY)
    batch = RecordingBatch(backend.model, backend.tokenizer, sampling, max_new_tokens, backend.eos_ids, store)
    prompt_ids = token_ids(backend, [backend.prompt([], "Hi.", None)])[0]
    batch.add([prompt_ids], [row])
    while batch:
        batch.step()
    assert row.finish_reason is FinishReason.LENGTH and len(row.token_ids) == max_new_tokens
    length, stored = store.longest(prompt_ids + row.token_ids)
    assert length == len(prompt_ids) + max_new_tokens - 1  # all but the last token, which never went through
    assert all(keys.shape[-2] == values.shape[-2] == len(stored.token_ids) for keys, values in stored.layers)
