"""Both backends with tiny models built from configs: prompts, batches, streaming, stopping."""
import pytest

from inference.backends import REFERENCE_SAMPLING, backend_for, cut_to_tokens
from inference.loading import load_generator
from inference.prompts import PERSONA
from inference.requests import FinishReason, Sequence, Turn
from inference.retrieval import Hit

HIT = Hit(text="Bazinga!", question="Did you fool me?", score=0.95, episode="E1", scene=2)
HISTORY = [Turn("user", "Hello, Sheldon."), Turn("bot", "Hello.")]


def generate(backend, prompts, stop_after=None):
    """Generate a batch; returns each sequence and the pieces of text it got after each step.

    `stop_after[i]`: finish sequence i from outside (as a stop does) once it has that many tokens.
    """
    sequences = [Sequence() for _ in prompts]
    pieces = [[] for _ in prompts]
    steps_after_finish = []

    def on_step(changed):
        for sequence in changed:
            index = sequences.index(sequence)
            if sequence.stopped:
                steps_after_finish.append(index)
            if piece := sequence.new_text(backend.tokenizer):
                pieces[index].append(piece)
            if stop_after and stop_after[index] and len(sequence.token_ids) >= stop_after[index]:
                sequence.finish(FinishReason.STOPPED)

    backend.generate(prompts, sequences, on_step)
    assert not steps_after_finish, "a sequence finished from outside was stepped again"
    return sequences, pieces


def test_seq2seq_uses_the_reference_prompt_and_sampling(tiny_t5):
    backend = backend_for(load_generator(str(tiny_t5)), max_new_tokens=12)
    assert backend.prompt(HISTORY, "Are you well?", HIT) == (
        "context: Bazinga! Hello, Sheldon. Hello.</s>question: Are you well?"
    )
    assert backend.prompt([], "Are you well?", None) == "context: </s>question: Are you well?"
    assert backend.parameters == {**REFERENCE_SAMPLING, "max_new_tokens": 12}
    assert REFERENCE_SAMPLING == {
        "do_sample": True, "temperature": 0.95, "top_p": 0.9, "top_k": 50,
        "repetition_penalty": 2.0, "no_repeat_ngram_size": 2,
    }


def test_chat_prompt_has_persona_retrieved_exchange_and_history_as_turns(tiny_chat):
    backend = backend_for(load_generator(str(tiny_chat)), max_new_tokens=12)
    prompt = backend.prompt(HISTORY, "Are you well?", HIT)
    order = [PERSONA, "Did you fool me?", "Bazinga!", "Hello, Sheldon.", "Hello.", "Are you well?"]
    positions = [prompt.index(text) for text in order]
    assert positions == sorted(positions)
    assert prompt.count("<|im_start|>assistant") == 3  # retrieved answer, history reply, the reply to come
    assert prompt.rstrip().endswith("<|im_start|>assistant")


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_chat"])
def test_a_padded_batch_streams_each_row_within_the_token_limit(model, request):
    backend = backend_for(load_generator(str(request.getfixturevalue(model))), max_new_tokens=8)
    prompts = [backend.prompt([], "Hi.", None), backend.prompt(HISTORY * 3, "A much longer question, is it not?", HIT)]
    sequences, pieces = generate(backend, prompts)
    for sequence, sequence_pieces in zip(sequences, pieces):
        assert 0 < len(sequence.token_ids) <= 8
        assert "".join(sequence_pieces) == backend.tokenizer.decode(sequence.token_ids, skip_special_tokens=True)
        assert sequence.finish_reason in (FinishReason.END, FinishReason.LENGTH)


@pytest.mark.parametrize("model", ["tiny_t5", "tiny_chat"])
def test_a_sequence_finished_from_outside_leaves_the_batch_and_only_it(model, request):
    backend = backend_for(load_generator(str(request.getfixturevalue(model))), max_new_tokens=30)
    backend.eos_ids = set()  # random weights may end at once: the free row runs to its limit
    prompt = backend.prompt([], "Hi.", None)
    (free, stopped), _ = generate(backend, [prompt, prompt], stop_after=[None, 3])
    assert stopped.stopped and len(stopped.token_ids) == 3  # no token computed for it after the stop
    assert free.finish_reason is FinishReason.LENGTH and len(free.token_ids) == 30


def test_a_chat_prompt_over_budget_leaves_out_its_oldest_turns(tiny_chat):
    generator = load_generator(str(tiny_chat))
    history = [Turn("user", f"Turn number {n} of a long and winding conversation.") for n in range(40)]
    unbounded = backend_for(generator, max_new_tokens=4).prompt(history, "And now?", HIT)
    backend = backend_for(generator, max_new_tokens=4, prompt_budget=300)
    prompt = backend.prompt(history, "And now?", HIT)

    def tokens(text):
        return len(generator.tokenizer(text, add_special_tokens=False).input_ids)

    assert tokens(unbounded) > 300 >= tokens(prompt)
    assert PERSONA in prompt and "Bazinga!" in prompt and "And now?" in prompt
    assert "Turn number 39 " in prompt and "Turn number 0 " not in prompt
    # A prompt exactly at the budget fits whole.
    exact = backend_for(generator, max_new_tokens=4, prompt_budget=tokens(unbounded))
    assert exact.prompt(history, "And now?", HIT) == unbounded
    # A message that alone is over budget is cut until the prompt fits: never past the budget.
    long_message = "word " * 400
    cut = backend.prompt(history, long_message, HIT)
    assert tokens(cut) <= 300 and "word word" in cut and long_message.strip() not in cut
    assert PERSONA in cut and "Bazinga!" in cut


def test_a_message_is_cut_to_a_token_budget(tiny_chat):
    tokenizer = load_generator(str(tiny_chat)).tokenizer
    dense = "".join(chr(0x4E00 + n * 7 % 20000) for n in range(2000))  # 2,000 ideographs
    cut, total = cut_to_tokens(tokenizer, dense, 384)
    assert total > 2000 and len(tokenizer(cut, add_special_tokens=False).input_ids) <= 384
    assert dense.startswith(cut) and cut
    assert cut_to_tokens(tokenizer, "A short one.", 384) == ("A short one.", len(tokenizer("A short one.").input_ids))


def test_a_prompt_over_budget_leaves_out_the_retrieved_exchange_before_it_cuts_the_message(tiny_chat):
    generator = load_generator(str(tiny_chat))
    long_hit = Hit(text="Bazinga! " + "And another thing. " * 100, question="Did you fool me?", score=0.95,
                   episode="E1", scene=2)
    unbounded = backend_for(generator, max_new_tokens=4).prompt([], "What is the Doppler effect?", None)
    budget = len(generator.tokenizer(unbounded, add_special_tokens=False).input_ids) + 10
    prompt = backend_for(generator, max_new_tokens=4, prompt_budget=budget).prompt(
        [], "What is the Doppler effect?", long_hit
    )
    assert prompt == unbounded  # the whole message, without the exchange that did not fit beside it


def test_streamed_text_never_holds_half_a_character(tiny_chat):
    """A byte-level vocabulary spells an emoji in several tokens: the text waits for the character's last one."""
    from transformers import AutoTokenizer

    from inference.requests import IncrementalDetokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_chat))
    text = "Café ☕ is great 😀. Straße, ½ ≠ ∞."
    token_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(token_ids) > len(text.split())  # several tokens to some characters
    detokenizer, pieces = IncrementalDetokenizer(), []
    for end in range(1, len(token_ids) + 1):
        pieces.append(detokenizer.add(token_ids[:end], tokenizer))
    assert "".join(pieces) == text and not any("\ufffd" in piece for piece in pieces)


def test_an_over_long_t5_prompt_loses_its_oldest_context_not_the_question(tiny_t5):
    backend = backend_for(load_generator(str(tiny_t5)), max_new_tokens=4)
    prompt = backend.prompt([Turn("user", "blah " * 2000)], "Where are my keys?", None)
    inputs = backend._model_inputs([prompt])
    assert inputs["input_ids"].shape[1] == backend.max_prompt_tokens  # cut
    kept = backend.tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True)
    assert kept.endswith("question: Where are my keys?")
