"""The paired comparison of rounds taken together: their items pooled (an item keyed by its round), the
same statistics as `blind_score --against` (mean difference with a bootstrap interval, items up and down,
sign test).

    python docs/evaluation/blind-r24/pooled.py default docs/evaluation/blind-r22 docs/evaluation/blind-r23 ...
"""
import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
django.setup()

from training.blind import format_paired, judgements, paired, read_key, read_ratings  # noqa: E402


def main() -> None:
    baseline, folders = sys.argv[1], [Path(folder) for folder in sys.argv[2:]]
    pooled = {"seed": 0, "systems": [], "items": {}}
    found = []
    for folder in folders:
        key = read_key(folder)
        pooled["systems"] += [system for system in key["systems"] if system not in pooled["systems"]]
        renamed = {f"{folder.name}:{item}": value for item, value in key["items"].items()}
        pooled["items"].update(renamed)
        ratings = {path.name: read_ratings(path, key) for path in sorted(folder.glob("ratings-*.jsonl"))}
        prefixed = {
            rater: {f"{folder.name}:{item}": labels for item, labels in by_item.items()}
            for rater, by_item in ratings.items()
        }
        found += judgements(pooled, prefixed)
    print(f"{len(pooled['items'])} items of {', '.join(folder.name for folder in folders)}, against {baseline}:\n")
    print(format_paired(paired(pooled, found, baseline)))


if __name__ == "__main__":
    main()
