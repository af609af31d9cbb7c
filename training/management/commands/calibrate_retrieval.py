"""python manage.py calibrate_retrieval DIR RATINGS [RATINGS ...] --system NAME

Reads a rated blind sheet in which the system NAME answered every item with the
best scripted line retrieval found (e.g. `--system retrieved=candidates=0` in
blind_sheet), and prints how often retrieval would fire and how often its line
is rated relevant (mean fit >= 3) at a range of thresholds, then the lowest
threshold that keeps `--min-precision`: the value for RETRIEVAL_THRESHOLD with
that retriever.
"""
from django.core.management.base import BaseCommand, CommandError

from inference.loading import ModelNotFoundError, read_retriever
from inference.profiles import active_profile
from training.blind import BlindError
from training.calibration import calibrate, precision_table, rated_retrievals


class Command(BaseCommand):
    help = "Calibrate the retrieval threshold against the blind fit ratings of retrieved scripted lines."

    def add_arguments(self, parser):
        parser.add_argument("folder", help="the blind sheet's folder (blind_sheet --output)")
        parser.add_argument("ratings", nargs="+", help="one ratings file per rater (JSONL, as the rubric asks)")
        parser.add_argument("--system", required=True, help="the sheet's system that answered with retrieved lines")
        parser.add_argument("--retriever", default="", help="the retriever that scored them (default: the profile's)")
        parser.add_argument("--min-precision", type=float, default=0.7, help="share rated relevant when it fires")

    def handle(self, **options):
        retriever_name = options["retriever"] or active_profile().retriever_model
        if not retriever_name:
            raise CommandError("Retrieval is off (RETRIEVER_MODEL=none): name a retriever with --retriever.")
        try:
            retriever = read_retriever(retriever_name)
            scores, fits = rated_retrievals(options["folder"], options["ratings"], options["system"], retriever)
        except (BlindError, ModelNotFoundError, ValueError, OSError) as error:
            raise CommandError(str(error)) from error
        thresholds = sorted({round(t, 2) for t in (min(scores), *[x / 100 for x in range(30, 95, 5)])})
        self.stdout.write(precision_table(scores, fits, thresholds))
        calibration = calibrate(scores, fits, options["min_precision"])
        if calibration.threshold is None:
            self.stdout.write(
                f"No threshold keeps {options['min_precision']:.0%} of the retrieved lines relevant "
                f"over {calibration.items} rated items: retrieval should not fire on this retriever's scores alone."
            )
        else:
            self.stdout.write(self.style.SUCCESS(
                f"RETRIEVAL_THRESHOLD={calibration.threshold} for {retriever_name}: fires on "
                f"{calibration.fire_rate:.0%} of {calibration.items} items, relevant {calibration.precision:.0%} of the time."
            ))
