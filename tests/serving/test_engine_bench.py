"""bench/engine.py runs the engines side by side and prints its table (tiny model here)."""
import os
import subprocess
import sys
from pathlib import Path

from bench.host import describe_cpu

REPO = Path(__file__).resolve().parents[2]


def test_the_engine_benchmark_prints_rates_limits_and_ratios(tiny_chat, tmp_path):
    env = {**os.environ, "GENERATOR_MODEL": str(tiny_chat), "GENERATOR_ADAPTER": "none", "VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "bench/engine.py", "--rows", "1", "4", "--new-tokens", "3", "--repeat", "2", "--candidates", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "Limits: memory copy" in out and "GFLOP/s" in out
    assert f"Machine: {describe_cpu()}; torch " in out  # the report names the CPU it ran on
    rows = [line for line in out.splitlines() if line.startswith(("| torch-int8 |", "| openvino |"))]
    assert len(rows) == 4  # two engines at two row counts
    assert "openvino / torch-int8 at 4 rows:" in out and "2 candidate(s) per request" in out
