"""`python -m local.whatsapp`, as a person runs it against `make run`: replies printed, clear errors otherwise (the
errors for `python -m local.sms` too, whose loop is the same; its replies are tests/sms/test_simulator.py's)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.peers import free_port
from tests.peers.local_host import PROJECT_ROOT
from tests.whatsapp.conftest import WhatsAppStack, new_number


def simulator(*args: str, stdin: str | None = None, module: str = "local.whatsapp") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=PROJECT_ROOT, input=stdin, capture_output=True, text=True, timeout=60,
    )


def test_one_message_prints_the_agents_reply(whatsapp: WhatsAppStack) -> None:
    run = simulator("--emulator", whatsapp.acs_url, "--from", "+15555550111", "what do I owe this month?")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "you    what do I owe this month?"
    assert any(line.startswith("agent  ") and "$42.10" in line for line in lines[1:])  # Sam, known by his number


def test_a_conversation_reads_a_line_per_message(whatsapp: WhatsAppStack) -> None:
    phone = new_number()
    run = simulator("--emulator", whatsapp.acs_url, "--from", phone, stdin="my lights are out\n/image\n")
    assert run.returncode == 0, run.stderr
    replies = [line for line in run.stdout.splitlines() if "agent  " in line]
    assert len(replies) == 2
    assert "address" in replies[0] and "only read text" in replies[1]


def test_a_late_message_shows_the_template(whatsapp: WhatsAppStack) -> None:
    run = simulator("--emulator", whatsapp.acs_url, "--from", new_number(), "--hours-ago", "25", "hello?")
    assert run.returncode == 0, run.stderr
    assert "[template switchboard_follow_up (en_US): customer_name=there" in run.stdout


SIMULATORS = pytest.mark.parametrize("module", ["local.whatsapp", "local.sms"])


@SIMULATORS
def test_without_make_run_it_says_what_to_do(module: str) -> None:
    run = simulator("--emulator", f"http://127.0.0.1:{free_port()}", "hello", module=module)
    assert run.returncode == 1
    assert "start the system with `make run` first" in run.stderr
    assert "Traceback" not in run.stderr


@SIMULATORS
def test_a_number_that_is_not_e164_is_refused(module: str) -> None:
    run = simulator("--from", "5555550100", "hello", module=module)
    assert run.returncode == 2 and "E.164" in run.stderr
