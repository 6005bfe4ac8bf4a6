"""Proving who you are, as the customer would (local/verifying.py, shared with the evals and the benchmarks).

What is here waits: a code goes out before the agent says so, so a test polls the emulator's outbox with the tests'
`eventually`, which fails the test if no code comes.
"""

from __future__ import annotations

from local.verifying import (  # noqa: F401 - the tests import these names from here
    ASKS_TO_VERIFY,
    CONFIRMED,
    asks_knowledge,
    codes_in,
    codes_sent,
    codes_sent_async,
    holder,
    knowledge_answers,
    proof_async,
    scenario,
    sent_code_async,
)
from tests.waiting import eventually


def sent_code(acs_url: str, phone: str, *, after: int = 0, name: str = "utilities") -> str:
    """The newest code sent to `phone` once more than `after` have gone (codes go out before the agent says so)."""
    codes = eventually(lambda: (sent := codes_sent(acs_url, phone, name)) and len(sent) > after and sent)
    return codes[-1]


def proof(asked: str, acs_url: str | None, account: str, name: str = "utilities") -> str:
    """What the holder of `account` says to the check the agent made in `asked`: the knowledge answers if it asked
    those (a number past its hourly codes, or no way to send one), else the newest code sent to their number on
    record, read from the emulator at `acs_url`."""
    assert ASKS_TO_VERIFY.search(asked), f"the agent asked for no proof: {asked!r}"
    if asks_knowledge(asked, name):
        return knowledge_answers(account, name)
    assert acs_url, "a code was sent, and this host has no emulator to read it from"
    return sent_code(acs_url, holder(account, name).phone, name=name)
