"""python manage.py train_generator: fine-tune the generator on the character's exchanges.

A chat model (the offline SmolLM2 by default) gets a LoRA adapter; a T5-family
model is fine-tuned whole. The result goes to a new versioned folder under
models/ unless --output names one; --resume continues an interrupted run.
"""

import json
import logging
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from data.pipeline import TranscriptError
from inference.loading import ModelNotFoundError, load_retriever, read_generator
from inference.profiles import DISABLED, offline_profile
from training.arguments import add_config_options, config_from_options
from training.command_options import add_shared_arguments, apply_shared_options, command_profile, export_rows
from training.feedback import well_rated_samples
from training.generator import TrainingConfig, is_seq2seq, load_training_data, train_generator
from training.reporting import generator_setting, next_version_folder


def output_name(model_name):
    """A short folder name for what is trained: `smollm2-135m-instruct-lora`, `flan-t5-base`, ..."""
    stem = Path(model_name.rstrip("/")).name.removesuffix(".gguf").split(".")[0].lower()
    return f"{settings.SHELDON_CHARACTER.lower()}-{stem}"


class Command(BaseCommand):
    help = (
        "Fine-tune the generator (LoRA for chat models, full for T5) "
        "and save it with its metrics and card under models/."
    )

    def add_arguments(self, parser):
        add_shared_arguments(
            parser,
            model_help="hub id, local folder or .gguf (default: the active profile's generator)",
            output_help="output folder (default: models/<character>-<model>-vN)",
        )
        parser.add_argument(
            "--extra-export", default="", help="a chat export (JSONL/CSV) whose well-rated replies are added"
        )
        parser.add_argument(
            "--resume", action="store_true", help="continue the run in --output from its last checkpoint"
        )
        parser.add_argument(
            "--max-samples", type=int, default=0, help="train on this many samples, drawn at random (0: all)"
        )
        add_config_options(parser, TrainingConfig, exclude=("seed",))  # --seed is a shared option
        parser.add_argument(
            "--embedder",
            default="",
            help=f"bi-encoder for embedding similarity (default: the retriever; {DISABLED!r}: skip)",
        )

    def handle(self, **options):
        logging.getLogger("training").setLevel(logging.INFO)
        transcripts = apply_shared_options(options)
        profile = command_profile()
        model_name = options["model"] or profile.generator_model
        output = Path(options["output"]) if options["output"] else None
        if options["resume"] and not output:
            raise CommandError("--resume needs --output: the folder of the run to continue.")

        data = self.training_data(transcripts, options)
        self.stdout.write(
            f"{data.source}: {len(data.train_samples)} training samples ({data.extra_samples} from the export) "
            f"from {data.train_episodes} episodes; "
            f"{len(data.validation_samples)} validation exchanges from {data.validation_episodes} episodes"
        )
        if not data.train_samples:
            raise CommandError("No training samples: check --transcripts and --character.")

        self.stdout.write(f"Loading {model_name}")
        try:
            model, tokenizer, _ = read_generator(model_name)
        except ModelNotFoundError as error:
            raise CommandError(str(error)) from error
        seq2seq = is_seq2seq(model)
        output = output or next_version_folder(
            settings.BASE_DIR / "models", output_name(model_name) + ("" if seq2seq else "-lora")
        )
        config = config_from_options(
            TrainingConfig,
            options,
            extra={"command": "python manage.py train_generator", "max_samples": options["max_samples"] or "all"},
        )
        try:
            result = train_generator(
                model,
                tokenizer,
                data,
                output,
                config,
                base_model_name=model_name,
                embedder=self.embedder(options, profile),
                resume=options["resume"],
            )
        except FileExistsError as error:
            raise CommandError(str(error)) from error

        self.stdout.write(json.dumps(result.metrics, indent=2))
        self.stdout.write(
            self.style.SUCCESS(
                f"Saved to {output} in {result.seconds:.0f} s of training. "
                f"Use it: {generator_setting(model_name, output, seq2seq)}"
            )
        )

    def training_data(self, transcripts, options):
        extra = []
        if options["extra_export"]:
            extra = well_rated_samples(export_rows(options["extra_export"]))
            self.stdout.write(f"{len(extra)} extra samples from {options['extra_export']}")
        try:
            return load_training_data(
                transcripts,
                options["character"],
                seed=options["seed"],
                extra_samples=extra,
                max_samples=options["max_samples"],
            )
        except TranscriptError as error:
            raise CommandError(str(error)) from error

    def embedder(self, options, profile):
        name = options["embedder"] or profile.retriever_model or offline_profile().retriever_model
        if name.lower() == DISABLED:
            return None
        try:
            return load_retriever(name)
        except ModelNotFoundError as error:
            raise CommandError(str(error)) from error
