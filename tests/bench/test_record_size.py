"""bench/record_size.py runs end to end on both stores with small numbers (a smoke test), and prints its figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_record_size_benchmark_builds_a_customers_history_and_prints_size_and_latency() -> None:
    # A ratio over 30 turns says little on a busy machine: the smoke test lets it be, the full run enforces 1.2.
    run = subprocess.run(
        [sys.executable, "bench/record_size.py", "--sessions", "25", "--turns", "30", "--max-ratio", "100"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for backend in ("sqlite:", "cosmos:"):
        assert backend in run.stdout, run.stdout
    assert "skipped" not in run.stdout, run.stdout  # the emulator is installed wherever the tests run (make setup)
    for line in ("record ", "20 sessions listed", "session 25 ", "session 1 ", "ratio "):
        assert line in run.stdout, run.stdout
