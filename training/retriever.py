"""Fine-tune the bi-encoder to find the character's answer to a line.

Pairs are (context + question -> answer), one per exchange. The loss is
MultipleNegativesRankingLoss: every other answer in a batch is a negative, so
larger batches make a harder task. A pair may also carry hard negatives: the
generator's own replies to the same dialogue (`manage.py sample_replies`),
which the selector must learn to rank below his line, since those are what it
chooses among when serving. Recall@k asks, for each validation exchange,
whether its true answer is among the k answers nearest to its query out of
all validation answers; `own_sample_wins` whether it beats the generator's
replies to it.

    pairs = with_negatives(exchange_pairs(exchanges), read_samples("samples.jsonl"))
    before = recall_at_k(model, validation_pairs)
    log = train_retriever(model, train_pairs, RetrieverConfig())

Plain Python (no Django).
"""

import json
import logging
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup, set_seed

from inference.prompts import selector_query
from training.arguments import option
from training.metrics import words

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    query: str  # the scene's last lines, then the line answered (inference.prompts.selector_query)
    answer: str
    negatives: tuple[str, ...] = ()  # the generator's own replies to the query: hard negatives


def exchange_pairs(exchanges):
    """One (query, answer) pair per exchange; repeated answers are kept once (they would be false negatives)."""
    pairs, seen = [], set()
    for exchange in exchanges:
        if exchange.answer in seen:
            continue
        seen.add(exchange.answer)
        pairs.append(Pair(selector_query(exchange.context, exchange.question), exchange.answer))
    return pairs


def read_samples(path: str | Path) -> dict[tuple[str, str], list[str]]:
    """{(query, answer): generated replies} from a `manage.py sample_replies` file.

    Every row counts, whatever its `split`: a pair's own generated replies give nothing away, and a
    `train_retriever --seed` other than the file's split still finds them."""
    samples = {}
    with Path(path).open() as file:
        for number, line in enumerate(file, start=1):
            try:
                row = json.loads(line)
                query, answer, generated = row["query"], row["answer"], row["generated"]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}, line {number}: not a sample_replies row ({error}).") from None
            if not (isinstance(query, str) and isinstance(answer, str) and isinstance(generated, list)) or not all(
                isinstance(text, str) for text in generated
            ):
                raise ValueError(f"{path}, line {number}: query and answer must be texts, generated a list of texts.")
            samples[(query, answer)] = generated
    return samples


def _same_line(text: str) -> tuple[str, ...]:
    """What two lines must share to be the same line: their words ("Bazinga!" is "bazinga.")."""
    return tuple(words(text))


def with_negatives(pairs: list[Pair], samples: dict[tuple[str, str], list[str]]) -> list[Pair]:
    """`pairs`, each with its generated replies as negatives: distinct, with words, and none that is his line."""
    found = []
    for pair in pairs:
        his, negatives = _same_line(pair.answer), {}
        for text in samples.get((pair.query, pair.answer), ()):
            key = _same_line(text)
            if key and key != his:
                negatives.setdefault(key, text)
        found.append(replace(pair, negatives=tuple(negatives.values())))
    return found


@dataclass
class RetrieverConfig:
    """Hyper-parameters of `train_retriever`; each is also an option of `manage.py train_retriever`."""

    method: str = option(
        "full",
        "full: fine-tune the whole encoder; lora: low-rank adapters on every linear layer of the encoder "
        "(as fast per step on a CPU, and only the adapters are saved: a few MB that ship in git); head: a linear "
        "layer over the frozen encoder's embeddings (each text is embedded once: minutes on a busy 2-core CPU)",
    )
    lora_rank: int = option(16, "rank of the lora adapters (their alpha is twice the rank)")
    epochs: float = option(1.0, "passes over the training pairs")
    batch_size: int = option(32, "pairs per step; the other answers of a batch are each pair's negatives")
    learning_rate: float = option(2e-5, "AdamW learning rate (suits full; lora wants about 3e-4, the shipped selector's)")
    warmup_ratio: float = option(0.1, "share of the steps the learning rate warms up over")
    negatives_per_pair: int = option(
        1,
        "with --negatives: generated replies added to a batch per pair (its own; another pair's when it has none)",
    )
    max_seq_length: int = option(128, "tokens read of a text; a longer query loses its oldest words, not the line answered")
    seed: int = option(42, "training's random state")


def recall_at_k(model, pairs, ks=(1, 5), batch_size=64, seed=0):
    """{k: share of queries whose own answer ranks in the top k of all the pairs' answers}, and
    {"hits@1/10": share whose own answer beats 9 others drawn at random} (how a response selector is judged)."""
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
    recall = {k: float((rank < k).float().mean()) for k in ks}
    if len(pairs) >= 10:
        generator = torch.Generator().manual_seed(seed)
        # 9 others per query: a random draw among the rest (an offset of 1..n-1 never lands on itself).
        offsets = torch.stack([torch.randperm(len(pairs) - 1, generator=generator)[:9] + 1 for _ in pairs])
        others = (torch.arange(len(pairs)).unsqueeze(1) + offsets) % len(pairs)
        recall["hits@1/10"] = float((own.squeeze(1).cpu() > scores.cpu().gather(1, others).max(1).values).float().mean())
    return recall


def own_sample_wins(model, pairs, batch_size=64):
    """Share of the pairs with negatives whose answer the model scores above every one of them (None: none)."""
    pairs = [pair for pair in pairs if pair.negatives]
    if not pairs:
        return None
    texts = [pair.query for pair in pairs] + [pair.answer for pair in pairs]
    texts += [negative for pair in pairs for negative in pair.negatives]
    vectors = model.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True).cpu()
    queries, answers, negatives = vectors[: len(pairs)], vectors[len(pairs) : 2 * len(pairs)], vectors[2 * len(pairs) :]
    wins, start = 0, 0
    for query, answer, pair in zip(queries, answers, pairs):
        own = negatives[start : start + len(pair.negatives)]
        start += len(pair.negatives)
        wins += bool(query @ answer > (own @ query).max())
    return wins / len(pairs)


def _negative_columns(batch, count, pool, rng):
    """`count` columns of hard negatives, one text per pair of the batch in each.

    A pair's own replies first, else another pair's; never a line that is the answer of a pair in the batch
    (the loss ranks every query against every negative of the batch: "Yes." is many pairs' true answer)."""
    answers = {_same_line(pair.answer) for pair in batch}
    chosen = []
    for pair in batch:
        own = [text for text in pair.negatives if _same_line(text) not in answers]
        if not own:
            drawn = rng.sample(pool, min(len(pool), 4 * count))
            own = [text for text in drawn if _same_line(text) not in answers] or drawn
        chosen.append(rng.sample(own, count) if len(own) >= count else rng.choices(own, k=count))
    return [[texts[column] for texts in chosen] for column in range(count)]


def train_retriever(model, pairs, config):
    """Fine-tune `model` in place on `pairs`; returns the log [{"step", "loss"}, ...] for the loss curve."""
    set_seed(config.seed)
    limit_length(model, config.max_seq_length)
    pairs = list(pairs)
    if len(pairs) < 2 or config.batch_size < 2:
        raise ValueError("In-batch negatives need at least two training pairs and a batch size of at least 2.")
    loss_function = MultipleNegativesRankingLoss(model)
    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    batches_per_epoch = math.ceil(len(pairs) / config.batch_size)
    total_steps = max(1, round(batches_per_epoch * config.epochs))
    optimizer = torch.optim.AdamW(trained, lr=config.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(total_steps * config.warmup_ratio), total_steps)
    shuffler = random.Random(config.seed)
    pool = [negative for pair in pairs for negative in pair.negatives]
    hard_negatives = config.negatives_per_pair if pool else 0
    log = []
    model.train()
    with tqdm(total=total_steps, desc="Training the retriever", unit="step") as progress:
        while progress.n < total_steps:
            shuffler.shuffle(pairs)
            for start in range(0, len(pairs), config.batch_size):
                batch = pairs[start : start + config.batch_size]
                if len(batch) < 2 or progress.n >= total_steps:
                    continue  # a lone pair has no negative
                columns = [[p.query for p in batch], [p.answer for p in batch]]
                columns += _negative_columns(batch, hard_negatives, pool, shuffler)
                features = [_tokenized(model, column) for column in columns]
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


def add_lora(model, rank):
    """Wrap the encoder of `model` in LoRA adapters (every attention and feed-forward linear layer);
    `train_retriever` then trains only them, and `inference.loading.save_lora` saves only them."""
    from peft import LoraConfig, get_peft_model

    model.requires_grad_(False)  # only the adapters learn (a head loaded with the model would not be saved)
    encoder = model[0]
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.05, target_modules="all-linear")
    encoder.model = get_peft_model(encoder.model, config)
    return model


def train_linear_head(model, pairs, config):
    """Append a trained linear layer (and a unit-length step) to `model`; the encoder stays as it is.

    The layer starts as the identity, so training starts from the encoder's own ranking, and it is
    applied to both sides (a SentenceTransformer embeds queries and answers alike). Loss: in-batch
    negatives, as MultipleNegativesRankingLoss. Returns the log, one entry per step.
    """
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    set_seed(config.seed)
    limit_length(model, config.max_seq_length)
    if len(pairs) < 2 or config.batch_size < 2:
        raise ValueError("In-batch negatives need at least two training pairs and a batch size of at least 2.")
    queries = model.encode([p.query for p in pairs], batch_size=64, convert_to_tensor=True, show_progress_bar=True)
    answers = model.encode([p.answer for p in pairs], batch_size=64, convert_to_tensor=True, show_progress_bar=True)
    dimension = queries.shape[-1]
    layer = torch.nn.Linear(dimension, dimension, bias=False)
    torch.nn.init.eye_(layer.weight)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=config.learning_rate)
    scale = MultipleNegativesRankingLoss(model).scale
    generator = torch.Generator().manual_seed(config.seed)
    total_steps = max(1, round(math.ceil(len(pairs) / config.batch_size) * config.epochs))
    log = []
    for step in tqdm(range(total_steps), desc="Training the linear head", unit="step"):
        batch = torch.randperm(len(pairs), generator=generator)[: config.batch_size]
        query = torch.nn.functional.normalize(layer(queries[batch]), dim=-1)
        answer = torch.nn.functional.normalize(layer(answers[batch]), dim=-1)
        loss = torch.nn.functional.cross_entropy(scale * query @ answer.T, torch.arange(len(batch)))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        log.append({"step": step + 1, "loss": loss.item()})
    model.append(
        Dense(dimension, dimension, bias=False, activation_function=torch.nn.Identity(), init_weight=layer.weight.detach())
    )
    model.append(Normalize())
    model.eval()
    return log


def limit_length(model, max_seq_length):
    """Read at most `max_seq_length` tokens of a text, keeping its end (a query ends with the line answered)."""
    model.max_seq_length = max_seq_length
    model.tokenizer.truncation_side = "left"


def _tokenized(model, texts):
    features = model.preprocess(texts)
    return {
        name: value.to(model.device) if isinstance(value, torch.Tensor) else value for name, value in features.items()
    }
