"""bench/load.py runs end to end: one of each kind of customer, a few things each, on a stack of its own (a smoke
test). The text customers get as far as proving Jordan's account is theirs, and the turn after it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_mixed_load_benchmark_runs_each_channel_and_reports_memory() -> None:
    run = subprocess.run(
        [sys.executable, "bench/load.py", "--count", "4", "--webchat", "1", "--whatsapp", "1", "--calls", "1",
         "--call-seconds", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for line in ("webchat: turn", "whatsapp: message -> reply", "calls: placed -> first audio",
                 "functions host + ACS emulator", "media gateway, null engines", "verified  2 of 2 checks passed"):
        assert line in run.stdout, run.stdout
