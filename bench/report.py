"""The benchmark's Markdown table and latency chart."""
import matplotlib

from bench.cpu import ROLES
from bench.host import describe_cpu

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def side(summary):
    if summary["target"] == "reference":
        return "reference (gunicorn, 2 gevent workers)"
    return f"stack ({summary['workers']} worker{'s' if summary['workers'] > 1 else ''}, {summary['web_processes']} web)"


def fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(results, args):
    lines = [
        f"Load benchmark: {args.messages} messages per user, at most {args.max_new_tokens} new tokens, "
        f"seed {args.seed}, {args.cores} cores.",
        f"Machine: {describe_cpu()}.",
        "",
        "| side | users | replies | errors | first token p50 / p95 / max (s) | reply p50 / p95 / max (s) "
        "| replies/min | tokens/s, all | tokens/s, one reply (p50) | tokens/s, stream after first token (p50) "
        "| worker peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {side(r)} | {r['users']} | {r['replies']} | {r['errors'] + r['duplicated_replies']} "
            f"| {fmt(r['first_token_p50_s'])} / {fmt(r['first_token_p95_s'])} / {fmt(r['first_token_max_s'])} "
            f"| {fmt(r['reply_p50_s'])} / {fmt(r['reply_p95_s'])} / {fmt(r['reply_max_s'])} "
            f"| {fmt(r['replies_per_minute'], 1)} | {fmt(r['tokens_per_second'], 1)} "
            f"| {fmt(r['reply_tokens_per_second_p50'], 1)} | {fmt(r['stream_tokens_per_second_p50'], 1)} "
            f"| {', '.join(map(str, r['worker_peak_mib']))} |"
        )
    reference = {r["users"]: r for r in results if r["target"] == "reference"}
    stack = [r for r in results if r["target"] == "stack" and r["users"] in reference]
    if stack:
        lines += [
            "",
            "| users | stack | replies/min, stack / reference | p95 reply time, reference / stack |",
            "|---|---|---|---|",
        ]
        for r in sorted(stack, key=lambda r: (r["users"], r["workers"])):
            ref = reference[r["users"]]
            throughput = r["replies_per_minute"] / ref["replies_per_minute"] if ref["replies_per_minute"] else None
            latency = ref["reply_p95_s"] / r["reply_p95_s"] if r["reply_p95_s"] and ref["reply_p95_s"] else None
            lines.append(f"| {r['users']} | {side(r)} | {fmt(throughput)}x | {fmt(latency)}x |")
    return "\n".join(lines + cpu_table(results)) + "\n"


def cpu_table(results):
    """Where the machine's CPU went while each row's clock ran: busy share, and CPU seconds per reply by role."""
    rows = [r for r in results if r.get("cpu_s") and r["replies"]]
    if not rows:
        return []
    lines = [
        "",
        "CPU seconds per reply, by role (busy: the share of the machine's cores' time in use while the clock ran):",
        "",
        f"| side | users | busy | {' | '.join(ROLES)} |",
        f"|---|---|---|{'---|' * len(ROLES)}",
    ]
    for r in rows:
        busy = r["cpu_busy_share"]
        per_reply = " | ".join(fmt(r["cpu_s"].get(role, 0.0) / r["replies"], 3) for role in ROLES)
        lines.append(f"| {side(r)} | {r['users']} | {busy:.0%} | {per_reply} |")
    return lines


def plot_latency(results, path):
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(side(r) for r in results):
        rows = sorted((r for r in results if side(r) == name), key=lambda r: r["users"])
        users = [r["users"] for r in rows]
        left.plot(users, [r["reply_p95_s"] for r in rows], marker="o", label=f"{name} p95")
        left.plot(users, [r["first_token_p95_s"] for r in rows], marker="x", linestyle="--", label=f"{name} first token p95")
        right.plot(users, [r["replies_per_minute"] for r in rows], marker="o", label=name)
    left.set(xscale="log", xlabel="concurrent users", ylabel="seconds", title="Latency")
    right.set(xscale="log", xlabel="concurrent users", ylabel="replies per minute", title="Throughput")
    for axis in (left, right):
        axis.set_xticks(sorted({r["users"] for r in results}), labels=[str(u) for u in sorted({r["users"] for r in results})])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
