"""`manage.py blind_score DIR RATINGS...`: the table of a blind sheet's ratings, one file per rater.

    python manage.py blind_score var/blind/run1 var/blind/run1/rater-a.jsonl var/blind/run1/rater-b.jsonl \
        --output var/blind/run1/scores

prints per system the mean sense, character and fit, the "good" and flagged
rates (each with a 95% bootstrap interval over items) and how far the raters'
means are apart; --against NAME adds each system's difference from NAME, item by
item (a paired comparison: its interval is narrower than the tables' overlap
suggests); --output also writes scores.md, scores.csv and scores.png.
"""

import csv
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from training.blind import BOOTSTRAP_RESAMPLES, MEASURES, BlindError, agreement_lines, score


class Command(BaseCommand):
    help = "Score a blind sheet's ratings (JSON lines, one file per rater) through its hidden key."

    def add_arguments(self, parser):
        parser.add_argument("folder", help="the folder `blind_sheet --output` wrote")
        parser.add_argument("ratings", nargs="+", help="one JSON-lines file per rater (the rater is named by the file)")
        parser.add_argument("--output", help="folder for scores.md, scores.csv and scores.png")
        parser.add_argument(
            "--against", default="", help="a system of the sheet: also print every other's difference from it, item by item"
        )

    def handle(self, **options):
        try:
            rows, table = score(options["folder"], options["ratings"], options["against"])
        except BlindError as error:
            raise CommandError(str(error)) from error
        notes = [
            "",
            f"Means over items (each item's raters averaged first); [95% interval: percentile bootstrap over items, "
            f"{BOOTSTRAP_RESAMPLES} resamples]. good = sense >= 4 and fit >= 4 and not flagged, per rater and item.",
            "Raters' means per system:",
            *agreement_lines(rows),
        ]
        report = "\n".join([table, *notes]) + "\n"
        self.stdout.write(report)
        if options["output"]:
            output = Path(options["output"])
            output.mkdir(parents=True, exist_ok=True)
            (output / "scores.md").write_text(report)
            write_csv(rows, output / "scores.csv")
            plot_scores(rows, output / "scores.png")
            self.stdout.write(self.style.SUCCESS(f"Wrote scores.md, scores.csv and scores.png to {output}."))


def write_csv(rows, path):
    columns = [
        "system",
        "items",
        "raters",
        *(f"{m}{end}" for m in MEASURES for end in ("", "_low", "_high")),
        "rater_gap",
    ]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def plot_scores(rows, path):
    """Each system's means with their 95% intervals: the 1-5 scales, then the rates."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt
    import numpy as np

    figure, (scales, rates) = plt.subplots(1, 2, figsize=(13, 0.6 * len(rows) + 2.5), sharey=True)
    positions = np.arange(len(rows))
    for axis, measures, limits in ((scales, MEASURES[:3], (0.8, 5.2)), (rates, MEASURES[3:], (-0.05, 1.05))):
        for offset, measure in enumerate(measures):
            means = np.array([row[measure] for row in rows])
            errors = np.array(
                [[m - row[f"{measure}_low"], row[f"{measure}_high"] - m] for m, row in zip(means, rows)]
            ).T
            axis.errorbar(means, positions + 0.2 * offset, xerr=errors, fmt="o", capsize=3, label=measure)
        axis.set_xlim(*limits)
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize=8)
        axis.grid(axis="x", alpha=0.3)
    scales.set_yticks(positions + 0.2)
    scales.set_yticklabels([row["system"] for row in rows])
    scales.set_ylim(len(rows) - 0.3, -0.5)
    scales.set_title("mean rating (1-5), 95% interval")
    rates.set_title("rate of good / flagged replies, 95% interval")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
