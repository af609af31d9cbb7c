"""INFERENCE_QUANTIZE=int8 makes the generator's linear layers dynamically quantised, and it still replies."""
import pytest
import torch

from inference.backends import backend_for
from inference.cleanup import streamed_as
from inference.loading import load_generator
from inference.profiles import Profile
from inference.replier import Replier


def test_int8_generator_replies(tiny_chat, settings):
    settings.INFERENCE_QUANTIZE = "int8"
    folder = str(tiny_chat)
    generator = load_generator(folder, "")
    quantized = [m for m in generator.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert quantized, "no linear layer was quantised"
    # A scale per output channel: one per weight matrix cost a quarter of the relevance (docs/evaluation.md).
    assert all(layer.weight().qscheme() == torch.per_channel_affine for layer in quantized)
    replier = Replier(Profile("test", "", folder, ""), backend_for(generator, max_new_tokens=12))
    pieces = []
    reply = replier.reply([], "Hello there.", on_piece=pieces.append)
    assert reply.text and streamed_as("".join(pieces), reply.text)


def test_unknown_quantization_is_refused(tiny_chat, settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.INFERENCE_QUANTIZE = "int3"
    with pytest.raises(ImproperlyConfigured, match="int8 or none"):
        load_generator(str(tiny_chat), "")
