"""The options train_generator and train_retriever share (their hyper-parameters come from training/arguments.py)."""

import argparse

from django.conf import settings

from data.corpus import find_transcripts


def add_shared_arguments(parser: argparse.ArgumentParser, model_help: str, output_help: str) -> None:
    parser.add_argument("--model", default="", help=model_help)
    parser.add_argument(
        "--transcripts",
        default="",
        help="transcripts CSV (default: TRANSCRIPTS, else the show's transcripts, else the demo corpus)",
    )
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
