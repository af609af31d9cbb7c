"""How round 27's sheet was made: short lines to answer, the echo rule before and after, in one sheet.

    # in a worktree of f8f1409 (the rule before), then in the tree with the new rule:
    python manage.py blind_sheet --system scripted=scripted --system other=other --system default=candidates=4 \
        --system one=candidates=1 --system noscripted=candidates=4,scripted=0 \
        --exchanges 40 --max-line-words 3 --seed 2701 --output BEFORE      # (AFTER: the three generated ones)
    PYTHONPATH=. python docs/evaluation/blind-r27/make_sheet.py BEFORE AFTER docs/evaluation/blind-r27

The two runs answer the same 40 items (same seed); this puts each system's replies of both runs into one sheet,
as NAME-before and NAME-after, so that identical replies show once and raters see every difference side by side.
"""
import json
import os
import sys


def replies_by_system(folder: str) -> tuple[list[dict], dict[str, dict[int, str]]]:
    """(items, {system: {item id: text}}) of a sheet's folder, read through its hidden key."""
    with open(f"{folder}/key.json") as key_file, open(f"{folder}/items.json") as items_file:
        key, items = json.load(key_file), json.load(items_file)
    found = {}
    for item in items:
        for label, text in item["candidates"].items():
            for system in key["items"][str(item["id"])]["labels"][label]:
                found.setdefault(system, {})[item["id"]] = text
    return items, found


def main(before_folder: str, after_folder: str, out: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
    import django

    django.setup()
    from training.blind import Item, write_sheet

    items, before = replies_by_system(before_folder)
    after_items, after = replies_by_system(after_folder)
    assert [item["line"] for item in items] == [item["line"] for item in after_items], "not the same items"
    ids = [item["id"] for item in items]
    systems = {"scripted": before.pop("scripted"), "other": before.pop("other")}
    for name in ("one", "noscripted", "default"):  # this order: the sheet's shuffle starts from it
        systems[f"{name}-before"], systems[f"{name}-after"] = before[name], after[name]
    about = {
        "specs": {"default-*": "candidates=4", "one-*": "candidates=1", "noscripted-*": "candidates=4,scripted=0"},
        "before": "f8f1409: a reply that starts as the message does, one word or more, is blanked",
        "after": "ECHO_WORDS=3; a short echo alone is kept; the least bad candidate is never an empty one",
        "made_by": "docs/evaluation/blind-r27/make_sheet.py",
    }
    write_sheet(out, [Item.from_dict(item) for item in items], {n: [t[i] for i in ids] for n, t in systems.items()},
                2701, about)


if __name__ == "__main__":
    main(*sys.argv[1:4])
