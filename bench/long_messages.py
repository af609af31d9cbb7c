"""What a long message costs the batching engine, with the real offline model.

Prints, for one worker's engine: a normal reply alone; a reply to a
2,000-character message of dense tokens (cut to CHAT_MAX_MESSAGE_TOKENS as
the task cuts it); and the first piece of a normal reply submitted right
after eight dense ones (one user's flood), against the same reply alone:

    python bench/long_messages.py [--runs 3]

Retrieval is off (no index needed); everything else is the product's default.
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
os.environ.setdefault("RETRIEVER_MODEL", "none")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from inference.backends import cut_to_tokens  # noqa: E402
from inference.batching import get_engine  # noqa: E402
from inference.replier import get_replier  # noqa: E402

NORMAL = "Sheldon, what do you think about trains?"
DENSE = "".join(chr(0x4E00 + n * 7 % 20000) for n in range(2000))


def timed(engine, message):
    """(first piece s, whole reply s) of one reply submitted now."""
    started, first = time.monotonic(), []

    def on_piece(piece):
        if not first:
            first.append(time.monotonic() - started)

    future = engine.submit(history=[], message=message, on_piece=on_piece, should_stop=lambda: False)
    return future, started, first


def wait(future, started, first):
    future.result()
    return (first[0] if first else float("nan")), time.monotonic() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    engine = get_engine()
    tokenizer = get_replier().backend.tokenizer
    dense, dense_tokens = cut_to_tokens(tokenizer, DENSE, settings.CHAT_MAX_MESSAGE_TOKENS)
    wait(*timed(engine, NORMAL))  # warm up

    normal, long_, alone_first, flooded_first = [], [], [], []
    for _ in range(args.runs):
        normal.append(wait(*timed(engine, NORMAL)))
        long_.append(wait(*timed(engine, dense)))
        alone_first.append(normal[-1][0])
        flood = [timed(engine, dense) for _ in range(8)]
        other = timed(engine, NORMAL)
        flooded_first.append(wait(*other)[0])
        for reply in flood:
            wait(*reply)

    def median(values, index):
        return statistics.median(value[index] for value in values)

    print(f"dense message: {len(DENSE)} characters, {dense_tokens} tokens, cut to {settings.CHAT_MAX_MESSAGE_TOKENS}")
    print(f"normal reply: first piece {median(normal, 0):.2f} s, whole {median(normal, 1):.2f} s")
    ratio = median(long_, 1) / median(normal, 1)
    print(f"dense reply:  first piece {median(long_, 0):.2f} s, whole {median(long_, 1):.2f} s ({ratio:.2f}x a normal one)")
    first_alone, first_flooded = statistics.median(alone_first), statistics.median(flooded_first)
    print(
        f"another user's first piece: alone {first_alone:.2f} s, after 8 dense messages {first_flooded:.2f} s "
        f"({first_flooded / first_alone:.2f}x)"
    )


if __name__ == "__main__":
    main()
