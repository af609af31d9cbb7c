"""Rounds 20 and 21: the retrieved exchange after the conversation instead of before it.

The chat prompt is the persona, the retrieved exchange, the history, then the message. A conversation's next
turn retrieves another exchange, so its prompt differs right after the persona and the engine's prefix cache
reuses nothing of the history. `hitlast` puts the exchange after the history, just before the message, so
that the next turn's prompt starts as this one's (with a window that drops turns in steps, not rated here:
the items show at most 5 earlier lines). Each sheet: 40 new validation exchanges (none rated in an earlier
round) whose prompt holds an exchange (on the others the two layouts are the same prompt), the default
against `hitlast`, sampled with the same seed in the same batches. Rated a little lower in both rounds, it
was not shipped (docs/evaluation.md, rounds 20 and 21).

    python docs/evaluation/blind-r20/make_sheet.py                                  # round 20
    python docs/evaluation/blind-r20/make_sheet.py docs/evaluation/blind-r21 3333   # round 21
"""
import os
import sys
from dataclasses import replace
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
django.setup()

from data.corpus import find_transcripts  # noqa: E402
from data.pipeline import read_transcripts  # noqa: E402
from inference.prompts import persona_messages  # noqa: E402
from inference.systems import build_system  # noqa: E402
from training.blind import pick_items, read_items, write_sheet  # noqa: E402

HERE = Path(__file__).resolve().parent
FOLDER, SEED = (Path(sys.argv[1]).resolve(), int(sys.argv[2])) if len(sys.argv) > 2 else (HERE, 2222)
EXCHANGES = 40


def hit_last_prompt(tokenizer):
    """The layout rated: the history, then the exchange, then the message."""

    def prompt(history, message, hit):
        turns = [("user" if turn.role == "user" else "assistant", turn.text) for turn in history]
        if hit:
            turns += [("user", hit.question), ("assistant", hit.text)]
        turns.append(("user", message))
        return tokenizer.apply_chat_template(persona_messages(turns), tokenize=False, add_generation_prompt=True)

    return prompt


def main() -> None:
    rated = {
        (item.episode, item.line[1], item.answer)
        for folder in HERE.parent.glob("blind-r*")
        if (folder / "items.json").exists()
        and int(folder.name.removeprefix("blind-r")) < int(FOLDER.name.removeprefix("blind-r"))
        for item, _ in read_items(folder)
    }
    lines = read_transcripts(find_transcripts()[0])
    fresh = [item for item in pick_items(lines, 800, SEED) if (item.episode, item.line[1], item.answer) not in rated]
    default = build_system("candidates=4")
    prepared = default.replier().prepare(default._requests(fresh))
    items = [item for item, request in zip(fresh, prepared) if request.hit is not None][:EXCHANGES]
    items = [replace(item, id=number) for number, item in enumerate(items, start=1)]
    print(f"{len(fresh)} fresh items, {sum(r.hit is not None for r in prepared)} with an exchange in the prompt; "
          f"{len(items)} on the sheet")

    hitlast = build_system("candidates=4")
    backend = hitlast.replier().backend
    backend.prompt = hit_last_prompt(backend.tokenizer)
    replies = {  # in the order the sheets were first written in, so that they are written again the same
        "scripted": [item.answer for item in items],
        "hitlast": hitlast.replies(items),
        "default": default.replies(items),
    }
    moved = sum(a != b for a, b in zip(replies["default"], replies["hitlast"]))
    print(f"the two layouts' replies differ on {moved} of {len(items)}")
    write_sheet(FOLDER, items, replies, SEED, {"specs": {
        "scripted": "scripted",
        "hitlast": "candidates=4 with the retrieved exchange after the history, just before the message "
                   "(blind-r20/make_sheet.py)",
        "default": "candidates=4 (the product's layout: the exchange right after the persona, before the history)",
    }})


if __name__ == "__main__":
    main()
