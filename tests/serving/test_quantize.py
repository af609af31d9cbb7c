"""INFERENCE_QUANTIZE=int8 makes the generator's linear layers dynamically quantised, and it still replies."""
import pytest
import torch

from inference.backends import backend_for
from inference.loading import load_generator
from inference.profiles import Profile
from inference.replier import Replier
from tests.tiny_models import build_tiny_chat_model


def test_int8_generator_replies(tmp_path, settings):
    settings.INFERENCE_QUANTIZE = "int8"
    folder = str(build_tiny_chat_model(tmp_path / "chat", seed=3))
    generator = load_generator(folder, "")
    quantized = [m for m in generator.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert quantized, "no linear layer was quantised"
    replier = Replier(Profile("test", "", folder, ""), backend_for(generator, max_new_tokens=12))
    pieces = []
    reply = replier.reply([], "Hello there.", on_piece=pieces.append)
    assert reply.text and "".join(pieces) == reply.text


def test_unknown_quantization_is_refused(tmp_path, settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.INFERENCE_QUANTIZE = "int3"
    with pytest.raises(ImproperlyConfigured, match="int8 or none"):
        load_generator(str(build_tiny_chat_model(tmp_path / "chat2", seed=4)), "")
