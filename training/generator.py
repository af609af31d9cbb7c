"""Fine-tune a reply generator on the character's exchanges.

Two paths, picked by the model itself:

- causal chat models (the offline SmolLM2): a LoRA adapter (peft) trained on
  the chat format, with the loss on the character's reply tokens only;
- seq2seq models (the T5 family): full fine-tuning with `Seq2SeqTrainer`,
  ROUGE-L and embedding similarity computed at each evaluation.

    data = load_training_data("tbbt_transcripts.csv", "Sheldon")
    result = train_generator(model, tokenizer, data, "models/sheldon-v1", TrainingConfig())

Training is seeded and resumable: checkpoints are written under
`<output>/checkpoints/` and picked up again with `resume=True`, and they are
deleted once training completes. The output folder ends up holding the model
(or the adapter), `metrics.json`, `loss_curve.png` and a model card
(`README.md`). Plain Python with no Django, so the same code runs on a GPU box.
"""

import json
import logging
import platform
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import (
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from data.pipeline import (
    Sample,
    TranscriptError,
    augment,
    build_exchanges,
    episode_names,
    read_transcripts,
    split_episodes,
)
from training.arguments import option
from training.chat_format import chat_messages, seq2seq_input
from training.metrics import mean, rouge_l
from training.reporting import plot_loss_curve, write_model_card

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
# The reference's rate for full fine-tuning; LoRA trains few weights and needs a larger step.
SEQ2SEQ_LEARNING_RATE = 5e-5
LORA_LEARNING_RATE = 2e-4
IGNORED_LABEL = -100  # positions the loss skips


@dataclass
class TrainingData:
    """Training samples (augmented) and validation samples (one per exchange, full context)."""

    source: str
    character: str
    train_samples: list
    validation_samples: list
    train_episodes: int
    validation_episodes: int
    extra_samples: int = 0
    seed: int = 42
    own_lines: frozenset = frozenset()  # (episode, text) of the character's lines: assistant turns in context


def load_training_data(transcripts, character, seed=42, validation_fraction=0.1, extra_samples=(), max_samples=0):
    """Split by episode, augment the training exchanges, add extra samples, shuffle (seeded).

    `max_samples` > 0 keeps that many training samples, drawn at random.
    """
    lines = read_transcripts(transcripts)
    exchanges = build_exchanges(lines, character)
    if not exchanges:
        raise TranscriptError(f"No line of {character!r} answers anyone in {transcripts}: check the character's name.")
    train_episodes, validation_episodes = split_episodes(episode_names(lines), validation_fraction, seed)
    if not validation_episodes:
        raise TranscriptError(
            f"{transcripts} holds a single episode: at least two are needed to validate on held-out episodes."
        )
    extra_samples = list(extra_samples)
    train = list(augment(e for e in exchanges if e.episode in train_episodes)) + extra_samples
    validation = [
        Sample(e.context, e.question, e.answer, e.episode) for e in exchanges if e.episode in validation_episodes
    ]
    shuffler = random.Random(seed)
    shuffler.shuffle(train)
    shuffler.shuffle(validation)  # so the first N validation samples span many episodes
    if max_samples > 0:
        train = train[:max_samples]
    return TrainingData(
        source=str(transcripts),
        character=character,
        train_samples=train,
        validation_samples=validation,
        train_episodes=len(train_episodes),
        validation_episodes=len(validation_episodes),
        extra_samples=len(extra_samples),
        seed=seed,
        own_lines=frozenset((line.episode, line.text) for line in lines if line.speaker == character),
    )


@dataclass
class TrainingConfig:
    """Hyper-parameters of `train_generator`; each is also an option of `manage.py train_generator`."""

    epochs: float = option(5.0, "passes over the training samples")
    max_steps: int = option(0, "> 0 overrides --epochs")
    learning_rate: float = option(0.0, f"0: {SEQ2SEQ_LEARNING_RATE} for seq2seq, {LORA_LEARNING_RATE} for LoRA")
    batch_size: int = option(16, "samples per step")
    warmup_ratio: float = option(0.1, "share of the steps the learning rate warms up over")
    weight_decay: float = option(0.1, "AdamW weight decay")
    max_length: int = option(256, "tokens of prompt + reply; the oldest context lines go first")
    max_reply_tokens: int = option(64, "tokens of the reply kept")
    seed: int = option(42, "training's random state")
    lora_rank: int = option(8, "rank of the LoRA matrices (chat models)")
    lora_alpha: int = option(0, "LoRA scale; 0: twice the rank")
    lora_dropout: float = option(0.05, "dropout on the LoRA input")
    eval_samples: int = option(200, "validation samples for the evaluation loss")
    generation_samples: int = option(50, "validation exchanges answered for the final scores (ROUGE-L, similarity)")
    save_steps: int = option(200, "checkpoint and evaluation interval")
    logging_steps: int = option(10, "training-loss logging interval")
    time_limit_minutes: float = option(0.0, "> 0: stop (and save as usual) after this long")
    extra: dict = field(default_factory=dict)  # recorded in the card as is; not an option

    def for_model(self, seq2seq: bool) -> "TrainingConfig":
        """This config with the learning rate and LoRA scale that 0 leaves to the kind of model."""
        default_rate = SEQ2SEQ_LEARNING_RATE if seq2seq else LORA_LEARNING_RATE
        return replace(
            self, learning_rate=self.learning_rate or default_rate, lora_alpha=self.lora_alpha or 2 * self.lora_rank
        )


def is_seq2seq(model):
    return bool(getattr(model.config, "is_encoder_decoder", False))


# --- Features -----------------------------------------------------------------


def causal_features(sample, tokenizer, own_lines, config):
    """Chat-format token ids; labels mask everything but the reply (and its end-of-turn token)."""
    reply_ids = tokenizer(sample.answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    if len(reply_ids) > config.max_reply_tokens:  # keep the end-of-turn token
        reply_ids = reply_ids[: config.max_reply_tokens - 1] + reply_ids[-1:]
    while True:
        prompt = tokenizer.apply_chat_template(
            chat_messages(sample, own_lines), add_generation_prompt=True, tokenize=False
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if len(prompt_ids) + len(reply_ids) <= config.max_length or not sample.context:
            break
        sample = replace(sample, context=sample.context[1:])
    prompt_ids = prompt_ids[-(config.max_length - len(reply_ids)) :]
    return {
        "input_ids": prompt_ids + reply_ids,
        "labels": [IGNORED_LABEL] * len(prompt_ids) + reply_ids,
    }


def seq2seq_features(sample, tokenizer, own_lines, config):
    features = tokenizer(seq2seq_input(sample), truncation=True, max_length=config.max_length)
    labels = tokenizer(text_target=sample.answer, truncation=True, max_length=config.max_reply_tokens)
    features["labels"] = labels["input_ids"]
    return dict(features)


# --- Replies and their scores ------------------------------------------------


def generate_replies(
    model,
    tokenizer,
    samples,
    own_lines=frozenset(),
    max_new_tokens=40,
    batch_size=16,
    sampling=None,
    desc="Generating validation replies",
):
    """Replies to each sample, batched: greedy, or with `sampling` (`generate`'s arguments); shows progress."""

    seq2seq = is_seq2seq(model)
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "right" if seq2seq else "left"  # a causal prompt must end where the reply starts
    replies = []
    model.eval()
    try:
        for start in tqdm(range(0, len(samples), batch_size), desc=desc, unit="batch"):
            batch = samples[start : start + batch_size]
            if seq2seq:
                texts = [seq2seq_input(s) for s in batch]
            else:
                texts = [
                    tokenizer.apply_chat_template(
                        chat_messages(s, own_lines), add_generation_prompt=True, tokenize=False
                    )
                    for s in batch
                ]
            inputs = tokenizer(
                texts, return_tensors="pt", padding=True, truncation=True, max_length=512, add_special_tokens=seq2seq
            )
            inputs = inputs.to(model.device)
            with torch.no_grad():
                output = model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    **(sampling or {"do_sample": False}),
                )
            if not seq2seq:
                output = output[:, inputs["input_ids"].shape[1] :]
            replies += [text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = padding_side
    return replies


def reply_scores(replies, references, embedder=None):
    """Mean ROUGE-L against the true answers and, with an embedder, mean cosine similarity."""
    scores = {"rouge_l": mean(rouge_l(reply, reference) for reply, reference in zip(replies, references))}
    if embedder is not None:
        from sentence_transformers.util import cos_sim

        similarity = cos_sim(
            embedder.encode(replies, convert_to_tensor=True), embedder.encode(references, convert_to_tensor=True)
        )
        scores["embedding_similarity"] = float(similarity.diagonal().mean())
    return scores


# --- Training -----------------------------------------------------------------


@dataclass
class TrainingResult:
    output_dir: Path
    metrics: dict
    seconds: float


def train_generator(
    model, tokenizer, data, output_dir, config, base_model_name="", embedder=None, resume=False, callbacks=()
):
    """Fine-tune `model` on `data` and write the model, metrics, loss curve and card to `output_dir`.

    `callbacks` are extra `TrainerCallback`s (progress reporting, early stopping).
    """
    output_dir = Path(output_dir)
    checkpoints = output_dir / CHECKPOINTS
    if output_dir.exists() and any(output_dir.iterdir()) and not resume:
        raise FileExistsError(
            f"{output_dir} already holds files: pass resume to continue that run, or choose another folder."
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    seq2seq = is_seq2seq(model)
    config = config.for_model(seq2seq)
    if not seq2seq:
        model = add_lora(model, config)
    make_features = seq2seq_features if seq2seq else causal_features
    train_features = [
        make_features(s, tokenizer, data.own_lines, config)
        for s in tqdm(data.train_samples, desc="Tokenizing", unit="sample")
    ]
    eval_features = [
        make_features(s, tokenizer, data.own_lines, config) for s in data.validation_samples[: config.eval_samples]
    ]
    collator = DataCollatorForSeq2Seq(
        tokenizer, model=model if seq2seq else None, padding=True, label_pad_token_id=IGNORED_LABEL
    )
    trainer = _trainer(model, tokenizer, config, checkpoints, train_features, eval_features, collator, embedder)
    if config.time_limit_minutes > 0:
        trainer.add_callback(TimeLimit(config.time_limit_minutes * 60))
    for callback in callbacks:
        trainer.add_callback(callback)

    last_checkpoint = get_last_checkpoint(str(checkpoints)) if resume and checkpoints.is_dir() else None
    # The untrained model's validation loss (step 0 of the curve), kept with the checkpoints for a resumed run.
    eval_before_file = checkpoints / "eval_before.json"
    if last_checkpoint and eval_before_file.is_file():
        logger.info("Resuming from %s", last_checkpoint)
        eval_before = json.loads(eval_before_file.read_text())
    else:
        eval_before = trainer.evaluate()
        checkpoints.mkdir(exist_ok=True)
        eval_before_file.write_text(json.dumps(eval_before))
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=last_checkpoint)
    train_seconds = time.perf_counter() - started
    final_eval = trainer.evaluate()

    validation = data.validation_samples[: config.generation_samples]
    replies = generate_replies(model, tokenizer, validation, data.own_lines)
    # train() starts a fresh log, so the evaluation before it is put back as step 0.
    history = [{"step": 0, "eval_loss": eval_before["eval_loss"]}] + trainer.state.log_history
    train_losses = [entry["loss"] for entry in history if "loss" in entry]
    metrics = {
        "train_loss_first": train_losses[0] if train_losses else None,
        "train_loss_last": train_losses[-1] if train_losses else None,
        "eval_loss_before": eval_before["eval_loss"],
        "eval_loss": final_eval.get("eval_loss"),
        **{
            f"validation_{name}": value
            for name, value in reply_scores(replies, [s.answer for s in validation], embedder).items()
        },
        "generation_samples": len(validation),
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_samples": len(data.train_samples),
        "samples_seen": round(trainer.state.epoch * len(train_features)),
        "train_seconds": round(train_seconds, 1),
        "hardware": hardware(),
    }
    save_model(model, tokenizer, output_dir, seq2seq, base_model_name)
    examples = [
        {"context": list(s.context), "question": s.question, "answer": s.answer, "reply": reply}
        for s, reply in zip(validation[:10], replies)
    ]
    (output_dir / "metrics.json").write_text(
        json.dumps(
            {"metrics": metrics, "config": asdict(config), "examples": examples, "log_history": history}, indent=2
        )
    )
    plot_loss_curve(
        history,
        output_dir / "loss_curve.png",
        title=f"{'Seq2seq' if seq2seq else 'LoRA'} fine-tuning of {base_model_name or 'the generator'}",
    )
    write_model_card(
        output_dir, data, config, metrics, base_model_name, "seq2seq" if seq2seq else "causal LoRA", examples
    )
    shutil.rmtree(checkpoints, ignore_errors=True)  # only needed to resume an unfinished run
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return TrainingResult(output_dir, metrics, train_seconds)


class TimeLimit(TrainerCallback):
    """Ends training once `seconds` have passed since it began; the model is then saved as usual."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.deadline = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.deadline = time.monotonic() + self.seconds

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() > self.deadline:
            logger.warning("Time limit reached after %d steps: stopping and saving", state.global_step)
            control.should_training_stop = True


def add_lora(model, config):
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
    )
    return get_peft_model(model, lora)


def _trainer(model, tokenizer, config, checkpoints, train_features, eval_features, collator, embedder):
    seq2seq = is_seq2seq(model)
    on_gpu = torch.cuda.is_available()
    arguments = dict(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of all steps
        weight_decay=config.weight_decay,
        eval_strategy="steps",
        eval_steps=config.save_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=1,
        logging_steps=config.logging_steps,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    if not seq2seq:
        return Trainer(
            model=model,
            args=TrainingArguments(**arguments),
            train_dataset=train_features,
            eval_dataset=eval_features,
            data_collator=collator,
            processing_class=tokenizer,
        )

    def compute_metrics(prediction):
        predicted, labels = prediction.predictions, prediction.label_ids
        predicted = [[t for t in row if t >= 0] for row in predicted]
        labels = [[t for t in row if t >= 0] for row in labels]
        return reply_scores(
            tokenizer.batch_decode(predicted, skip_special_tokens=True),
            tokenizer.batch_decode(labels, skip_special_tokens=True),
            embedder,
        )

    return Seq2SeqTrainer(
        model=model,
        args=Seq2SeqTrainingArguments(
            **arguments, predict_with_generate=True, generation_max_length=config.max_reply_tokens
        ),
        train_dataset=train_features,
        eval_dataset=eval_features,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )


def save_model(model, tokenizer, output_dir, seq2seq, base_model_name):
    if seq2seq:
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        return
    # Half precision halves the adapter on disk; loading casts it back to the base model's dtype. The
    # weights in memory are put back as they were, so training may go on after a save.
    trained = {parameter: parameter.data for parameter in model.parameters() if parameter.requires_grad}
    for parameter, weights in trained.items():
        parameter.data = weights.to(torch.float16)
    if base_model_name:
        model.peft_config["default"].base_model_name_or_path = base_model_name
    try:
        model.save_pretrained(output_dir)
    finally:
        for parameter, weights in trained.items():
            parameter.data = weights


def hardware():
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return f"CPU {platform.machine()} ({torch.get_num_threads()} torch threads)"
