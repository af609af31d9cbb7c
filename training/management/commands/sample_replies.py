"""`manage.py sample_replies`: the generator's own candidates for the show's exchanges, as JSON lines.

    python manage.py sample_replies --output var/samples.jsonl

One line per exchange of the character that answers another speaker, training and validation episodes:
{"split", "episode", "query", "answer", "generated": [...]}, where `query` is the selector's query of the
dialogue (`inference.prompts.selector_query`), `answer` his scripted line and `generated` the candidates the
reply system sampled, cleaned and cut as the ranking sees them (those a hard filter would leave out included).
`train_retriever --negatives` trains the response selector to rank his line above them.
"""

import contextlib
import json
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from tqdm.auto import tqdm

from data.corpus import find_transcripts
from data.pipeline import TranscriptError, read_transcripts
from inference.loading import ModelNotFoundError
from inference.prompts import selector_query
from inference.systems import SystemSpecError, build_system
from training.blind import split_items
from training.command_options import add_transcripts_argument

# No retrieval in the prompt or the pool: in the training episodes the index holds the very exchange, and a
# prompt that shows his line would make the samples copies of it.
DEFAULT_SYSTEM = "candidates=4,prompt_hit=0,scripted=0"
CHUNK = 64  # exchanges per progress step and per write
# A bad spec, or a model that cannot be found (the generator loads with the first chunk).
_SAMPLING_ERRORS = (SystemSpecError, ModelNotFoundError, ImproperlyConfigured)


class Command(BaseCommand):
    help = "Sample the generator's candidate replies to the show's exchanges (hard negatives for the selector)."

    def add_arguments(self, parser):
        parser.add_argument("--output", required=True, help="the JSON lines file to write (must not exist)")
        parser.add_argument(
            "--system", default=DEFAULT_SYSTEM, help=f"the reply system's spec (default {DEFAULT_SYSTEM!r})"
        )
        parser.add_argument(
            "--split", choices=("train", "validation", "both"), default="both", help="which episodes (default both)"
        )
        parser.add_argument(
            "--max-exchanges", type=int, default=0, help="at most this many exchanges of each split (0: all)"
        )
        add_transcripts_argument(parser)

    def handle(self, **options):
        output = Path(options["output"])
        if output.exists():
            raise CommandError(f"{output} exists: choose a new --output.")
        if options["max_exchanges"] < 0:
            raise CommandError("--max-exchanges must be 0 (all) or more.")
        transcripts = options["transcripts"] or find_transcripts()[0]
        character = settings.SHELDON_CHARACTER
        splits = ("train", "validation") if options["split"] == "both" else (options["split"],)
        try:
            lines = read_transcripts(transcripts)
            system = build_system(options["system"], transcripts=transcripts)
        except (TranscriptError, *_SAMPLING_ERRORS) as error:
            raise CommandError(str(error)) from error
        items = {split: split_items(lines, split, character) for split in splits}
        if options["max_exchanges"]:
            items = {split: found[: options["max_exchanges"]] for split, found in items.items()}
        if not any(items.values()):
            raise CommandError(f"{transcripts} holds no exchange of {character} that answers another speaker.")
        # Written aside and renamed at the end: an interrupted run leaves no file that looks complete.
        partial = output.with_name(output.name + ".partial")
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("w") as file:
                for split, found in items.items():
                    self.sample(system, split, found, file)
            partial.replace(output)
        except (*_SAMPLING_ERRORS, OSError) as error:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            raise CommandError(str(error)) from error
        written = sum(len(found) for found in items.values())
        self.stdout.write(self.style.SUCCESS(f"{written} exchanges with their samples written to {output}."))

    @staticmethod
    def sample(system, split, items, file):
        for start in tqdm(range(0, len(items), CHUNK), desc=f"Sampling ({split})", unit="chunk"):
            chunk = items[start : start + CHUNK]
            for item, generated in zip(chunk, system.samples(chunk), strict=True):
                row = {
                    "split": split,
                    "episode": item.episode,
                    "query": selector_query([text for _, text in item.context], item.line[1]),
                    "answer": item.answer,
                    "generated": generated,
                }
                file.write(json.dumps(row) + "\n")
            file.flush()
