"""A terminal conversation with Sheldon, streaming each reply as it is generated."""
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.loading import ModelNotFoundError
from inference.replier import Turn, get_replier
from inference.retrieval import RetrievalIndexError

QUIT = {"/quit", "/exit"}


class Command(BaseCommand):
    help = "Chat with Sheldon in the terminal (an empty line, /quit or Ctrl-D ends it)."
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--show-retrieval", action="store_true", help="print the retrieved scripted line")

    def handle(self, show_retrieval: bool, **options: object) -> None:
        stdin = options.get("stdin") or sys.stdin
        self.stdout.write("Loading the models...")
        try:
            replier = get_replier()
        except (ModelNotFoundError, RetrievalIndexError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Profile {replier.profile.name}: generator {replier.profile.generator_model}")
        history = []
        while True:
            self.stdout.write("You: ", ending="")
            self.stdout.flush()
            line = stdin.readline()
            message = line.strip()
            if not message or message in QUIT:
                if not line:  # Ctrl-D leaves the cursor after "You: "
                    self.stdout.write("")
                self.stdout.write("Sheldon: Goodbye.")
                return
            self.stdout.write("Sheldon: ", ending="")
            reply = replier.reply(history, message, on_piece=self._stream)
            self.stdout.write("")
            if show_retrieval:
                hit = reply.retrieved
                self.stdout.write(
                    f"  [retrieved {hit.score:.3f} from {hit.episode}: {hit.text}]" if hit else "  [nothing retrieved]"
                )
            history += [Turn("user", message), Turn("bot", reply.text)]

    def _stream(self, piece: str) -> None:
        self.stdout.write(piece, ending="")
        self.stdout.flush()
