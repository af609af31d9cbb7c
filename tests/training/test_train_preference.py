"""train_preference (DPO) on tiny models: the pairs, the log-probabilities, the loss, and what is saved."""

import json
import math
from dataclasses import replace
from io import StringIO

import pytest
import torch
from django.core.management import CommandError, call_command
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq

from inference.backends import CHAT_SAMPLING
from inference.loading import load_generator
from training.feedback import PreferencePair
from training.generator import causal_features, load_training_data
from training.preference import (
    PreferenceConfig,
    chosen_nll,
    dpo_loss,
    pair_features,
    reply_logps,
    scripted_pairs,
    served_text,
    train_preference,
    trainable_policy,
)

from ..test_hygiene import model_card_metadata
from .test_train_generator import assert_adapter_serves

# A random tiny model learns to order a handful of pairs in a few steps at this rate.
FAST = dict(batch_size=4, learning_rate=1e-2, warmup_ratio=0.0, beta=0.5, max_length=96, max_reply_tokens=16)


def test_a_sampled_reply_is_cut_as_the_replier_serves_it():
    raw = "Sheldon: Bazinga! That was a joke. And another sentence"
    assert served_text(raw, "Hello.", "Sheldon", max_sentences=1) == "Bazinga!"
    assert served_text(raw, "Hello.", "Sheldon", max_sentences=2) == "Bazinga! That was a joke."
    assert served_text(raw, "Hello.", "Sheldon", max_sentences=0) == "Bazinga! That was a joke."
    assert served_text("Hello. It is you.", "Hello.", "Sheldon", max_sentences=1) == "It is you.", "no echo"
    assert served_text("an unfinished", "Hello.", "Sheldon", max_sentences=1) == "an unfinished"


def test_the_dpo_loss_is_log_2_at_the_start_and_falls_as_the_chosen_reply_gains():
    reference = torch.tensor([-10.0, -12.0, -11.0, -9.0])  # chosen, chosen, rejected, rejected
    loss, chosen, rejected = dpo_loss(reference.clone(), reference, beta=0.1)
    assert torch.allclose(loss, torch.full((2,), math.log(2))) and torch.equal(chosen - rejected, torch.zeros(2))
    better = reference + torch.tensor([2.0, 2.0, -1.0, -1.0])
    loss, chosen, rejected = dpo_loss(better, reference, beta=0.1)
    assert torch.allclose(chosen - rejected, torch.full((2,), 0.3)) and (loss < math.log(2)).all()
    assert torch.allclose(chosen, torch.full((2,), 0.2)) and torch.allclose(rejected, torch.full((2,), -0.1))


@pytest.mark.parametrize("kind", ["chat", "t5"])
def test_reply_log_probabilities_cover_only_the_reply(kind, tiny_chat, tiny_t5):
    folder = tiny_chat if kind == "chat" else tiny_t5
    model_class = AutoModelForCausalLM if kind == "chat" else AutoModelForSeq2SeqLM
    model, tokenizer = model_class.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    pair = PreferencePair(("Hello.",), "Why are you here?", "Because it is Thursday.", "No.", "test")
    ((chosen, rejected),) = pair_features([pair], tokenizer, frozenset(), PreferenceConfig(), kind == "t5")
    with torch.no_grad():
        for features in (chosen, rejected):
            batch = {name: torch.tensor([values]) for name, values in features.items()}
            replied = sum(label != -100 for label in features["labels"])
            # The model's own loss is the mean negative log-likelihood of the labelled tokens.
            logps = reply_logps(model, batch, kind == "t5")
            assert torch.allclose(logps, -model(**batch).loss * replied, atol=1e-4)
        # RPO's term, per pair: the chosen reply's mean token NLL (the model's own loss on it), from a padded batch.
        collator = DataCollatorForSeq2Seq(tokenizer, model=model if kind == "t5" else None, label_pad_token_id=-100)
        pair_batch = collator([chosen, rejected])
        losses = [
            model(**{name: torch.tensor([values]) for name, values in f.items()}).loss for f in (chosen, rejected)
        ]
        nll = chosen_nll(reply_logps(model, pair_batch, kind == "t5"), pair_batch["labels"])
        assert torch.allclose(nll, losses[0], atol=1e-5) and not torch.allclose(nll, losses[1], atol=1e-2)


def test_scripted_pairs_prefer_his_line_over_the_models_own_sample(tiny_chat, demo_transcripts):
    data = load_training_data(demo_transcripts, "Sheldon", seed=42)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_chat), AutoTokenizer.from_pretrained(tiny_chat)
    samples = data.train_samples[:6]
    config = PreferenceConfig(max_reply_tokens=12, sample_sentences=0)
    pairs = scripted_pairs(model, tokenizer, samples, data.own_lines, config, CHAT_SAMPLING)
    assert pairs and len(pairs) <= len(samples)
    by_turn = {(tuple(sample.context), sample.question): sample for sample in samples}
    for pair in pairs:
        sample = by_turn[pair.context, pair.question]
        assert (pair.chosen, pair.episode) == (sample.answer, sample.episode)
        assert pair.rejected and pair.rejected != pair.chosen
        # Scored on the very prompt the generator was fine-tuned on: his own earlier lines are his turns.
        chosen, _ = pair_features([pair], tokenizer, data.own_lines, PreferenceConfig(), seq2seq=False)[0]
        assert (
            chosen["input_ids"] == causal_features(sample, tokenizer, data.own_lines, PreferenceConfig())["input_ids"]
        )
    again = scripted_pairs(model, tokenizer, samples, data.own_lines, config, CHAT_SAMPLING)
    assert again == pairs, "seeded: the same samples again"
    one_sentence = scripted_pairs(
        model, tokenizer, samples, data.own_lines, replace(config, sample_sentences=1), CHAT_SAMPLING
    )
    assert all(served_text(p.chosen, p.question, "Sheldon", 1) == p.chosen for p in one_sentence), (
        "his line is cut like the sample, so a pair differs in what is said, not in length"
    )


def test_dpo_on_a_t5_model_orders_the_pairs_and_saves_a_loadable_model(tiny_t5, demo_transcripts, tmp_path):
    data = load_training_data(demo_transcripts, "Sheldon", seed=42)
    sources = ["scripted/episode", "conversation-1/message-2"]  # the two kinds the card counts
    pairs = [
        PreferencePair(tuple(s.context), s.question, s.answer, "I am a rejected reply.", sources[i % 2])
        for i, s in enumerate(data.train_samples[:8])
    ]
    held_out = [
        PreferencePair(tuple(s.context), s.question, s.answer, "I am a rejected reply.", "test")
        for s in data.validation_samples[:4]
    ]
    policy = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5)
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5)
    config = PreferenceConfig(epochs=3, eval_steps=3, logging_steps=1, **FAST)
    output = tmp_path / "t5-dpo"
    result = train_preference(
        trainable_policy(policy, "", config),
        tokenizer,
        data,
        pairs,
        held_out,
        output,
        config,
        base_model_name=str(tiny_t5),
    )
    metrics = result.metrics
    assert metrics["steps"] == 6 and metrics["pairs"] == 8 and metrics["epochs"] == 3
    # The reference is the model before training: every margin starts at exactly 0.
    assert metrics["eval_loss_before"] == pytest.approx(math.log(2)) and metrics["eval_accuracy_before"] == 0.5
    assert metrics["eval_loss"] < metrics["eval_loss_before"] and metrics["eval_accuracy"] == 1.0
    assert metrics["eval_chosen_reward"] - metrics["eval_rejected_reward"] == pytest.approx(metrics["eval_margin"])
    assert metrics["eval_chosen_reward_before"] == metrics["eval_rejected_reward_before"] == 0.0
    assert load_generator(str(output)).is_seq2seq
    with pytest.raises(FileExistsError):
        train_preference(policy, tokenizer, data, pairs, held_out, output, config)

    card = (output / "README.md").read_text()
    assert "8 training pairs: 4 of his scripted line" in card and "4 from a chat export's ratings\n" in card
    assert "4 held-out pairs" in card

    # With RPO's term his held-out lines gain more probability than with plain DPO (the same run otherwise).
    weighted = replace(config, sft_weight=1.0)
    fresh = trainable_policy(AutoModelForSeq2SeqLM.from_pretrained(tiny_t5), "", weighted)
    rpo = train_preference(fresh, tokenizer, data, pairs, held_out, tmp_path / "rpo", weighted).metrics
    assert rpo["eval_chosen_reward"] > metrics["eval_chosen_reward"] + 0.1, (rpo, metrics)


def test_train_preference_command_trains_a_lora_adapter_that_serves(tiny_chat, demo_transcripts, tmp_path):
    output = tmp_path / "dpo"
    stdout = StringIO()
    call_command(
        "train_preference",
        model=str(tiny_chat),
        transcripts=str(demo_transcripts),
        output=str(output),
        pairs=8,
        validation_pairs=4,
        epochs=4,
        save_steps=2,
        eval_steps=4,
        logging_steps=1,
        lora_rank=4,
        sample_sentences=0,
        threads=1,
        stdout=stdout,
        **{name: value for name, value in FAST.items()},
    )
    assert f"GENERATOR_ADAPTER={output}" in stdout.getvalue()
    for name in ("README.md", "metrics.json", "loss_curve.png", "adapter_config.json", "adapter_model.safetensors"):
        assert (output / name).is_file(), name
    assert (output / "step-2" / "adapter_model.safetensors").is_file(), "the checkpoint saved on the way"
    run = json.loads((output / "metrics.json").read_text())
    metrics = run["metrics"]
    assert metrics["eval_loss"] < metrics["eval_loss_before"], "held-out pairs are ordered better after training"
    losses = [entry["loss"] for entry in run["log_history"] if "loss" in entry]
    assert losses[-1] < losses[0]
    card = (output / "README.md").read_text()
    assert "train_preference" in card and model_card_metadata(card)["base_model"] == str(tiny_chat)
    assert f"{metrics['pairs']} training pairs: {metrics['pairs']} of his scripted line" in card, "the card's data"
    assert f"{metrics['validation_pairs']} held-out pairs" in card and "training samples" not in card

    assert_adapter_serves(tiny_chat, output)

    # An adapter trained further (the offline profile's default: its shipped adapter), from where it stands.
    further = tmp_path / "further"
    call_command(
        "train_preference",
        model=str(tiny_chat),
        adapter=str(output),
        transcripts=str(demo_transcripts),
        output=str(further),
        pairs=8,
        validation_pairs=4,
        epochs=1,
        threads=1,
        stdout=StringIO(),
        **{**FAST, "learning_rate": 1e-3},
    )
    metrics = json.loads((further / "metrics.json").read_text())["metrics"]
    assert metrics["eval_loss_before"] == pytest.approx(math.log(2)), "the reference is the adapter it starts from"
    assert json.loads((further / "adapter_config.json").read_text())["r"] == 4, "the same adapter, trained on"


def test_bad_input_is_a_clear_command_error(tiny_chat, tiny_t5, demo_transcripts, tmp_path):
    common = dict(transcripts=str(demo_transcripts), output=str(tmp_path / "x"), threads=1)
    with pytest.raises(CommandError, match="No preference pairs"):
        call_command("train_preference", model=str(tiny_chat), pairs=0, validation_pairs=0, **common)
    with pytest.raises(CommandError, match="trains whole"):
        call_command("train_preference", model=str(tiny_t5), adapter=str(tmp_path), pairs=1, **common)
    with pytest.raises(CommandError, match="Export file not found"):
        call_command("train_preference", model=str(tiny_chat), extra_export=str(tmp_path / "none.jsonl"), **common)
    with pytest.raises(CommandError, match="not found"):
        call_command(
            "train_preference", model=str(tiny_chat), transcripts=str(tmp_path / "missing.csv"), output="", threads=1
        )
