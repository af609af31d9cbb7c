"""The persona adapter that ships in models/ loads in the offline profile and replies."""

import json

import pytest
import torch
from django.test import override_settings

from inference.loading import load_generator
from inference.profiles import SHIPPED_ADAPTER, active_profile
from inference.prompts import PERSONA


def test_shipped_adapter_is_small_and_documented():
    assert (SHIPPED_ADAPTER / "adapter_config.json").is_file()
    weights = SHIPPED_ADAPTER / "adapter_model.safetensors"
    assert weights.stat().st_size < 10 * 1024 * 1024, "the adapter is committed to git: keep it a few MB"
    metrics = json.loads((SHIPPED_ADAPTER / "metrics.json").read_text())["metrics"]
    assert metrics["eval_loss"] < metrics["eval_loss_before"], (
        "the adapter should fit Sheldon's lines better than the base model"
    )
    how_made = (SHIPPED_ADAPTER.parent / "README.md").read_text()
    assert "sheldon-smollm2-lora" in how_made and f"{metrics['train_samples']:,}" in how_made


@pytest.mark.slow
# The torch engine: the test compares the adapted model's logits with the base model's.
@override_settings(SHELDON_PROFILE="offline", GENERATOR_MODEL="", GENERATOR_ADAPTER="", INFERENCE_ENGINE="torch")
def test_offline_profile_loads_the_shipped_adapter_and_replies():
    profile = active_profile()
    assert profile.generator_adapter == str(SHIPPED_ADAPTER)
    generator = load_generator(profile.generator_model, profile.generator_adapter)
    messages = [{"role": "system", "content": PERSONA}, {"role": "user", "content": "Can I sit in your spot?"}]
    prompt = generator.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = generator.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    output = generator.model.generate(**inputs, max_new_tokens=20, do_sample=False)
    reply = generator.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert reply.strip(), "the adapted model gives a non-empty reply"

    base = load_generator(profile.generator_model)
    with torch.no_grad():
        adapted_logits = generator.model(**inputs).logits[0, -1]
        base_logits = base.model(**inputs).logits[0, -1]
    assert not torch.allclose(adapted_logits, base_logits, atol=1e-3), "the adapter changes the model"
