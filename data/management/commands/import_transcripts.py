from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from data.importer import import_lines
from data.pipeline import TranscriptError, read_transcripts


class Command(BaseCommand):
    help = "Import Kaggle-format transcripts (episode_name, dialogue, person_scene) and build exchanges."

    def add_arguments(self, parser):
        parser.add_argument("path", help="CSV file with the columns episode_name, dialogue, person_scene")
        parser.add_argument(
            "--character",
            action="append",
            help=f"whose lines are the answers (repeatable; default {settings.SHELDON_CHARACTER})",
        )

    def handle(self, path, character, **options):
        characters = character or [settings.SHELDON_CHARACTER]
        try:
            lines = read_transcripts(path)
        except TranscriptError as error:
            raise CommandError(str(error)) from error
        if not lines:
            raise CommandError(f"{path} has no dialogue lines.")
        speakers = {line.speaker for line in lines}
        absent = [c for c in characters if c not in speakers]
        if absent:
            raise CommandError(
                f"{path} has no lines of {', '.join(absent)}; check --character (names are case-sensitive)."
            )

        episodes = len({line.episode for line in lines})
        with tqdm(total=episodes, desc="Importing episodes", unit="episode", disable=options["verbosity"] < 1) as bar:
            summary = import_lines(lines, characters, progress=bar.update)

        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {path}: {summary['episodes']} episodes, {summary['lines']} lines, "
                f"{summary['episodes_written']} episodes written (the rest unchanged)."
            )
        )
        for name, count in summary["exchanges"].items():
            self.stdout.write(f"  exchanges of {name}: {count}")
