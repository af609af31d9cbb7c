"""`manage.py blind_sheet`: several systems answer the same validation exchanges, in one blind sheet.

    python manage.py blind_sheet --system scripted=scripted --system other=other \
        --system retrieved=retrieved --system default=default --exchanges 40 --output var/blind/run1

writes sheet.md (give it to each rater), key.json (keep it hidden) and
items.json to --output. See docs/evaluation.md, "Blind ratings".
"""

from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from data.corpus import find_transcripts
from data.pipeline import TranscriptError, read_transcripts
from training.blind import KEY, SHEET, BlindError, build_system, collect_replies, parse_systems, pick_items, write_sheet
from training.command_options import add_transcripts_argument


class Command(BaseCommand):
    help = (
        "Write a blind rating sheet: the replies of several systems to the same validation exchanges, "
        "shuffled per exchange and unnamed, under the fixed rubric, with a hidden key."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--system",
            action="append",
            default=[],
            metavar="NAME=SPEC",
            help="a system to rate; SPEC is scripted, other, retrieved[:RETRIEVER] or anything "
            "inference.systems.build_system understands (repeat for each system)",
        )
        parser.add_argument("--exchanges", type=int, default=40, help="validation exchanges to answer (default 40)")
        parser.add_argument("--output", required=True, help="the sheet's folder (must not hold a sheet yet)")
        parser.add_argument(
            "--seed", type=int, default=1234, help="which exchanges, the candidates' order, `other` (default 1234)"
        )
        parser.add_argument(
            "--max-line-words",
            type=int,
            default=None,
            help="only exchanges whose line to answer has at most this many words (default: any)",
        )
        add_transcripts_argument(parser)

    def handle(self, **options):
        output = Path(options["output"])
        if (output / KEY).exists():
            raise CommandError(
                f"{output} already holds a sheet ({KEY}): ratings may refer to it. Choose a new --output."
            )
        transcripts = options["transcripts"] or find_transcripts()[0]
        character = settings.SHELDON_CHARACTER
        try:
            systems = parse_systems(options["system"])
            lines = read_transcripts(transcripts)
            items = pick_items(lines, options["exchanges"], options["seed"], character, options["max_line_words"])
            replies = collect_replies(
                systems,
                items,
                lambda spec: build_system(spec, lines, options["seed"], character, transcripts=transcripts),
            )
            about = {
                "specs": systems,
                "transcripts": str(transcripts),
                "character": character,
                "max_line_words": options["max_line_words"],
                "written": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            write_sheet(output, items, replies, options["seed"], about)
        except (BlindError, TranscriptError) as error:
            raise CommandError(str(error)) from error
        if len(items) < options["exchanges"]:
            self.stderr.write(
                f"The validation episodes hold only {len(items)} usable exchanges; the sheet has them all."
            )
        self.stdout.write(
            f"{len(items)} exchanges of {character} from {len({i.episode for i in items})} validation episodes "
            f"of {transcripts}, {len(systems)} systems: {', '.join(systems)}."
        )
        self.stdout.write(self.style.SUCCESS(f"Give {output / SHEET} to each rater; keep {output / KEY} hidden."))
