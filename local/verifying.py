"""Proving who you are, as the customer would: the code from their phone, or the answers only they should know.

Account data needs a verified customer (docs/security.md, "Verifying customers"), so every journey that reads it
verifies first, the honest way:

* a code goes to the phone number on record, so whatever acts as the customer (a test, an eval journey, a bench run)
  reads it where it went: the ACS emulator's outboxes. By text message when the host has an SMS number
  (`GET /_emulator/sms`, tagged "verification"), else by WhatsApp with the scenario's code template
  (`GET /_emulator/messages`, its `code` value);
* the knowledge answers (the service ZIP code and the last name) are the back office's, read from the scenario's
  data.yaml through its own HOLDER, in the order the scenario asks for them.

Nothing here waits for a code that has not arrived yet: the tests' `sent_code` and `proof` (tests/verifying.py) poll
with the tests' own `eventually`, which fails the test when the time runs out.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import httpx

from shared.scenario import Holder, Scenario, load_scenario

#: The confirmation the customer gets once verified (shared/conversation.py VERIFY_PHRASES["verify_ok"]).
CONFIRMED = "Thanks, that's confirmed."
#: Any of the ways the agent asks the customer to verify.
ASKS_TO_VERIFY = re.compile(r"I need to check it's you", re.I)


@lru_cache(maxsize=4)
def scenario(name: str = "utilities") -> Scenario:
    return load_scenario(name)


def holder(account: str, name: str = "utilities") -> Holder:
    """The holder of an account, named as the scenario's account slots name one: in utilities its account number or
    its phone number on record, in insurance its policy number."""
    digits = re.sub(r"\D", "", account)
    spec = scenario(name)
    tries = [{slot: value} for slot in spec.verification.account_slots for value in (account, digits, f"+{digits}")]
    found = next((h for args in tries if (h := spec.holder(args)) is not None), None)
    if found is None:
        raise LookupError(f"no account {account!r} in the {name} scenario's data")
    return found


def knowledge_answers(account: str, name: str = "utilities") -> str:
    """What the holder of `account` says when asked the scenario's questions: "62701, Lee"."""
    found = holder(account, name)
    return ", ".join(found.answers[q.answer] for q in scenario(name).verification.knowledge)


# Codes, read from the emulator's outboxes ------------------------------------------------------------------------


def codes_in(whatsapp: list[dict[str, Any]], sms: list[dict[str, Any]], phone: str,
             name: str = "utilities") -> list[str]:
    """The verification codes sent to `phone`, oldest first, from the two outboxes' listings."""
    spec = scenario(name)
    template = spec.whatsapp.code.name if spec.whatsapp.code is not None else None
    found: list[tuple[str, str]] = []
    for message in whatsapp:
        if message.get("to") == phone and template is not None and message.get("template") == template:
            found.append((message.get("sentAt") or "", (message.get("templateValues") or {}).get("code") or ""))
    for text in sms:
        if text.get("to") == phone and text.get("tag") == "verification":
            digits = re.search(rf"\b\d{{{spec.verification.code_length}}}\b", text.get("message") or "")
            found.append((text.get("sentAt") or "", digits.group() if digits else ""))
    return [code for _, code in sorted(found, key=lambda f: f[0])]


def codes_sent(acs_url: str, phone: str, name: str = "utilities") -> list[str]:
    """Every verification code the emulator at `acs_url` has sent to `phone`, oldest first."""
    with httpx.Client(timeout=30) as client:
        return codes_in(_listing(client.get(f"{acs_url}/_emulator/messages", params={"to": phone})),
                        _listing(client.get(f"{acs_url}/_emulator/sms", params={"to": phone})), phone, name)


async def codes_sent_async(client: httpx.AsyncClient, acs_url: str, phone: str, name: str = "utilities") -> list[str]:
    """`codes_sent` for async callers (the event loop is not blocked while the emulator answers)."""
    whatsapp = await client.get(f"{acs_url}/_emulator/messages", params={"to": phone})
    sms = await client.get(f"{acs_url}/_emulator/sms", params={"to": phone})
    return codes_in(_listing(whatsapp), _listing(sms), phone, name)


async def sent_code_async(client: httpx.AsyncClient, acs_url: str, phone: str, name: str = "utilities") -> str:
    codes = await codes_sent_async(client, acs_url, phone, name)
    assert codes, f"no verification code was sent to {phone}"
    return codes[-1]


def _listing(response: httpx.Response) -> list[dict[str, Any]]:
    if response.status_code == 404:  # an emulator without that module: nothing was sent that way
        return []
    response.raise_for_status()
    return response.json()


# Answering the agent's check ---------------------------------------------------------------------------------------


def asks_knowledge(asked: str, name: str = "utilities") -> bool:
    """Whether the agent asked the scenario's knowledge questions (rather than for a code)."""
    return any(q.ask in asked for q in scenario(name).verification.knowledge)


async def proof_async(client: httpx.AsyncClient, asked: str, acs_url: str | None, account: str,
                      name: str = "utilities") -> str:
    """What the holder of `account` says to the check the agent made in `asked`: the knowledge answers if it asked
    those (a number past its hourly codes, or no way to send one), else the newest code sent to their number on
    record, read from the emulator at `acs_url` (codes go out before the agent says so)."""
    assert ASKS_TO_VERIFY.search(asked), f"the agent asked for no proof: {asked!r}"
    if asks_knowledge(asked, name):
        return knowledge_answers(account, name)
    assert acs_url, "a code was sent, and this host has no emulator to read it from"
    return await sent_code_async(client, acs_url, holder(account, name).phone, name)
