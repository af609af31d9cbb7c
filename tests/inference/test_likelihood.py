"""The generator's likelihood of a reply, and the pmi of reply and dialogue that the ranking can weigh."""
import pytest
import torch

from inference.backends import backend_for
from inference.likelihood import dialogue_pmi, log_likelihoods, persona_prompt, scoring_model
from inference.loading import load_generator
from inference.replier import Turn
from tests.tiny_models import smollm2_gguf


def one_by_one(generator, prompt, reply):
    """The reference: prompt and reply in one plain forward pass, no cache, no batch."""
    tokenizer, model = generator.tokenizer, scoring_model(generator)
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    reply_ids = tokenizer(reply, add_special_tokens=False).input_ids
    with torch.inference_mode():
        logits = model(torch.tensor([prompt_ids + reply_ids])).logits[0].float().log_softmax(-1)
    return sum(logits[len(prompt_ids) - 1 + j, token].item() for j, token in enumerate(reply_ids)) / len(reply_ids)


def test_batched_scores_equal_each_reply_scored_alone(tiny_chat_settings, tiny_chat):
    """Replies of different lengths after two prompts, one forward pass per prompt: as if each were alone.

    Scored by a float32 torch model whatever serves the generator (on CPU OpenVINO, which cannot score)."""
    generator = load_generator(str(tiny_chat))
    model = scoring_model(generator)
    assert isinstance(model, torch.nn.Module) and all(p.dtype == torch.float32 for p in model.parameters())
    first, second = persona_prompt(generator.tokenizer), "Penny: Knock knock.\nSheldon:"
    prompts = [first, second, first, second, first]
    replies = ["Bazinga!", "Penny, knock knock, knock knock Penny.", "Hi.", "", "I am not crazy; my mother had me tested."]
    scores = log_likelihoods(generator, prompts, replies)
    assert scores[3] == 0.0  # an empty reply has no tokens to score
    for prompt, reply, score in zip(prompts, replies, scores, strict=True):
        if reply:
            assert score == pytest.approx(one_by_one(generator, prompt, reply), abs=1e-4)
            assert score < 0
    with pytest.raises(ValueError, match="pair up"):
        log_likelihoods(generator, [first], [])


@pytest.mark.slow
def test_an_answer_is_worth_more_after_the_question_it_answers(settings):
    """The real generator: the same reply gets a higher pmi after the dialogue it answers than after
    another one, and an answer beats a line that would fit anywhere."""
    # Scored by the float32 torch model on any engine; on torch nothing is exported to OpenVINO first (40 s here).
    settings.INFERENCE_ENGINE = "torch"
    backend = backend_for(load_generator(str(smollm2_gguf())), 60)
    keys = "Your keys are in the bowl by the front door, where keys belong."
    generic = "I'm not crazy. My mother had me tested."
    asked = dialogue_pmi(backend, [Turn("user", "Sheldon, I can't find my keys.")], "Where did you put my keys?", [keys, generic])
    other = dialogue_pmi(backend, [Turn("user", "We are going to the cinema.")], "Do you want to come with us?", [keys])
    assert asked[0] > other[0] + 0.5  # about 1.1 in float32; torch's dynamic int8 blurred it to 0.5
    assert asked[0] > asked[1]
