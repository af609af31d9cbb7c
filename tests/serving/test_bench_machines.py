"""bench/machines.py reads the committed runs of the README's command and draws them, machine by machine."""
from pathlib import Path

from bench.machines import MACHINES, main, run_number


def test_every_machines_runs_are_read_and_drawn(tmp_path, capsys):
    output = tmp_path / "machines.png"
    main(["--output", str(output)])
    lines = capsys.readouterr().out.splitlines()
    assert output.stat().st_size > 10_000
    # One summary per machine, each with at least 3 runs read from its reports.
    summaries = [line for line in lines if "stack/reference at 16 users" in line]
    assert [line.split(":")[0] for line in summaries] == list(MACHINES.values())
    assert all(int(line.split(": ")[1].split(" runs")[0]) >= 3 for line in summaries)
    # The figures the README quotes.
    assert "2026-12-01-eleventh: 5 runs, stack/reference at 16 users 4.71x [4.43-5.37]" in lines
    assert "2026-12-02-fourteenth: 10 runs, stack/reference at 16 users 3.45x [3.17-5.03]" in lines
    assert "2026-12-02-fifteenth: 10 runs, stack/reference at 16 users 5.24x [4.45-6.05]" in lines


def test_runs_are_drawn_in_the_order_they_ran():
    names = ["with-reference-10.md", "with-reference-2.md", "with-reference-1.md"]
    assert [run_number(Path(name)) for name in sorted(names, key=lambda name: run_number(Path(name)))] == [1, 2, 10]
