"""Everything `make run` needs before serving; fast when nothing changed."""
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from data.corpus import DEMO_EPISODE_PREFIX, DEMO_NOTICE, find_transcripts
from data.models import Episode

DEMO_USERNAME = "demo"
# The demo account's password: generated for each installation, kept here (owner-readable only)
# so that every `make run` can print it; never a password known from the source.
DEMO_PASSWORD_FILE = "demo-password"


def demo_password() -> tuple[str, bool]:
    """This installation's demo password, and whether it was made just now."""
    path = settings.VAR_DIR / DEMO_PASSWORD_FILE
    if path.exists():
        return path.read_text().strip(), False
    password = secrets.token_urlsafe(12)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        file.write(password)
    return password, True


class Command(BaseCommand):
    help = "Import the transcripts, build the retrieval index and create the demo account where missing."

    def add_arguments(self, parser):
        # In this process rather than as commands of their own: each start of Django costs about 2 s here,
        # and `make run` ran three of them before serving (10.5 s on a second run, 3.7 s in one process).
        parser.add_argument("--migrate", action="store_true", help="apply the migrations first")
        parser.add_argument("--collectstatic", action="store_true", help="collect the static files first")

    def handle(self, **options):
        if options["migrate"]:
            call_command("migrate", interactive=False)
        if options["collectstatic"]:
            call_command("collectstatic", interactive=False, verbosity=0)
        path, is_demo = find_transcripts()
        imported_before = Episode.objects.exclude(name__startswith=DEMO_EPISODE_PREFIX).exists()
        if is_demo and imported_before:
            # Their file is not found this time (moved, or TRANSCRIPTS changed): they stay, and no demo corpus
            # joins them in the index (under the demo's notice).
            self.stdout.write("Transcripts: no file found; serving the ones imported before.")
        else:
            if is_demo:
                self.stderr.write(self.style.WARNING(f"NOTICE: {DEMO_NOTICE}"))
            else:
                # Real transcripts replace a demo corpus imported on an earlier run.
                Episode.objects.filter(name__startswith=DEMO_EPISODE_PREFIX).delete()
            self.stdout.write(f"Transcripts: {path}")
            call_command("import_transcripts", str(path), character=[settings.SHELDON_CHARACTER])
        call_command("build_index")

        User = get_user_model()
        password, new = demo_password()
        demo = User.objects.filter(username=DEMO_USERNAME).first()
        if demo is None:
            User.objects.create_user(DEMO_USERNAME, password=password)
            self.stdout.write(self.style.SUCCESS("Created the demo account."))
        elif new or not demo.check_password(password):
            # An account from before generated passwords (or a lost password file) gets the new one.
            demo.set_password(password)
            demo.save(update_fields=["password"])
        self.stdout.write(self.style.SUCCESS(f"Demo login: username {DEMO_USERNAME!r}, password {password!r}"))
