"""Build the retrieval index from the imported exchanges; fast when it is up to date."""
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.loading import ModelNotFoundError
from inference.profiles import active_profile
from inference.retrieval import (
    RetrievalIndexError,
    build_index,
    exchanges_from_database,
    fingerprint,
    read_manifest,
    staleness,
)


class Command(BaseCommand):
    help = "Embed the character's exchanges into the retrieval index at RETRIEVAL_INDEX_PATH (skipped when up to date)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=64, help="texts embedded per batch (default 64)")
        parser.add_argument("--force", action="store_true", help="rebuild even when the index is up to date")

    def handle(self, batch_size: int, force: bool, **options: object) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            retriever_model = active_profile().retriever_model
        except ModelNotFoundError as error:
            raise CommandError(str(error)) from error
        if not retriever_model:
            self.stdout.write("Retrieval is off (RETRIEVER_MODEL=none): there is no index to build.")
            return
        path = settings.RETRIEVAL_INDEX_PATH
        exchanges = exchanges_from_database(settings.SHELDON_CHARACTER)
        reason = staleness(read_manifest(path), retriever_model, fingerprint(exchanges))
        if reason is None and not force:
            self.stdout.write(f"The retrieval index at {path} is up to date ({len(exchanges)} exchanges).")
            return
        self.stdout.write(f"Building the retrieval index at {path}: {reason or 'rebuild asked for'}.")
        started = time.perf_counter()
        try:
            manifest = build_index(path, retriever_model, exchanges, batch_size=batch_size, progress=True)
        except (RetrievalIndexError, ModelNotFoundError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            self.style.SUCCESS(
                f"Indexed {manifest['exchanges']} exchanges with {retriever_model} "
                f"in {time.perf_counter() - started:.1f} s."
            )
        )
