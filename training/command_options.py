"""What the training commands share: options (their hyper-parameters come from training/arguments.py), the
profile and the export, each refused with a clear CommandError."""

import argparse

from django.conf import settings
from django.core.management.base import CommandError

from data.corpus import find_transcripts
from inference.loading import ModelNotFoundError
from inference.profiles import Profile, active_profile
from training.feedback import FeedbackError, read_export


def add_transcripts_argument(parser: argparse.ArgumentParser) -> None:
    """--transcripts; read it with `options["transcripts"] or data.corpus.find_transcripts()[0]`."""
    parser.add_argument(
        "--transcripts",
        default="",
        help="transcripts CSV (default: TRANSCRIPTS, else the show's transcripts, else the demo corpus)",
    )


def add_shared_arguments(parser: argparse.ArgumentParser, model_help: str, output_help: str) -> None:
    parser.add_argument("--model", default="", help=model_help)
    add_transcripts_argument(parser)
    parser.add_argument("--character", default=settings.SHELDON_CHARACTER, help="whose lines are the answers")
    parser.add_argument("--output", default="", help=output_help)
    parser.add_argument("--seed", type=int, default=42, help="the episode split, the shuffle and training")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default; the machine is shared)"
    )


def apply_shared_options(options: dict) -> str:
    """Apply --threads and return the transcripts file to read."""
    import torch

    if options["threads"] > 0:
        torch.set_num_threads(options["threads"])
    return options["transcripts"] or find_transcripts()[0]


def command_profile() -> Profile:
    """The active profile, or a CommandError that names the missing model."""
    try:
        return active_profile()
    except ModelNotFoundError as error:
        raise CommandError(str(error)) from error


def export_rows(path: str) -> list[dict]:
    """The rows of a chat export (`read_export`), or a CommandError that says why the file cannot be used."""
    try:
        return read_export(path)
    except (FeedbackError, OSError) as error:
        raise CommandError(f"Cannot use the export {path}: {error}") from error
