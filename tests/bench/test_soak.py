"""bench/soak.py, short: 25 seconds of all three channels while the host and the gateway are SIGKILLed, with
bursts of messages on one session and WhatsApp's window closing, and no customer sees a duplicate, loses a turn,
gets answers out of order or from a turn that missed the one before (a smoke test of the soak, and a small soak of
its own). On the code before issue 11's fixes the same run counts out-of-order and stale turns."""

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


def test_a_short_soak_with_restarts_bursts_and_a_closed_window_loses_repeats_and_reorders_nothing() -> None:
    # Restarts every ~10 s (5 to 15): each process is killed at least once in 25 s. Bursts and closed windows are
    # more frequent than by default, so that a short run has several of each.
    run = subprocess.run(
        [sys.executable, "bench/soak.py", "--duration", "25", "--restart-every", "10", "--web", "1", "--whatsapp",
         "1", "--calls", "1", "--seed", "11", "--patience", "60", "--grace", "10", "--bursts", "0.4",
         "--window-closes", "0.3", "--send-faults", "0.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    output = run.stdout + run.stderr
    assert _figure(output, "turns sent") > 10, output
    assert _figure(output, "duplicates seen by customers") == 0, output
    assert _figure(output, "lost turns") == 0, output
    assert _figure(output, "out of order") == 0, output
    assert _figure(output, "stale turns") == 0, output
    assert _figure(output, "turns answered") == _figure(output, "turns sent"), output
    assert re.search(r"^bursts\s+\d+\s+\(web chat [1-9]\d*, WhatsApp [1-9]", output, re.MULTILINE), output
    assert _figure(output, "WhatsApp window closed") > 0, output
    assert re.search(r"host [1-9]\d*, media gateway [1-9]", output), output
    for process in ("functions host", "media gateway (null engines)", "this driver + ACS emulator"):
        assert process in output, output
    assert run.returncode == 0, output
