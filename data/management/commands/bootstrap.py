"""Everything `make run` needs before serving; fast when nothing changed."""
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from data.corpus import DEMO_EPISODE_PREFIX, DEMO_NOTICE, find_transcripts
from data.models import Episode

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "bazinga-demo"


class Command(BaseCommand):
    help = "Import the transcripts, build the retrieval index and create the demo account where missing."

    def handle(self, **options):
        path, is_demo = find_transcripts()
        if is_demo:
            self.stderr.write(self.style.WARNING(f"NOTICE: {DEMO_NOTICE}"))
        else:
            # Real transcripts replace a demo corpus imported on an earlier run.
            Episode.objects.filter(name__startswith=DEMO_EPISODE_PREFIX).delete()
        self.stdout.write(f"Transcripts: {path}")
        call_command("import_transcripts", str(path), character=[settings.SHELDON_CHARACTER])
        call_command("build_index")

        User = get_user_model()
        if not User.objects.filter(username=DEMO_USERNAME).exists():
            User.objects.create_user(DEMO_USERNAME, password=DEMO_PASSWORD)
            self.stdout.write(self.style.SUCCESS("Created the demo account."))
        self.stdout.write(
            self.style.SUCCESS(f"Demo login: username {DEMO_USERNAME!r}, password {DEMO_PASSWORD!r}")
        )
