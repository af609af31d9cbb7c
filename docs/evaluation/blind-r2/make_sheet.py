"""How round 2's sheet was made: one pool of candidates per item, re-ranked with several settings.

    PYTHONPATH=. python docs/evaluation/blind-r2/make_sheet.py OUT 40 4321

Each item's pool is 8 sampled replies plus the scripted lines over the 0.5 threshold (the product's
replier, `inference.systems`); each setting chooses from the same pool, so the systems differ only in
the choice. Kept beside the sheet as the record of how it was made.
"""
import json
import os
import sys


def choose(pool, n_generated, fluency, length, scripted_fluency=-1.5, scripted_bonus=0.0):
    generated = [c for c in pool if c["source"] == "generated"][:n_generated]
    candidates = generated + [c for c in pool if c["source"] == "scripted"]

    def score(c):
        fluent = c["lp"] if c["lp"] is not None else scripted_fluency
        bonus = scripted_bonus if c["source"] == "scripted" else 0.0
        return c["sim"] + fluency * fluent + length * c["len"] + bonus

    allowed = [c for c in candidates if not c["rejected"]] or [c for c in candidates if c["rejected"] != "content"]
    return max(allowed, key=score)["text"] if allowed else ""


VARIANTS = {
    "r4": dict(n_generated=4, fluency=0.1, length=0.03),
    "r8": dict(n_generated=8, fluency=0.1, length=0.03),
    "r8fluent": dict(n_generated=8, fluency=0.3, length=0.03),
    "r8scripted": dict(n_generated=8, fluency=0.1, length=0.03, scripted_bonus=0.1),
}


def main(out, count, seed):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
    import django

    django.setup()
    import torch

    from data.corpus import find_transcripts
    from data.pipeline import read_transcripts
    from inference.replier import RequestState, Turn
    from inference.selection import length_score
    from inference.systems import build_system
    from training.blind import ScriptedSystem, pick_items, write_sheet

    transcripts = find_transcripts()[0]
    items = pick_items(read_transcripts(transcripts), count, seed)
    replier = build_system("candidates=8,scripted=5,threshold=0.5", transcripts).replier()
    torch.manual_seed(seed)
    requests = [
        RequestState([Turn("bot" if speaker == "Sheldon" else "user", text) for speaker, text in item.context], item.line[1])
        for item in items
    ]
    pools = []
    for start in range(0, len(requests), 8):
        for reply in replier.reply_many(requests[start : start + 8], 8):
            pools.append([
                {"text": c.text, "source": c.source, "rejected": c.rejected, "sim": c.scores["selector"],
                 "lp": c.mean_log_probability, "len": length_score(c.text)}
                for c in reply.candidates
            ])
        print(f"{len(pools)}/{len(items)} items", flush=True)
    with open(out + ".pools.json", "w") as file:
        json.dump(pools, file, indent=1)
    replies = {"scripted": ScriptedSystem().replies(items)}
    replies.update({name: [choose(pool, **kw) for pool in pools] for name, kw in VARIANTS.items()})
    write_sheet(out, items, replies, seed, about={"pools": "8 sampled + scripted, threshold 0.5", "variants": VARIANTS})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
