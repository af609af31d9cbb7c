"""Preference optimisation of the generator (DPO): his scripted line preferred over the model's own sample.

The fine-tuned generator writes fluent lines that often mean little. Direct
Preference Optimisation (Rafailov et al., 2023) trains it on pairs of replies
to the same turn, one preferred, with the loss

    -log sigmoid(beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))))

where pi is the model in training and ref the same model frozen before it.
Plain DPO can order a pair by pushing both replies down (it did here: docs/evaluation.md, round 11);
`sft_weight` adds the chosen reply's mean token negative log-likelihood to the loss (RPO, Pang et al., 2024),
which holds his lines' probability up.
Two sources of pairs, both `training.feedback.PreferencePair`:

- `scripted_pairs`: for a training exchange, the character's scripted line
  (chosen) against a reply the model itself samples as it would serve it
  (rejected): same temperature, cut after the same number of sentences;
- `training.feedback.preference_pairs`: two replies to one turn in the app,
  the better rated one chosen (staff labels first).

    pairs = scripted_pairs(model, tokenizer, data.train_samples[:800], data.own_lines, config)
    policy = trainable_policy(model, adapter, config)
    result = train_preference(policy, tokenizer, data, pairs, validation_pairs, "models/x", config)

A chat model trains its LoRA adapter further (the shipped one, or a new one),
so the result loads like any adapter; a T5 model trains whole. The reference
is the policy itself before its first update: its log-probabilities are
computed once then, so no second model is held during training. Plain Python
and torch, no Django: the same code runs on a GPU (the model's device).
"""

import json
import logging
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm
from transformers import DataCollatorForSeq2Seq, get_linear_schedule_with_warmup, set_seed

from data.pipeline import Sample
from inference.cleanup import ReplyCleaner
from training.arguments import option
from training.feedback import EXPORT_SOURCE, SCRIPTED_SOURCE, PreferencePair
from training.generator import (
    IGNORED_LABEL,
    TrainingData,
    TrainingResult,
    add_lora,
    causal_features,
    generate_replies,
    hardware,
    is_seq2seq,
    save_model,
    seq2seq_features,
)
from training.reporting import plot_loss_curve, write_model_card

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

_WORD_PIECES = re.compile(r"\S+\s*")
# DPO moves a model by less than fine-tuning does: a tenth of train_generator's rates.
LORA_RATE = 1e-4
WHOLE_MODEL_RATE = 5e-6


@dataclass
class PreferenceConfig:
    """Hyper-parameters of `train_preference`; each is also an option of `manage.py train_preference`."""

    pairs: int = option(800, "training exchanges to sample a rejected reply for (0: none, only --extra-export)")
    validation_pairs: int = option(64, "validation exchanges paired the same way, for the held-out loss")
    sample_temperature: float = option(0.0, "temperature of the sampled (rejected) replies (0: the served one)")
    sample_sentences: int = option(
        1, "both replies of a scripted pair end after this many sentences, as served replies do (0: no cut)"
    )
    beta: float = option(0.1, "DPO's beta: how far the policy may move from the reference")
    sft_weight: float = option(
        0.0, "weight of the chosen replies' mean token NLL added to the loss (RPO, Pang et al. 2024; 0: plain DPO)"
    )
    epochs: float = option(1.0, "passes over the pairs")
    learning_rate: float = option(
        0.0, f"AdamW learning rate (0: {LORA_RATE} for LoRA, {WHOLE_MODEL_RATE} for a whole T5)"
    )
    batch_size: int = option(8, "pairs per step")
    warmup_ratio: float = option(0.1, "share of the steps the learning rate warms up over")
    max_length: int = option(192, "tokens of prompt + reply; the oldest context lines go first")
    max_reply_tokens: int = option(48, "tokens of a reply kept")
    lora_rank: int = option(8, "rank of a new LoRA adapter (a chat model without one)")
    lora_alpha: int = option(16, "scale of a new LoRA adapter")
    lora_dropout: float = option(0.0, "dropout on the LoRA input")
    logging_steps: int = option(5, "training-loss logging interval")
    eval_steps: int = option(25, "held-out evaluation interval")
    save_steps: int = option(0, "> 0: also save the model every this many steps, to <output>/step-N")
    time_limit_minutes: float = option(0.0, "> 0: stop (and save as usual) after this long")
    seed: int = option(42, "sampling's and training's random state")
    extra: dict = field(default_factory=dict)  # recorded in the card as is; not an option


# --- Pairs ---------------------------------------------------------------------


def served_text(raw: str, question: str, character: str, max_sentences: int) -> str:
    """`raw` generated text as the replier would serve it: cleaned, cut after `max_sentences` sentences."""
    cleaner = ReplyCleaner(question, character)
    for piece in _WORD_PIECES.findall(raw):
        cleaner.feed(piece)
        if max_sentences and cleaner.sentences() >= max_sentences:
            break
    return cleaner.finish(cut_fragment=True)


def scripted_pairs(
    model: "PreTrainedModel",
    tokenizer: "PreTrainedTokenizerBase",
    samples: list[Sample],
    own_lines: frozenset,
    config: PreferenceConfig,
    sampling: dict,
    character: str = "Sheldon",
    desc: str = "Sampling replies",
) -> list[PreferencePair]:
    """One pair per sample: its scripted answer (chosen) against the model's own served reply (rejected).

    `sampling`: `generate`'s sampling arguments as served. Both replies are cut after the same number of
    sentences, so that a pair differs in what is said, not in its length. A sample whose replies come out
    empty or the same gives no pair.
    """
    set_seed(config.seed)
    if config.sample_temperature > 0:
        sampling = {**sampling, "temperature": config.sample_temperature}
    raw_replies = generate_replies(
        model, tokenizer, samples, own_lines, max_new_tokens=config.max_reply_tokens, sampling=sampling, desc=desc
    )
    pairs = []
    for sample, raw in zip(samples, raw_replies):
        chosen = served_text(sample.answer, sample.question, character, config.sample_sentences)
        rejected = served_text(raw, sample.question, character, config.sample_sentences)
        if chosen and rejected and rejected.lower() != chosen.lower():
            pairs.append(
                PreferencePair(
                    context=tuple(sample.context),
                    question=sample.question,
                    chosen=chosen,
                    rejected=rejected,
                    source=f"{SCRIPTED_SOURCE}{sample.episode}",
                    episode=sample.episode,
                )
            )
    return pairs


# --- Log-probabilities -------------------------------------------------------


def _reply_features(pair, reply, tokenizer, own_lines, config, seq2seq):
    sample = Sample(pair.context, pair.question, reply, pair.episode)
    features = (seq2seq_features if seq2seq else causal_features)(sample, tokenizer, own_lines, config)
    features["attention_mask"] = [1] * len(features["input_ids"])
    return features


def pair_features(
    pairs: list[PreferencePair],
    tokenizer: "PreTrainedTokenizerBase",
    own_lines: frozenset,
    config: PreferenceConfig,
    seq2seq: bool,
) -> list[tuple[dict, dict]]:
    """Per pair, the token ids and reply labels of its chosen and of its rejected reply."""
    return [
        (
            _reply_features(pair, pair.chosen, tokenizer, own_lines, config, seq2seq),
            _reply_features(pair, pair.rejected, tokenizer, own_lines, config, seq2seq),
        )
        for pair in pairs
    ]


def reply_logps(model: "PreTrainedModel", batch: dict, seq2seq: bool) -> torch.Tensor:
    """Sum of the log-probabilities of each row's reply tokens (the labelled ones)."""
    labels = batch["labels"]
    if seq2seq:
        inputs = {"decoder_input_ids": model.prepare_decoder_input_ids_from_labels(labels=labels)}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **inputs).logits
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = labels[:, 1:]
    mask = labels != IGNORED_LABEL
    logits = logits.float()
    # log softmax at the labels only: no second vocabulary-wide tensor
    token_logps = logits.gather(2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return (token_logps * mask).sum(-1)


def _collate(collator, features, device):
    """Chosen replies first, then the rejected ones, in one padded batch."""
    rows = [chosen for chosen, _ in features] + [rejected for _, rejected in features]
    return {name: tensor.to(device) for name, tensor in collator(rows).items()}


def dpo_loss(
    policy_logps: torch.Tensor, reference_logps: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per pair: the DPO loss, and the implicit rewards (beta times the log-ratio to the reference) of its
    chosen and of its rejected reply; their difference is the margin. Rows: the chosen replies, then the rejected."""
    rewards = beta * (policy_logps - reference_logps)
    half = len(rewards) // 2
    chosen, rejected = rewards[:half], rewards[half:]
    return -torch.nn.functional.logsigmoid(chosen - rejected), chosen, rejected


def chosen_nll(policy_logps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per pair: the chosen reply's mean token negative log-likelihood, the term RPO (Pang et al., 2024) adds to
    DPO's loss so that his lines keep their probability while the model learns to order the pairs.
    Rows as in `dpo_loss`; `labels` the batch's. `reply_logps` sums a causal row's labels after its first
    position; counting them all is the same, because a row starts with its prompt, never labelled."""
    half = len(policy_logps) // 2
    tokens = (labels[:half] != IGNORED_LABEL).sum(-1).clamp(min=1)
    return -policy_logps[:half] / tokens


@torch.no_grad()
def _logps(model, features, collator, batch_size, seq2seq, desc):
    """Log-probabilities of every pair's two replies, chosen then rejected per batch, in batch order."""
    out = []
    for start in tqdm(range(0, len(features), batch_size), desc=desc, unit="batch"):
        batch = _collate(collator, features[start : start + batch_size], model.device)
        out.append(reply_logps(model, batch, seq2seq).cpu())
    return out


def _ordered(margins: torch.Tensor) -> torch.Tensor:
    """1 per pair the model orders right, 0 wrong, 1/2 a tie (an untrained model's margin is exactly 0)."""
    return (margins > 0).float() + 0.5 * (margins == 0).float()


@torch.no_grad()
def _evaluate(model, features, reference_logps, collator, config, seq2seq):
    """The held-out DPO loss, the share of pairs ordered right, and where the margin comes from.

    The rewards (beta times the log-ratio to the reference, per reply) tell a model that learned to prefer his
    lines (the chosen reward rises) from one that only pushes its own samples down (both fall: the probability
    goes to replies neither side wrote).
    """
    losses, margins, chosen_rewards, rejected_rewards = [], [], [], []
    policy = _logps(model, features, collator, config.batch_size, seq2seq, "Held-out pairs")
    for policy_batch, reference_batch in zip(policy, reference_logps):
        loss, chosen, rejected = dpo_loss(policy_batch, reference_batch, config.beta)
        losses += loss.tolist()
        margins += (chosen - rejected).tolist()
        chosen_rewards += chosen.tolist()
        rejected_rewards += rejected.tolist()
    return {
        "eval_loss": sum(losses) / len(losses),
        "eval_accuracy": _ordered(torch.tensor(margins)).mean().item(),
        "eval_margin": sum(margins) / len(margins),
        "eval_chosen_reward": sum(chosen_rewards) / len(chosen_rewards),
        "eval_rejected_reward": sum(rejected_rewards) / len(rejected_rewards),
    }


# --- Training ------------------------------------------------------------------


def _pairs_summary(pairs: list[PreferencePair], validation_pairs: list[PreferencePair]) -> str:
    """The model card's lines on the pairs a run trained on, by source (`scripted_pairs`, an export's ratings)."""
    scripted = sum(pair.source.startswith(SCRIPTED_SOURCE) for pair in pairs)
    exported = sum(pair.source.startswith(EXPORT_SOURCE) for pair in pairs)
    other = len(pairs) - scripted - exported
    return (
        f"- {len(pairs)} training pairs: {scripted} of his scripted line (chosen) against the model's own sample,\n"
        f"  {exported} from a chat export's ratings" + (f", {other} given by the caller" if other else "") + "\n"
        f"- {len(validation_pairs)} held-out pairs of the validation episodes"
    )


def train_preference(
    policy: "PreTrainedModel",
    tokenizer: "PreTrainedTokenizerBase",
    data: TrainingData,
    pairs: list[PreferencePair],
    validation_pairs: list[PreferencePair],
    output_dir: "str | Path",
    config: PreferenceConfig,
    base_model_name: str = "",
    adapter_name: str = "",
) -> TrainingResult:
    """Train `policy` by DPO on `pairs` against itself before training; save it with metrics, curve and card.

    `policy` is a chat model with a trainable LoRA adapter (`trainable_policy`), or a T5 model.
    `validation_pairs` give the held-out loss and the share of pairs the policy orders right.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"{output_dir} already holds files: choose another folder.")
    if not pairs:
        raise ValueError("No preference pairs to train on.")
    output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    seq2seq = is_seq2seq(policy)
    learning_rate = config.learning_rate or (WHOLE_MODEL_RATE if seq2seq else LORA_RATE)
    collator = DataCollatorForSeq2Seq(
        tokenizer, model=policy if seq2seq else None, padding=True, label_pad_token_id=IGNORED_LABEL
    )
    pairs = list(pairs)
    random.Random(config.seed).shuffle(pairs)
    train_features = pair_features(pairs, tokenizer, data.own_lines, config, seq2seq)
    eval_features = pair_features(validation_pairs, tokenizer, data.own_lines, config, seq2seq)

    # Dropout stays off (as in TRL's DPOTrainer), so the policy's log-probabilities compare with the reference's:
    # its own, before the first update.
    policy.eval()
    reference_train = _logps(policy, train_features, collator, config.batch_size, seq2seq, "Reference, training")
    reference_eval = _logps(policy, eval_features, collator, config.batch_size, seq2seq, "Reference, held out")

    batches = math.ceil(len(train_features) / config.batch_size)
    total_steps = max(1, math.ceil(config.epochs * batches))
    warmup = int(config.warmup_ratio * total_steps)
    trainable = [parameter for parameter in policy.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)

    history = (
        [{"step": 0, **_evaluate(policy, eval_features, reference_eval, collator, config, seq2seq)}]
        if eval_features
        else []
    )
    logger.info("Before training: %s", history[-1] if history else "no held-out pairs")
    started = time.perf_counter()
    window = []
    step = 0
    progress = tqdm(total=total_steps, desc="DPO", unit="step")
    while step < total_steps:
        index = step % batches
        batch = _collate(
            collator, train_features[index * config.batch_size : (index + 1) * config.batch_size], policy.device
        )
        policy_logps = reply_logps(policy, batch, seq2seq)
        loss, chosen, rejected = dpo_loss(policy_logps, reference_train[index].to(policy.device), config.beta)
        nll = chosen_nll(policy_logps, batch["labels"])
        margins = chosen - rejected
        (loss + config.sft_weight * nll).mean().backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        rate = schedule.get_last_lr()[0]
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        step += 1
        progress.update()
        window.append((loss.mean().item(), _ordered(margins).mean().item(), margins.mean().item(), nll.mean().item()))
        if step % config.logging_steps == 0 or step == total_steps:
            losses, accuracies, mean_margins, nlls = zip(*window)
            entry = {
                "step": step,
                "loss": sum(losses) / len(losses),
                "accuracy": sum(accuracies) / len(accuracies),
                "margin": sum(mean_margins) / len(mean_margins),
                "chosen_nll": sum(nlls) / len(nlls),
                "learning_rate": rate,
                "seconds": round(time.perf_counter() - started, 1),
            }
            history.append(entry)
            progress.set_postfix(loss=f"{entry['loss']:.3f}", acc=f"{entry['accuracy']:.2f}")
            window = []
        out_of_time = config.time_limit_minutes > 0 and time.perf_counter() - started > config.time_limit_minutes * 60
        if eval_features and (step % config.eval_steps == 0 or step == total_steps or out_of_time):
            history.append(
                {"step": step, **_evaluate(policy, eval_features, reference_eval, collator, config, seq2seq)}
            )
            logger.info("Step %d: %s", step, history[-1])
        if config.save_steps > 0 and step % config.save_steps == 0 and step < total_steps and not out_of_time:
            save_model(policy, tokenizer, output_dir / f"step-{step}", seq2seq, base_model_name)
        if out_of_time:
            logger.info("Time limit reached at step %d of %d", step, total_steps)
            break
    progress.close()
    train_seconds = time.perf_counter() - started

    evaluations = [entry for entry in history if "eval_loss" in entry]
    metrics = {
        "pairs": len(pairs),
        "validation_pairs": len(validation_pairs),
        "steps": step,
        "epochs": round(step / batches, 3),
        **{
            f"{name}_before": value for name, value in (evaluations[0] if evaluations else {}).items() if name != "step"
        },
        **{name: value for name, value in (evaluations[-1] if evaluations else {}).items() if name != "step"},
        "train_seconds": round(train_seconds, 1),
        "hardware": hardware(),
    }
    save_model(policy, tokenizer, output_dir, seq2seq, base_model_name)
    examples = [
        {"context": list(pair.context), "question": pair.question, "answer": pair.chosen, "reply": pair.rejected}
        for pair in validation_pairs[:10]
    ]
    (output_dir / "metrics.json").write_text(
        json.dumps(
            {
                "metrics": metrics,
                "config": asdict(config),
                "starting_adapter": adapter_name,
                "examples": examples,
                "log_history": history,
            },
            indent=2,
        )
    )
    plot_loss_curve(
        history,
        output_dir / "loss_curve.png",
        title=f"DPO of {adapter_name or base_model_name or 'the generator'}",
        ylabel="DPO loss (log 2 = 0.693 before training)",
    )
    write_model_card(
        output_dir,
        data,
        config,
        metrics,
        base_model_name,
        "seq2seq DPO" if seq2seq else "causal LoRA DPO",
        examples,
        made_by="`training.preference.train_preference` (`python manage.py train_preference`)",
        example_heading="Held-out pairs: the scripted line (chosen) and the model's own sample before training (rejected)",
        trained_on=_pairs_summary(pairs, validation_pairs),
    )
    return TrainingResult(output_dir, metrics, train_seconds)


def trainable_policy(model: "PreTrainedModel", adapter: str, config: PreferenceConfig) -> "PreTrainedModel":
    """The model to train: a chat model with `adapter` (a folder) loaded trainable, or a new LoRA; a T5 model as is."""
    if is_seq2seq(model):
        return model
    if adapter:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(Path(adapter).expanduser()), is_trainable=True)
    return add_lora(model, config)
