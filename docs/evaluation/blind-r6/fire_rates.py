"""How often retrieval fires on validation turns, per retriever and threshold (round 6's threshold choice).

The items of the five earlier blind sheets (200 validation exchanges) are each searched in the
training-episode index of each retriever; the top hit's selector score is compared with thresholds.
A new retriever's cosines have their own scale: its threshold is re-measured here, not copied.

    python docs/evaluation/blind-r6/fire_rates.py RETRIEVER [RETRIEVER ...]
"""
import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
django.setup()

from django.conf import settings  # noqa: E402

from data.corpus import find_transcripts  # noqa: E402
from inference.systems import training_index  # noqa: E402
from training.blind import read_items  # noqa: E402

ROUNDS = Path(__file__).resolve().parent.parent
THRESHOLDS = [round(0.30 + 0.05 * i, 2) for i in range(11)]


def top_scores(retriever: str, items: list) -> list[float]:
    index = training_index(retriever, find_transcripts()[0])
    dialogues = [[text for _, text in item.context][-settings.HISTORY_TURNS :] for item in items]
    messages = [item.line[1] for item in items]
    return [hits[0].score for hits in index.search_many(dialogues, messages, k=1)]


def main() -> None:
    items = [item for n in range(1, 6) for item, _ in read_items(ROUNDS / f"blind-r{n}")]
    print(f"{len(items)} validation items; share whose top hit scores at least the threshold")
    print("| retriever | " + " | ".join(f"{t:.2f}" for t in THRESHOLDS) + " |")
    print("|---" * (len(THRESHOLDS) + 1) + "|")
    for retriever in sys.argv[1:]:
        scores = top_scores(retriever, items)
        shares = [sum(score >= t for score in scores) / len(scores) for t in THRESHOLDS]
        print(f"| {Path(retriever).name} | " + " | ".join(f"{share:.2f}" for share in shares) + " |")


if __name__ == "__main__":
    main()
