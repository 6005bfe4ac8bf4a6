"""What the local stack logs at INFO while customers use it: never the token secret, a whole token, a caller's full
phone number or what a customer wrote.

The journeys run on the security host (tests/security/conftest.py: INFO, `--access-log`, the media gateway as a
child writing to the same log): web chat turns, WhatsApp messages through the ACS emulator, a web chat visitor moving
to WhatsApp (the Durable handoff), and a phone call through the emulator, whose callback and media URLs carry tokens.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.security.conftest import TOKEN_SECRET, SecureStack
from tests.waiting import eventually

JORDAN = "+15555550100"  # a demo customer: the web chat visitor who moves to WhatsApp


def _phone() -> str:
    return f"+1777{uuid.uuid4().int % 10**7:07d}"


def _private(word: str) -> str:
    """A message only a customer wrote: if it is in the log, the log holds customer text."""
    return f"{word}{uuid.uuid4().hex[:10]}"


def test_journey_logs_hold_no_secret_token_full_phone_number_or_message_text(secure: SecureStack) -> None:
    tokens: list[str] = []
    said: list[str] = []
    phones = [JORDAN]

    # Web chat: one visitor writes something private; another gives their number and moves to WhatsApp (a handoff).
    for lines in ((f"my lights are flickering {_private('quokka')}", "is there an outage?"),
                  ("what's my balance? my number is 555-555-0100", "can we do this on WhatsApp?")):
        created = secure.client.post(secure.url("/api/webchat/sessions")).json()
        tokens.append(created["token"])
        url = secure.url(f"/api/webchat/sessions/{created['session_id']}/messages")
        auth = {"Authorization": f"Bearer {created['token']}"}
        for text in lines:
            said.append(text)
            response = secure.client.post(url, json={"text": text}, headers=auth)
            assert response.status_code == 200, response.text
        secure.client.get(secure.url(f"/api/webchat/sessions/{created['session_id']}"), headers=auth).raise_for_status()
    outbox = f"{secure.host.acs_url}/_emulator/messages"
    eventually(lambda: [m for m in secure.client.get(outbox, params={"to": JORDAN}).json()
                        if m["kind"] == "template"], timeout=30)

    # WhatsApp: Jordan carries on there; a new number writes too.
    newcomer = _phone()
    phones.append(newcomer)
    lines = ((JORDAN, f"hi it's me {_private('wombat')}"), (newcomer, f"my power is out {_private('numbat')}"))
    for phone, text in lines:
        said.append(text)
        before = len(secure.client.get(outbox, params={"to": phone}).json())
        posted = secure.client.post(f"{secure.host.acs_url}/_emulator/inbound", json={"from": phone, "text": text})
        assert posted.status_code == 200, posted.text
        eventually(lambda: len(secure.client.get(outbox, params={"to": phone}).json()) > before, timeout=30)

    # A phone call: answered with a media URL and a callback URL, each carrying a token; then the caller hangs up.
    caller = _phone()
    phones.append(caller)
    call_id = secure.client.post(secure.acs("/_emulator/calls"), json={"from": caller}).json()["id"]

    def streaming() -> dict:
        call = secure.client.get(secure.acs(f"/_emulator/calls/{call_id}")).json()
        return call if call["answer"] and call["media"] == "streaming" else {}

    try:
        answered = eventually(streaming, timeout=60)["answer"]
    except pytest.fail.Exception:  # say what the call did instead
        call = secure.client.get(secure.acs(f"/_emulator/calls/{call_id}")).json()
        pytest.fail(f"the call never streamed: {call['state']}, media {call['media']}\n{secure.logs()[-3000:]}")
    tokens += [answered["callbackUri"].split("token=", 1)[1],
               answered["mediaStreamingOptions"]["transportUrl"].split("token=", 1)[1]]
    secure.client.post(secure.acs(f"/_emulator/calls/{call_id}/hangup"))
    eventually(lambda: secure.client.get(secure.acs(f"/_emulator/calls/{call_id}")).json()["state"] != "connected")
    time.sleep(1.0)  # the last callbacks and their log lines

    logs = secure.logs()
    assert '"POST /api/webchat/sessions' in logs, "the access log is on: its lines are checked too"
    assert "/api/calls/callbacks?token=***" in logs, "callback URLs are logged, with their token masked"
    assert TOKEN_SECRET not in logs
    for token in tokens:
        for part in filter(None, (token, token.replace("%2E", "."), *token.split("."))):
            assert part not in logs, f"a token (or its signature) is in the log: {part[:12]}..."
    for phone in phones:
        assert phone not in logs and phone[1:] not in logs and phone[2:] not in logs, f"{phone[:5]}... in the log"
        assert phone[:5] + "***" + phone[-4:] in logs or phone != caller, "callers are logged masked"
    for text in said:
        assert text not in logs
        for word in text.split():
            if word.startswith(("quokka", "wombat", "numbat")):
                assert word not in logs, "customer message text is in the log"
