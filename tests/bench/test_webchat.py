"""bench/webchat.py runs end to end on a local host of its own (a smoke test): each customer names Jordan's account,
proves it is theirs as the agent asks, and carries on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_web_chat_benchmark_verifies_each_customer_and_reports_latency() -> None:
    run = subprocess.run([sys.executable, "bench/webchat.py", "--clients", "5", "--turns", "4"],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    # Five customers, one check each: the first by the codes the hour allows, the rest by the knowledge questions.
    for line in ("clients      5", "verified     5 of 5 checks passed", "errors       0", "turn         p50"):
        assert line in run.stdout, run.stdout
