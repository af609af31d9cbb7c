"""python manage.py train_retriever: fine-tune the bi-encoder on (context + question -> answer).

Prints recall@1 and recall@5 on the validation episodes before and after (and, with --negatives, how often
his line beats the generator's own replies to it),
and saves the model, its loss curve, metrics and card in a new versioned
folder under models/ (RETRIEVER_MODEL can point at it; rebuild the index with
`manage.py build_index` afterwards).
"""

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from data.pipeline import TranscriptError, build_exchanges, episode_names, read_transcripts, split_episodes
from inference.loading import ModelNotFoundError, read_retriever, save_head, save_lora, save_retriever
from inference.profiles import MINILM_PACKAGE, packaged_minilm
from training.arguments import add_config_options, config_from_options
from training.command_options import add_shared_arguments, apply_shared_options
from training.generator import hardware
from training.reporting import next_version_folder, plot_loss_curve
from training.retriever import (
    RetrieverConfig,
    add_lora,
    exchange_pairs,
    limit_length,
    own_sample_wins,
    read_samples,
    recall_at_k,
    train_linear_head,
    train_retriever,
    with_negatives,
)


class Command(BaseCommand):
    help = "Fine-tune the retriever bi-encoder with in-batch negatives; print recall@1/@5 before and after."

    def add_arguments(self, parser):
        add_shared_arguments(
            parser,
            model_help="sentence-transformers folder or hub id (default: the offline MiniLM)",
            output_help="output folder (default: models/<character>-retriever-vN)",
        )
        add_config_options(parser, RetrieverConfig, exclude=("seed",))  # --seed is a shared option
        parser.add_argument(
            "--max-pairs", type=int, default=0, help="train on this many pairs, drawn at random (0: all)"
        )
        parser.add_argument(
            "--train-speakers",
            choices=("character", "all"),
            default="character",
            help="whose exchanges to train on: the character's only, or every speaker's in the training episodes "
            "(four times the pairs, to learn what answers a line; validation stays the character's)",
        )
        parser.add_argument(
            "--validation-pairs", type=int, default=1000, help="validation pairs to rank among (0: all)"
        )
        parser.add_argument(
            "--negatives",
            default="",
            help="a `manage.py sample_replies` file: each pair's generated replies become its hard negatives "
            "(its validation rows measure how often his line beats them)",
        )

    def handle(self, **options):
        import random

        transcripts = apply_shared_options(options)
        try:
            lines = read_transcripts(transcripts)
        except TranscriptError as error:
            raise CommandError(str(error)) from error
        exchanges = build_exchanges(lines, options["character"])
        train_episodes, validation_episodes = split_episodes(episode_names(lines), seed=options["seed"])
        train_exchanges = build_exchanges(lines, character=None) if options["train_speakers"] == "all" else exchanges
        train_pairs = exchange_pairs(e for e in train_exchanges if e.episode in train_episodes)
        validation_pairs = exchange_pairs(e for e in exchanges if e.episode in validation_episodes)
        random.Random(options["seed"]).shuffle(train_pairs)
        if options["max_pairs"]:
            train_pairs = train_pairs[: options["max_pairs"]]
        if options["validation_pairs"]:
            validation_pairs = validation_pairs[: options["validation_pairs"]]
        if options["negatives"]:
            if options["method"] == "head":
                raise CommandError("--negatives trains the encoder (--method full or lora); a head ignores them.")
            try:
                samples = read_samples(options["negatives"])
            except (OSError, ValueError) as error:
                raise CommandError(f"--negatives: {error}") from error
            train_pairs = with_negatives(train_pairs, samples)
            validation_pairs = with_negatives(validation_pairs, samples)
            if not any(pair.negatives for pair in train_pairs):
                raise CommandError(f"--negatives: {options['negatives']} holds no sample of these training pairs.")
        if len(train_pairs) < 2 or not validation_pairs:
            raise CommandError(
                f"Too few exchanges of {options['character']!r} in {transcripts}: {len(train_pairs)} training pairs, "
                f"{len(validation_pairs)} validation pairs (at least 2 and 1 are needed, from different episodes)."
            )
        self.stdout.write(
            f"{len(train_pairs)} training pairs, {len(validation_pairs)} validation pairs from {transcripts}"
        )

        model_name = options["model"] or packaged_minilm()
        try:
            model = read_retriever(model_name)
        except ModelNotFoundError as error:
            raise CommandError(str(error)) from error
        config = config_from_options(RetrieverConfig, options)
        if config.method not in ("full", "lora", "head"):
            raise CommandError(f"--method {config.method!r}: use full, lora or head.")
        if config.negatives_per_pair < 0:
            raise CommandError(f"--negatives-per-pair {config.negatives_per_pair}: use 0 or more.")
        if config.method == "lora" and config.lora_rank < 1:
            raise CommandError(f"--lora-rank {config.lora_rank}: use a rank of at least 1.")
        limit_length(model, config.max_seq_length)
        before = self.measure(model, validation_pairs)
        self.stdout.write(self.recall_line("before", before))
        if config.method == "lora":
            try:
                add_lora(model, config.lora_rank)
            except ValueError as error:  # peft: no linear layer to adapt in this encoder
                raise CommandError(f"--method lora on {model_name}: {error}") from error
        started = time.perf_counter()
        try:
            train = train_linear_head if config.method == "head" else train_retriever
            log = train(model, train_pairs, config)
        except ValueError as error:
            raise CommandError(str(error)) from error
        seconds = time.perf_counter() - started
        after = self.measure(model, validation_pairs)
        self.stdout.write(self.recall_line("after", after))

        output = (
            Path(options["output"])
            if options["output"]
            else next_version_folder(settings.BASE_DIR / "models", f"{options['character'].lower()}-retriever")
        )
        # A head or adapters are saved alone: they load over their base encoder (the packaged MiniLM by default).
        base = f"package:{MINILM_PACKAGE}" if model_name == packaged_minilm() else model_name
        if config.method == "head":
            save_head(model, output, base)
        elif config.method == "lora":
            save_lora(model, output, base)
        else:
            save_retriever(model, output)
        metrics = {
            "recall_before": before,
            "recall_after": after,
            "train_pairs": len(train_pairs),
            "train_pairs_with_negatives": sum(1 for pair in train_pairs if pair.negatives),
            "validation_pairs_with_negatives": sum(1 for pair in validation_pairs if pair.negatives),
            "negatives": options["negatives"],
            "train_speakers": options["train_speakers"],
            "validation_pairs": len(validation_pairs),
            "steps": len(log),
            "train_seconds": round(seconds, 1),
            "hardware": hardware(),
            "base_model": model_name,
            "transcripts": str(transcripts),
            "config": vars(config),
        }
        (output / "metrics.json").write_text(json.dumps({**metrics, "log_history": log}, indent=2))
        plot_loss_curve(log, output / "loss_curve.png", title=f"Retriever fine-tuning ({len(train_pairs)} pairs)")
        (output / "README.md").write_text(self.card(output, metrics))
        self.stdout.write(
            self.style.SUCCESS(f"Saved to {output}. Use it: RETRIEVER_MODEL={output}, then manage.py build_index")
        )

    @staticmethod
    def measure(model, validation_pairs):
        recall = recall_at_k(model, validation_pairs)
        wins = own_sample_wins(model, validation_pairs)
        return recall if wins is None else {**recall, "beats own samples": wins}

    @staticmethod
    def recall_line(when, recall):
        hits = f"  hits@1/10 {recall['hits@1/10']:.3f}" if "hits@1/10" in recall else ""
        wins = f"  beats own samples {recall['beats own samples']:.3f}" if "beats own samples" in recall else ""
        return f"recall@1 {recall[1]:.3f}  recall@5 {recall[5]:.3f}{hits}{wins}  ({when} fine-tuning)"

    @staticmethod
    def card(output, metrics):
        rows = "\n".join(f"| {name} | {value} |" for name, value in metrics.items())
        hard = f" and the generator's own replies from {metrics['negatives']} as hard negatives" if metrics["negatives"] else ""
        return (
            f"# {output.name}\n\n"
            f"`{metrics['base_model']}` fine-tuned on (context + question -> answer) pairs with in-batch negatives "
            f"(MultipleNegativesRankingLoss){hard} by `python manage.py train_retriever`, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n\n"
            f"Recall@k: the true answer among the k nearest of all validation answers (validation episodes only).\n\n"
            f"| what | value |\n| --- | --- |\n{rows}\n\n![loss curve](loss_curve.png)\n"
        )
