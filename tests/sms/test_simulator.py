"""`python -m local.sms`, as a person runs it against `make run`: the replies printed (its errors are tested with the
WhatsApp simulator's, tests/whatsapp/test_simulator.py)."""

from __future__ import annotations

from functools import partial

from tests.sms.conftest import JORDAN, SmsStack, new_number
from tests.whatsapp.test_simulator import simulator as any_simulator

simulator = partial(any_simulator, module="local.sms")


def test_one_text_prints_the_agents_reply(sms: SmsStack) -> None:
    run = simulator("--emulator", sms.acs_url, "--from", JORDAN, "is there an outage at my address?")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "you    is there an outage at my address?"
    assert any(line.startswith("agent  ") and "123 Oak St" in line for line in lines[1:])  # known by his number


def test_a_conversation_reads_a_line_per_text_until_quit(sms: SmsStack) -> None:
    run = simulator("--emulator", sms.acs_url, "--from", new_number(), stdin="HELP\n\nSTOP\n/quit\nnever sent\n")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line for line in lines if line.startswith("you    ")] == ["you    HELP", "you    STOP", "you    /quit"]
    replies = [line for line in lines if line.startswith("agent  ")]
    assert len(replies) == 1 and "Reply STOP" in replies[0]  # STOP is the carrier's to confirm, not ours
