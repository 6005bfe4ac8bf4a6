"""The desk shows what we owe a customer in their context: the notifications we promised them and the callback they
asked for. A customer writes on WhatsApp through the ACS emulator to a real `python -m local`: an outage is reported
(the agent promises a text when it is restored), the line is busy so they ask to be called back, then they ask for
a person; a person signed in at the desk opens their context through the desk's API.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from functions.api.desk import DeskContext

BUSY = {"set": {"waiting": 70, "estimated_wait_seconds": 480}}
OUTAGE = "OUT-4471"  # Oak St, Birch Rd, Cedar Ln


async def _whatsapp(acs: httpx.AsyncClient, phone: str, text: str) -> str:
    """The customer writes on WhatsApp; what the agent wrote back for it."""
    before = len((await acs.get("/_emulator/messages", params={"to": phone})).json())
    sent = await acs.post("/_emulator/inbound", json={"from": phone, "text": text})
    assert sent.status_code == 200, sent.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = (await acs.get("/_emulator/messages", params={"to": phone})).json()[before:]
        if texts := [m["content"] for m in new if m["kind"] == "text"]:
            return " ".join(texts)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no answer to {text!r}")


async def test_a_persons_context_shows_the_promised_text_and_the_callback_we_owe(local_host_factory) -> None:
    host = await asyncio.to_thread(local_host_factory)
    phone = f"+1666{uuid.uuid4().int % 10**7:07d}"
    async with httpx.AsyncClient(base_url=host.url, timeout=30) as app, \
            httpx.AsyncClient(base_url=host.acs_url, timeout=30) as acs:
        assert "text you when it's restored" in await _whatsapp(acs, phone, "no electricity at 7 Cedar Ln, Springfield")
        (await app.post("/api/ops/queue", json=BUSY)).raise_for_status()
        assert "call you back" in await _whatsapp(acs, phone, "please call me back when it's my turn")
        await _whatsapp(acs, phone, "I want to talk to a person")

        signed_in = await app.get("/.auth/login/dev", params={"agent": "Dana"})
        assert signed_in.status_code == 302, signed_in.text
        cookie = {"Cookie": f"AppServiceAuthSession={signed_in.cookies['AppServiceAuthSession']}"}
        app.cookies.clear()
        waiting = (await app.get("/api/desk/queue", headers=cookie)).json()["waiting"]
        (escalation_id,) = [e["escalation_id"] for e in waiting if e["channel"] == "whatsapp"]
        context = await app.get(f"/api/desk/escalations/{escalation_id}", headers=cookie)
        assert context.status_code == 200, context.text

    DeskContext.model_validate(context.json())  # as /api/openapi.json describes it
    (promised,) = context.json()["promised"]
    assert (promised["kind"], promised["ref"], promised["kept"], promised["due"]) == (
        "outage_restored", OUTAGE, False, None), promised
    callback = context.json()["callback"]
    assert callback is not None and (callback["state"], callback["when"], callback["number"]) == (
        "requested", "turn", phone), callback
    assert callback["attempts"] == 0 and callback["channel"] == "whatsapp"
