"""bench/soak.py, short: half a minute of all three channels while the host and the gateway are SIGKILLed, and no
customer sees a duplicate or loses a turn (a smoke test of the soak, and a small soak of its own)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _figure(output: str, name: str) -> int:
    match = re.search(rf"^{name}\s+(\d+)", output, re.MULTILINE)
    assert match, f"no {name!r} line in:\n{output}"
    return int(match.group(1))


def test_a_short_soak_with_restarts_loses_and_repeats_nothing() -> None:
    # Restarts every ~12 s (6 to 18): each process is killed at least once in 30 s.
    run = subprocess.run(
        [sys.executable, "bench/soak.py", "--duration", "30", "--restart-every", "12", "--web", "1", "--whatsapp",
         "1", "--calls", "1", "--seed", "11", "--patience", "60", "--grace", "15"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    output = run.stdout + run.stderr
    assert _figure(output, "turns sent") > 10, output
    assert _figure(output, "duplicates seen by customers") == 0, output
    assert _figure(output, "lost turns") == 0, output
    assert _figure(output, "turns answered") == _figure(output, "turns sent"), output
    assert re.search(r"host [1-9]\d*, media gateway [1-9]", output), output
    for process in ("functions host", "media gateway (null engines)", "this driver + ACS emulator"):
        assert process in output, output
    assert run.returncode == 0, output
