"""The README's command on each kind of machine, run by run: 16 users' replies a minute, stack and reference.

Reads the `with-reference-N.md` reports that `bench/run.py` wrote into docs/bench/<day>/ and draws one panel
per machine, each run a pair of bars with its ratio above, so the spread between runs shows beside the medians:

    .venv/bin/python bench/machines.py --output docs/bench/machines.png
"""
import argparse
import math
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.report import side  # noqa: E402

# Which folder holds which machine's runs of the README's command (each folder's README.md describes it).
MACHINES = {
    "AMD EPYC, AVX2\n2026-12-01 (ninth)": "2026-12-01-amd",
    "AMD EPYC, AVX2, slower day\n2026-12-01 (tenth)": "2026-12-01-tenth",
    "Intel Xeon, AVX-512\n2026-12-01 (candidates)": "2026-12-01-candidates",
    "Intel Xeon, AMX\n2026-12-01 (eleventh)": "2026-12-01-eleventh",
    "Intel Xeon, AVX-512 BF16\n2026-12-02 (twelfth)": "2026-12-02-twelfth",
    "AMD EPYC, AVX-512 (Zen 5)\n2026-12-02 (fourteenth)": "2026-12-02-fourteenth",
    "Intel Xeon, AMX, again\n2026-12-02 (fifteenth)": "2026-12-02-fifteenth",
    "AMD EPYC, AVX2, slow day\n2026-12-03 (eighteenth)": "2026-12-03-eighteenth",
    "AMD EPYC, AVX-512 (Zen 4)\n2026-12-03 (twentieth)": "2026-12-03-twentieth",
}
# The rows of the command's layout, named as bench/report.py names them in the table it writes.
STACK = side({"target": "stack", "workers": 1, "web_processes": 2})
REFERENCE = side({"target": "reference"})


def replies_per_minute(report: Path) -> tuple[float, float]:
    """(stack, reference) replies a minute at 16 users in one report (the first table, bench/report.py's)."""
    first_table = report.read_text().split("\n\n")[1]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in first_table.splitlines()]
    column = rows[0].index("replies/min")
    found = {row[0]: float(row[column]) for row in rows if row[0] in (STACK, REFERENCE) and row[1] == "16"}
    return found[STACK], found[REFERENCE]


def run_number(report: Path) -> int:
    """N of `with-reference-N.md`: runs in the order they ran (run 10 after run 9, not after run 1)."""
    return int(report.stem.rsplit("-", 1)[1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench-dir", type=Path, default=REPO / "docs" / "bench")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "bench" / "machines.png")
    args = parser.parse_args(argv)

    # Four panels a row: one long row of every machine grows too wide to read.
    columns = min(4, len(MACHINES))
    rows = math.ceil(len(MACHINES) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(4 * columns, 4.2 * rows), sharey=True, squeeze=False)
    axes = list(grid.flat)
    for axis in axes[len(MACHINES):]:
        axis.set_visible(False)
    for axis, (machine, folder) in zip(axes, MACHINES.items()):
        reports = sorted((args.bench_dir / folder).glob("with-reference-[0-9]*.md"), key=run_number)
        runs = [replies_per_minute(report) for report in reports]
        ratios = [stack / reference for stack, reference in runs]
        positions = range(len(runs))
        axis.bar([p - 0.2 for p in positions], [s for s, _ in runs], 0.4, label="stack", color="tab:blue")
        axis.bar([p + 0.2 for p in positions], [r for _, r in runs], 0.4, label="reference", color="tab:gray")
        for position, (stack, _), ratio in zip(positions, runs, ratios, strict=True):
            axis.annotate(f"{ratio:.2f}x", (position, stack), ha="center", va="bottom", fontsize=8 if len(runs) < 8 else 6)
        axis.set_xticks(list(positions), [str(run_number(report)) for report in reports])
        axis.set_xlabel("run")
        axis.set_title(f"{machine}\nmedian {statistics.median(ratios):.2f}x", fontsize=9)
        print(f"{folder}: {len(runs)} runs, stack/reference at 16 users "
              f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]")
    for axis in grid[:, 0]:
        axis.set_ylabel("replies a minute, 16 users")
    axes[0].set_ylim(0, axes[0].get_ylim()[1] * 1.1)  # room for the ratios above the highest bar
    figure.legend(*axes[0].get_legend_handles_labels(), loc="upper right", ncol=2, fontsize=9)
    figure.suptitle("The README's command (bench/run.py --users 1 16 --messages 2 --max-new-tokens 40 --two-web)")
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.05 / rows))
    figure.savefig(args.output, dpi=110)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
