"""`manage.py load_comparison DIR`: a blind sheet's items onto the staff "Compare replies" page.

    python manage.py load_comparison var/blind/run1 [--set NAME]

Loading the same sheet again adds nothing; the set is named by the folder
unless --set names it.
"""

from django.core.management.base import BaseCommand, CommandError

from review.comparison import load_sheet
from training.blind import BlindError


class Command(BaseCommand):
    help = "Load a blind sheet's items (the folder blind_sheet --output wrote) for staff to rate in the admin."

    def add_arguments(self, parser):
        parser.add_argument("folder", help="the folder `blind_sheet --output` wrote")
        parser.add_argument("--set", default="", help="the set's name on the page (default: the folder's name)")

    def handle(self, **options):
        try:
            loaded, skipped = load_sheet(options["folder"], options["set"])
        except BlindError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            self.style.SUCCESS(
                f"Loaded {loaded} items; {skipped} were there already. Rate them at /admin/review/compare/."
            )
        )
