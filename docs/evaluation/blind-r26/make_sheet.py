"""How round 26's sheet was made: under load, with and without the retrieved exchange in the prompt, on the
items where the two show different replies.

    PYTHONPATH=. python docs/evaluation/blind-r26/make_sheet.py OUT 400 2626 40

Under load a request gets one generated candidate (`candidates=1`, as at 16 users); the scripted lines that
retrieval found over the threshold join its pool either way. `load` puts the best retrieved exchange into the
prompt (the product), `loadnohit` does not (`prompt_hit=0`). Both sample with the same seeds, so they differ only
where retrieval fired and the generated reply was chosen over the scripted lines. Of the first POOL validation
exchanges (`pick_items`, SEED), the sheet keeps the first COUNT where the two differ, with Sheldon's scripted line.
"""
import os
import sys


def main(out: str, pool: int, seed: int, count: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
    import django

    django.setup()
    from data.corpus import find_transcripts
    from data.pipeline import read_transcripts
    from training.blind import ScriptedSystem, build_system, pick_items, write_sheet

    transcripts = find_transcripts()[0]
    lines = read_transcripts(transcripts)
    items = pick_items(lines, pool, seed)
    specs = {"load": "candidates=1", "loadnohit": "candidates=1,prompt_hit=0"}
    replies = {name: build_system(spec, lines, seed, transcripts=transcripts).replies(items) for name, spec in specs.items()}
    differ = [i for i in range(len(items)) if replies["load"][i] != replies["loadnohit"][i]]
    print(f"{len(differ)} of {len(items)} items show different replies with and without the exchange in the prompt")
    kept = differ[:count]
    chosen = [items[i] for i in kept]
    by_system = {
        "scripted": ScriptedSystem().replies(chosen),
        **{name: [texts[i] for i in kept] for name, texts in replies.items()},
    }
    about = {"specs": {"scripted": "scripted", **specs}, "transcripts": str(transcripts), "pool": pool,
             "differing": len(differ), "made_by": "docs/evaluation/blind-r26/make_sheet.py"}
    write_sheet(out, chosen, by_system, seed, about)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
