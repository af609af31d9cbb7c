"""What a ReplyBatch does with the tokens a model gives: the cut at the token limit, a stop, a failing callback.

The model's tokens are scripted here (ScriptedBatch, the backends' GenerationBatch contract), so each test knows
the text a step adds; the replier, its batch, the clean-up and the choice are the real ones. The models
themselves are tested in test_backends.py and test_decoding.py.
"""
import pytest

from inference.backends import backend_for
from inference.loading import load_generator
from inference.profiles import Profile
from inference.replier import Replier
from inference.requests import FinishReason, RequestState


class ScriptedBatch:
    """A generation batch whose every sequence gets the tokens of `script`, one a step, then an end token.

    `during_step(step)` runs inside each step before its tokens are given, as a stop pressed while a real
    model computes a step would land."""

    def __init__(self, tokenizer, script, max_tokens, on_step, during_step=None):
        self.tokens = tokenizer(script, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        self.end_ids = {tokenizer.eos_token_id}
        self.max_tokens, self.on_step, self.during_step = max_tokens, on_step, during_step
        self.sequences, self.added, self.steps = [], [], 0

    def add(self, prompts, sequences):
        self.sequences += sequences
        self.added += sequences

    def step(self):
        self.sequences = [sequence for sequence in self.sequences if not sequence.finished]  # stopped ones leave
        self.steps += 1
        if self.during_step:
            self.during_step(self.steps)
        for sequence in self.sequences:
            sequence.append(self.tokens[len(sequence.token_ids)], -0.5, self.end_ids, self.max_tokens)
        self.on_step(self.sequences)

    def __len__(self):
        return sum(not sequence.finished for sequence in self.sequences)


@pytest.fixture
def replier_of(tiny_chat, settings):
    """A replier (no retrieval, no sentence cap) whose batches give `script`'s tokens; the batches it opened."""
    settings.INFERENCE_ENGINE = "torch"

    def make(script, max_tokens=30, during_step=None):
        backend = backend_for(load_generator(str(tiny_chat)), max_new_tokens=max_tokens)
        batches = []

        def open_batch(on_step=None):
            batches.append(ScriptedBatch(backend.tokenizer, script, max_tokens, on_step, during_step))
            return batches[-1]

        backend.open_batch = open_batch
        return Replier(Profile("test", "", str(tiny_chat), ""), backend), batches

    return make


def run(replier, request):
    batch = replier.open_batch()
    batch.add(replier.prepare([request], candidates=1))
    while batch:
        batch.step()
    return request


def test_a_reply_cut_by_the_token_limit_ends_at_its_last_full_sentence(replier_of, tiny_chat):
    from transformers import AutoTokenizer

    script = "Hello. I was about to say something"
    max_tokens = len(AutoTokenizer.from_pretrained(str(tiny_chat))(script, add_special_tokens=False).input_ids) - 1
    replier, batches = replier_of(script, max_tokens=max_tokens)
    shown = []
    request = run(replier, RequestState([], "Hi.", on_piece=shown.append))
    assert request.new_tokens == max_tokens  # the limit ended it, mid-sentence
    assert request.reply.text == "Hello."
    assert "".join(shown).startswith("Hello. I was")  # shown as it came; the page takes the final text


def test_a_stop_during_a_step_shows_nothing_the_step_made(replier_of):
    stop = {"now": False}
    replier, batches = replier_of(
        "One two three four five six seven eight nine ten.", during_step=lambda step: stop.update(now=step == 4)
    )
    shown = []
    request = run(replier, RequestState([], "Count.", on_piece=shown.append, should_stop=lambda: stop["now"]))
    assert request.reply.stopped and request.reply.text == "".join(shown)
    assert request.new_tokens == 4 and batches[0].steps == 4  # the step's token was taken, not shown
    assert "".join(shown) == "One two"  # "three" waits for the space after it, which came in the stopped step


def test_a_failing_stop_callback_ends_its_request_at_once(replier_of):
    """The caller is gone (its socket closed, its task cancelled): its rows must not go on to the token limit."""

    def broken():
        raise ConnectionError("the socket is gone")

    replier, batches = replier_of("One two three four five six seven eight nine ten.")
    request = run(replier, RequestState([], "Count.", on_piece=lambda piece: None, should_stop=broken))
    assert isinstance(request.error, ConnectionError)
    assert request.new_tokens <= 1 and batches[0].steps <= 1
    assert batches[0].added and all(sequence.finish_reason is FinishReason.STOPPED for sequence in batches[0].added)
