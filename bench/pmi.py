"""What the pmi part of the ranking costs: seconds per reply for scoring its pool, beside the reply itself.

    .venv/bin/python bench/pmi.py [--replies 16] [--threads 1]

The product's replier (offline profile, int8 on CPU, 4 samples + the scripted lines over the threshold)
answers --replies validation exchanges one at a time, as a lone user's messages are; then each reply's
pool is scored by `inference.likelihood.dialogue_pmi` as the ranking would score it. Prints the median
and range of both and the tokens scored, with the machine's load average (the figures are only as quiet
as the machine was).
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the worker default is 1)")
    parser.add_argument("--seed", type=int, default=97, help="which validation exchanges")
    options = parser.parse_args(argv)

    import django

    django.setup()
    import torch

    from data.corpus import find_transcripts
    from data.pipeline import read_transcripts
    from inference.likelihood import dialogue_pmi
    from inference.replier import RequestState, Turn
    from inference.systems import build_system
    from training.blind import pick_items

    torch.set_num_threads(options.threads)
    transcripts = find_transcripts()[0]
    items = pick_items(read_transcripts(transcripts), options.replies, options.seed)
    replier = build_system("", transcripts).replier()
    tokenizer = replier.backend.tokenizer
    replier.reply([], "Hello.")  # warm: models, index, the persona's cache
    dialogue_pmi(replier.backend, [], "Hello.", ["Hello."])  # warm: the scoring model and its persona cache
    torch.manual_seed(options.seed)
    replying, scoring, tokens = [], [], []
    for item in items:
        history = replier.bounded([Turn("bot" if who == "Sheldon" else "user", text) for who, text in item.context])
        started = time.perf_counter()
        reply = replier.reply_many([RequestState(history, item.line[1])])[0]
        replying.append(time.perf_counter() - started)
        texts = [candidate.text for candidate in reply.candidates]
        started = time.perf_counter()
        dialogue_pmi(replier.backend, history, item.line[1], texts)
        scoring.append(time.perf_counter() - started)
        tokens.append(sum(len(tokenizer(text, add_special_tokens=False).input_ids) for text in texts))

    def summary(values, unit="s"):
        return f"median {statistics.median(values):.2f} {unit} (range {min(values):.2f}-{max(values):.2f})"

    print(f"{len(items)} replies, {options.threads} torch thread(s), load average {os.getloadavg()[0]:.1f}")
    print(f"  the reply (4 samples + scripted, ranked without pmi): {summary(replying)}")
    print(f"  pmi scoring of its pool (the extra per reply):        {summary(scoring)}")
    print(f"  candidates' tokens scored per reply:                  {summary(tokens, 'tokens')}")


if __name__ == "__main__":
    main()
