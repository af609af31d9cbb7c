"""Round 4's automatic guards: how the pmi weight was picked, on validation exchanges outside the sheet.

    PYTHONPATH=. python docs/evaluation/blind-r4/guards.py hits OUT.json [N]    # Hits@1 of 10
    PYTHONPATH=. python docs/evaluation/blind-r4/guards.py pools OUT.json [N]   # the product's pools, re-ranked
    PYTHONPATH=. python docs/evaluation/blind-r4/guards.py report OUT.json      # hits' table again

guard-hits.json and guard-pools.json beside it are the runs of round 4 (`hits ... 100`, `pools ... 40`).

`hits`: N validation exchanges (none of the sheet's); each one's true line against 9 true lines of the
others, ranked by the selector alone, the pmi alone, and the selector with each pmi weight (plus the
length part; a scripted line's fluency is a constant). Hits@1 of 10 is the share where his true line
comes first (chance 0.10).

`pools`: N validation exchanges picked like a sheet's (another seed, none of the sheet's) answered by
the product's replier (4 samples + the scripted lines over 0.5, temperature 0.4); every candidate's
parts are kept (OUT.json) and the pool is re-chosen by `inference.selection.choose` with each pmi
weight. Printed per weight: how often the choice moved, the share of scripted lines, mean words,
style P(char), relevance (the reply against the whole dialogue, MiniLM), similarity and ROUGE-L to
the true line, distinct-2, and "echo" (the share of the reply's words that are in the last line).
Kept beside the sheet as the record of how the weight was chosen.
"""
import json
import os
import random
import sys
import time

BLIND_SEED, BLIND_EXCHANGES = 2468, 40  # the sheet's exchanges, left out here
POOLS_SEED = 97
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
LENGTH_WEIGHT = 0.03


def setup():
    from data.corpus import find_transcripts
    from data.pipeline import read_transcripts
    from training.blind import pick_items

    transcripts = find_transcripts()[0]
    lines = read_transcripts(transcripts)
    blind = {(item.episode, item.line[1], item.answer) for item in pick_items(lines, BLIND_EXCHANGES, BLIND_SEED)}
    return transcripts, lines, blind


def requests_of(items):
    from inference.replier import RequestState, Turn

    return [
        RequestState([Turn("bot" if speaker == "Sheldon" else "user", text) for speaker, text in item.context], item.line[1])
        for item in items
    ]


def hits(out, count):
    from inference.likelihood import log_likelihoods, persona_prompt
    from inference.selection import length_score
    from inference.systems import build_system
    from training.blind import pick_items

    transcripts, lines, blind = setup()
    items = [i for i in pick_items(lines, count + BLIND_EXCHANGES, 11) if (i.episode, i.line[1], i.answer) not in blind]
    items = items[:count]
    replier = build_system("", transcripts).replier()
    backend = replier.backend
    rng = random.Random(11)
    rows, started = [], time.perf_counter()
    requests = requests_of(items)
    queries = replier.index.queries(
        [[t.text for t in replier.bounded(r.history)] for r in requests], [r.message for r in requests]
    )
    answers = sorted({item.answer for item in items})
    alone = dict(zip(answers, log_likelihoods(backend, [persona_prompt(backend.tokenizer)] * len(answers), answers)))
    for number, (item, request, query) in enumerate(zip(items, requests, queries, strict=True)):
        others = rng.sample([answer for answer in answers if answer != item.answer], 9)
        texts = [item.answer, *others]
        dialogue = backend.prompt(replier.bounded(request.history), request.message, None)
        given = log_likelihoods(backend, [dialogue] * len(texts), texts)
        rows.append({
            "selector": [float(s) for s in replier.index.similarities(query, texts)],
            "given": given,
            "alone": [alone[text] for text in texts],
            "length": [length_score(t) for t in texts],
        })
        if number % 20 == 19:
            print(f"{number + 1}/{len(items)} exchanges, {time.perf_counter() - started:.0f} s", flush=True)
    with open(out, "w") as file:
        json.dump({"exchanges": len(rows), "rows": rows}, file, indent=1)
    report_hits(rows)


def report_hits(rows):
    def hit_rate(score):
        return sum(max(range(10), key=lambda k: score(row, k)) == 0 for row in rows) / len(rows)

    def pmi(row, k, discount=1.0):
        return row["given"][k] - discount * row["alone"][k]

    table = {
        "selector alone": hit_rate(lambda row, k: row["selector"][k]),
        "selector + length": hit_rate(lambda row, k: row["selector"][k] + LENGTH_WEIGHT * row["length"][k]),
        "log p(line | dialogue) alone": hit_rate(lambda row, k: row["given"][k]),
    }
    for discount in (0.5, 0.75, 1.0):
        table[f"pmi alone (discount {discount})"] = hit_rate(lambda row, k, d=discount: pmi(row, k, d))
    for weight in WEIGHTS[1:]:
        table[f"selector + length + pmi x {weight}"] = hit_rate(
            lambda row, k, w=weight: row["selector"][k] + LENGTH_WEIGHT * row["length"][k] + w * pmi(row, k)
        )
    print(f"Hits@1 of 10 over {len(rows)} validation exchanges (chance 0.10):")
    for name, value in table.items():
        print(f"  {name:40s} {value:.3f}")


def pools(out, count):
    import numpy as np

    from inference.selection import Candidate, RankWeights, choose
    from inference.systems import build_system
    from training.blind import pick_items
    from training.metrics import distinct_n, rouge_l, words
    from training.style import StyleScorer

    transcripts, lines, blind = setup()
    items = [i for i in pick_items(lines, count + BLIND_EXCHANGES, POOLS_SEED) if (i.episode, i.line[1], i.answer) not in blind]
    items = items[:count]
    system = build_system("pmi=1", transcripts)
    replier = system.replier()
    import torch

    torch.manual_seed(POOLS_SEED)
    requests = requests_of(items)
    found, started = [], time.perf_counter()
    for start in range(0, len(requests), 8):
        for request, reply in zip(requests[start : start + 8], replier.reply_many(requests[start : start + 8]), strict=True):
            found.append({
                "message": request.message,
                "candidates": [
                    {"text": c.text, "source": c.source, "lp": c.mean_log_probability,
                     "selector": c.scores["selector"], "pmi": c.scores["pmi"], "rejected": c.rejected}
                    for c in reply.candidates
                ],
            })
        print(f"{len(found)}/{len(items)} items, {time.perf_counter() - started:.0f} s", flush=True)
    with open(out, "w") as file:
        json.dump(found, file, indent=1)

    from data.pipeline import episode_names, split_episodes

    train, _ = split_episodes(episode_names(lines), seed=42)
    from django.conf import settings

    style = StyleScorer.cached([line for line in lines if line.episode in train], "Sheldon", settings.VAR_DIR / "evaluation" / "cache")
    from inference.retrieval import embed_texts

    def embed(texts):
        return embed_texts(replier.index.retriever, texts)

    dialogues = embed([" ".join([*(text for _, text in item.context), item.line[1]]) for item in items])
    answers = embed([item.answer for item in items])
    chosen_by_weight = {}
    for weight in WEIGHTS:
        chosen = []
        for pool in found:
            candidates = [
                Candidate(c["text"], c["source"], c["lp"]) for c in pool["candidates"]
            ]
            picked = choose(
                candidates, [c["selector"] for c in pool["candidates"]], pool["message"],
                RankWeights(pmi=weight), [c["pmi"] for c in pool["candidates"]],
            )
            chosen.append((picked.text, picked.source))
        chosen_by_weight[weight] = chosen
    base = [text for text, _ in chosen_by_weight[0.0]]
    print(f"\n{len(items)} validation exchanges (seed {POOLS_SEED}), the product's pools re-chosen:")
    print("| pmi weight | moved | scripted | mean words | style | relevance | sim. to answer | ROUGE-L | distinct-2 | echo |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for weight, chosen in chosen_by_weight.items():
        texts = [text for text, _ in chosen]
        vectors = embed(texts)
        echo = [
            len(set(words(text)) & set(words(item.line[1]))) / max(1, len(set(words(text))))
            for text, item in zip(texts, items, strict=True)
        ]
        print(
            f"| {weight} | {sum(a != b for a, b in zip(texts, base, strict=True))} "
            f"| {sum(source == 'scripted' for _, source in chosen) / len(chosen):.2f} "
            f"| {np.mean([len(t.split()) for t in texts]):.1f} | {np.mean(style.probabilities(texts)):.3f} "
            f"| {np.mean(np.sum(vectors * dialogues, axis=1)):.3f} | {np.mean(np.sum(vectors * answers, axis=1)):.3f} "
            f"| {np.mean([rouge_l(t, item.answer) for t, item in zip(texts, items, strict=True)]):.3f} "
            f"| {distinct_n(texts, 2):.3f} | {np.mean(echo):.3f} |"
        )


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
    import django

    django.setup()
    if sys.argv[1] == "report":
        with open(sys.argv[2]) as file:
            report_hits(json.load(file)["rows"])
    else:
        {"hits": hits, "pools": pools}[sys.argv[1]](sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 40)
