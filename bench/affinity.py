"""Conversation affinity on and off, side by side, with two workers and multi-turn conversations.

Each round starts the stack (one daphne, two workers) once with
WORKER_AFFINITY on and once off (the order alternates between rounds), warms
both workers up, and drives --users users through bench/load.py, each in a
conversation of --messages turns. For each run it prints the prompt tokens the
workers computed per reply and the share their prefix caches could take from
sequences they computed before (counted in the workers by bench/worker_app.py:
OpenVINO does not report its hits), how many later turns were
answered by the worker of the turn before, and the reply time p50/p95; then
the median [range] of each over the rounds:

    python bench/affinity.py --users 8 --messages 4 --repeat 3 [--without-retrieval]

A retrieved exchange sits in the prompt before the history, so a turn that
retrieves another one than the turn before shares only the persona with it;
--without-retrieval (RETRIEVER_MODEL=none) shows what affinity gives when the
prompt's start stays.

Needs DATABASE_URL (PostgreSQL, bootstrapped) and REDIS_URL, like bench/run.py.
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.run import REPO, bench_env, load, running, stack_commands, wait_for_workers, warm_up  # noqa: E402

MODES = {"on": "true", "off": "false"}
# The workers' tally of prompt tokens and of those their prefix caches can skip (bench/worker_app.py).
TALLY_KEY = "bench:prefix-tally"


def same_worker_share(result_path):
    """Of the turns after a conversation's first, the share answered by the worker of the turn before."""
    from chat.models import Message

    ids = [outcome["message_id"] for outcome in json.loads(result_path.read_text())["outcomes"] if outcome["message_id"]]
    previous, same, later = {}, 0, 0
    for conversation, worker in Message.objects.filter(pk__in=ids).order_by("pk").values_list("conversation", "worker"):
        if conversation in previous:
            later += 1
            same += worker == previous[conversation]
        previous[conversation] = worker
    return same / later if later else None


def run_once(args, env, mode, out_dir):
    """One stack with affinity `mode`: warm-up, then the measured conversations."""
    run_env = {**env, "WORKER_AFFINITY": MODES[mode], **({"RETRIEVER_MODEL": "none"} if args.without_retrieval else {})}
    tally = redis.Redis.from_url(env["REDIS_URL"])
    commands = stack_commands(2, [args.web_port], args.concurrency, app="bench.worker_app")
    with running(commands, run_env, [args.web_port], out_dir):
        wait_for_workers(run_env, 2)
        url = f"http://127.0.0.1:{args.web_port}"
        warm_up("stack", [url], users=2)
        tally.delete(TALLY_KEY)
        label = f"affinity-{mode}"
        summary = load("stack", [url], args.users, args.messages, out_dir, label)
        counts = {key.decode(): int(value) for key, value in tally.hgetall(TALLY_KEY).items()}
    replies = summary["replies"] or 1
    return {
        "mode": mode,
        "replies": summary["replies"],
        "errors": summary["errors"],
        "prompt_tokens_per_reply": counts.get("prompt_tokens", 0) / replies,
        "computed_tokens_per_reply": (counts.get("prompt_tokens", 0) - counts.get("reused_tokens", 0)) / replies,
        "reused_share": counts.get("reused_tokens", 0) / max(1, counts.get("prompt_tokens", 0)),
        "same_worker_share": same_worker_share(out_dir / f"{label}-{args.users}u.json"),
        "reply_p50_s": summary["reply_p50_s"],
        "reply_p95_s": summary["reply_p95_s"],
        "first_token_p50_s": summary["first_token_p50_s"],
        "replies_per_minute": summary["replies_per_minute"],
    }


COLUMNS = [
    ("computed_tokens_per_reply", "prompt tokens computed / reply", "{:.0f}"),
    ("reused_share", "share of prompt tokens reusable", "{:.0%}"),
    ("same_worker_share", "later turns on the previous turn's worker", "{:.0%}"),
    ("reply_p50_s", "reply p50 s", "{:.2f}"),
    ("reply_p95_s", "reply p95 s", "{:.2f}"),
    ("replies_per_minute", "replies/min", "{:.1f}"),
]


def table(results):
    """Median [range] over the rounds, one row per mode."""
    lines = ["| affinity | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for mode in MODES:
        runs = [result for result in results if result["mode"] == mode]
        cells = []
        for key, _, form in COLUMNS:
            values = [run[key] for run in runs if run[key] is not None]
            if not values:
                cells.append("-")
                continue
            low, mid, high = (form.format(v) for v in (min(values), statistics.median(values), max(values)))
            cells.append(f"{mid} [{low}-{high}]")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    errors = sum(result["errors"] for result in results)
    return "\n".join(lines) + f"\n\n{len(results)} runs, {errors} failed replies.\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--messages", type=int, default=4, help="turns per conversation")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--without-retrieval", action="store_true", help="no retrieved exchange in the prompts")
    parser.add_argument("--concurrency", type=int, default=32, help="task threads per worker")
    parser.add_argument("--web-port", type=int, default=8320)
    parser.add_argument(
        "--output-dir", type=Path, default=REPO / "bench" / "results" / time.strftime("affinity-%Y%m%d-%H%M%S")
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    env = bench_env(args)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
    django.setup()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for round_ in range(args.repeat):
        # Alternating the order: neither mode always runs on the warmer machine.
        for mode in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
            out_dir = args.output_dir / f"round-{round_ + 1}-{mode}"
            out_dir.mkdir()
            result = run_once(args, env, mode, out_dir)
            results.append(result)
            print(f"round {round_ + 1}, affinity {mode}: {json.dumps(result)}", flush=True)
    (args.output_dir / "results.json").write_text(json.dumps(results, indent=2))
    report = table(results)
    (args.output_dir / "results.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
