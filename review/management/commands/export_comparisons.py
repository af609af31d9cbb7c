"""`manage.py export_comparisons --output PATH`: every "Compare replies" rating as JSON lines.

One row per rating: the item (set, dialogue, the conversation's message when
it was a real turn), the candidate (text, systems, the reply it came from),
the rater and the scales. Rows join the transcript export on
`turn_message_id` / `reply_message_id` (its `message_id`). Like
export_transcripts, real turns of users who do not allow training use are
left out unless --all is given.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from review.comparison import exportable, write_ratings_export
from review.models import ComparisonRating


class Command(BaseCommand):
    help = "Export the staff ratings of the Compare replies page as JSON lines."

    def add_arguments(self, parser):
        parser.add_argument("--output", required=True, help="the .jsonl file to write")
        parser.add_argument("--set", default="", help="only the items of this set")
        parser.add_argument(
            "--all", action="store_true", help="also real turns of users who did not allow training use (for review)"
        )

    def handle(self, **options):
        output = Path(options["output"])
        if not output.parent.is_dir():
            raise CommandError(f"The folder {output.parent} does not exist.")
        ratings = exportable(ComparisonRating.objects.all(), consented_only=not options["all"])
        if options["set"]:
            ratings = ratings.filter(candidate__item__set_name=options["set"])
        # Written beside the target first, so a failed export never leaves half a file.
        partial = output.with_name(output.name + ".partial")
        with open(partial, "w", encoding="utf-8") as handle:
            count = write_ratings_export(ratings, handle)
        partial.replace(output)
        scope = "every user" if options["all"] else "sheets and users who allow training use"
        self.stdout.write(self.style.SUCCESS(f"Exported {count} ratings ({scope}) to {output}."))
