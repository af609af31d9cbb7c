"""Export chat transcripts with ratings, review labels and generation records.

    python manage.py export_transcripts --output var/feedback.jsonl
    python manage.py export_transcripts --rating 2- --status failed --output worst.csv
    python manage.py export_transcripts --all --output review-everything.jsonl

Only users who allow training use are exported unless --all is given; the
summary says which it did. training/feedback.py reads the file back.
"""
import argparse
from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from chat.models import Message
from review.export import FORMATS, matching_conversations, write_export
from review.models import ReviewLabel
from review.selection import RATING_CHOICES, UNRATED, Criteria


def iso_date(text):
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a date: {text!r}; write it as YYYY-MM-DD") from error


class Command(BaseCommand):
    help = "Export conversations (one row per message) as JSONL or CSV for review and training."

    def add_arguments(self, parser):
        parser.add_argument("--output", required=True, help="File to write; .jsonl or .csv picks the format.")
        parser.add_argument("--format", choices=FORMATS, help="Overrides the format given by the file's suffix.")
        parser.add_argument(
            "--all",
            action="store_true",
            help="Export every user's conversations for review, also of users who did not allow training use.",
        )
        filters = parser.add_argument_group("filters (all must match)")
        filters.add_argument("--user", default="", help="Owner's username.")
        filters.add_argument("--since", type=iso_date, help="Conversations started on or after YYYY-MM-DD (UTC).")
        filters.add_argument("--until", type=iso_date, help="Conversations started on or before YYYY-MM-DD (UTC).")
        filters.add_argument("--character", default="")
        filters.add_argument("--profile", default="", help="A reply made with this inference profile.")
        filters.add_argument("--model", default="", help="A reply made with this generator model id.")
        filters.add_argument(
            "--rating",
            default="",
            choices=[*RATING_CHOICES, UNRATED],
            help="A reply rated so: 1, 2- (2 or lower), 3-, 4+ (4 or higher), 5, or unrated.",
        )
        filters.add_argument("--status", default="", choices=Message.Status.values, help="A message with this status.")
        filters.add_argument(
            "--label", default="", choices=ReviewLabel.Kind.values, help="A reply with this staff label."
        )
        filters.add_argument("--search", default="", help="Words in the title or any message.")

    def handle(self, *args, **options):
        output = Path(options["output"])
        file_format = options["format"] or output.suffix.lstrip(".")
        if file_format not in FORMATS:
            raise CommandError(f"Cannot tell the format of {output}: name it .jsonl or .csv, or pass --format.")
        if options["since"] and options["until"] and options["since"] > options["until"]:
            raise CommandError("--since is after --until: no conversation can match.")
        if not output.parent.is_dir():
            raise CommandError(f"The folder {output.parent} does not exist.")
        criteria = Criteria(
            user=options["user"],
            since=options["since"],
            until=options["until"],
            character=options["character"],
            profile=options["profile"],
            generator_model=options["model"],
            rating=options["rating"],
            status=options["status"],
            label=options["label"],
            search=options["search"],
        )
        # Written beside the target first, so a failed export never leaves half a file.
        partial = output.with_name(output.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8", newline="") as handle:
                summary = write_export(
                    matching_conversations(criteria),
                    handle,
                    file_format,
                    consented_only=not options["all"],
                    progress=options["verbosity"] > 0,
                )
            partial.replace(output)
        finally:
            partial.unlink(missing_ok=True)
        self.stdout.write(self.style.SUCCESS(f"{summary.describe()} Wrote {output} ({file_format})."))
