"""Fine-tune the bi-encoder to find the character's answer to a line.

Pairs are (context + question -> answer), one per exchange. The loss is
MultipleNegativesRankingLoss: every other answer in a batch is a negative, so
larger batches make a harder task. Recall@k asks, for each validation
exchange, whether its true answer is among the k answers nearest to its
query out of all validation answers.

    pairs = exchange_pairs(exchanges)
    before = recall_at_k(model, validation_pairs)
    log = train_retriever(model, train_pairs, RetrieverConfig())

Plain Python (no Django).
"""

import logging
import math
import random
from dataclasses import dataclass

import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup, set_seed

from training.arguments import option

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    query: str  # the scene's earlier lines, then the line answered
    answer: str


def exchange_pairs(exchanges):
    """One (query, answer) pair per exchange; repeated answers are kept once (they would be false negatives)."""
    pairs, seen = [], set()
    for exchange in exchanges:
        if exchange.answer in seen:
            continue
        seen.add(exchange.answer)
        pairs.append(Pair(" ".join((*exchange.context, exchange.question)), exchange.answer))
    return pairs


@dataclass
class RetrieverConfig:
    """Hyper-parameters of `train_retriever`; each is also an option of `manage.py train_retriever`."""

    epochs: float = option(1.0, "passes over the training pairs")
    batch_size: int = option(32, "pairs per step; the other answers of a batch are each pair's negatives")
    learning_rate: float = option(2e-5, "AdamW learning rate")
    warmup_ratio: float = option(0.1, "share of the steps the learning rate warms up over")
    seed: int = option(42, "training's random state")


def recall_at_k(model, pairs, ks=(1, 5), batch_size=64):
    """{k: share of queries whose own answer ranks in the top k of all the pairs' answers}."""
    if not pairs:
        raise ValueError("Recall needs at least one validation pair.")
    queries = model.encode(
        [p.query for p in pairs], batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True
    )
    answers = model.encode(
        [p.answer for p in pairs], batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True
    )
    scores = queries @ answers.T
    own = scores.diagonal().unsqueeze(1)
    rank = (scores > own).sum(dim=1)  # answers scored above the true one
    return {k: float((rank < k).float().mean()) for k in ks}


def train_retriever(model, pairs, config):
    """Fine-tune `model` in place on `pairs`; returns the log [{"step", "loss"}, ...] for the loss curve."""
    set_seed(config.seed)
    pairs = list(pairs)
    if len(pairs) < 2 or config.batch_size < 2:
        raise ValueError("In-batch negatives need at least two training pairs and a batch size of at least 2.")
    loss_function = MultipleNegativesRankingLoss(model)
    batches_per_epoch = math.ceil(len(pairs) / config.batch_size)
    total_steps = max(1, round(batches_per_epoch * config.epochs))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(total_steps * config.warmup_ratio), total_steps)
    shuffler = random.Random(config.seed)
    log = []
    model.train()
    with tqdm(total=total_steps, desc="Training the retriever", unit="step") as progress:
        while progress.n < total_steps:
            shuffler.shuffle(pairs)
            for start in range(0, len(pairs), config.batch_size):
                batch = pairs[start : start + config.batch_size]
                if len(batch) < 2 or progress.n >= total_steps:
                    continue  # a lone pair has no negative
                features = [_tokenized(model, [p.query for p in batch]), _tokenized(model, [p.answer for p in batch])]
                loss = loss_function(features, None)
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                log.append({"step": progress.n + 1, "loss": loss.item()})
                progress.update()
                progress.set_postfix(loss=f"{log[-1]['loss']:.3f}")
    model.eval()
    return log


def _tokenized(model, texts):
    features = model.preprocess(texts)
    return {
        name: value.to(model.device) if isinstance(value, torch.Tensor) else value for name, value in features.items()
    }
