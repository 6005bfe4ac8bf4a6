"""A web chat the customer closes ends its conversation: through `python -m local` (offline policy, its local Durable
engine), closing the session writes one synthesis however often and however fast the page sends the close, and the
operators' route returns it."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.handoff_links import _unverified_claims

DURABLE = "/runtime/webhooks/durabletask/instances"


async def test_a_chat_closed_twice_writes_one_synthesis_and_the_api_returns_it(live_host) -> None:
    async with httpx.AsyncClient(base_url=live_host, timeout=30) as app:
        chat = (await app.post("/api/webchat/sessions")).json()
        session, auth = f"/api/webchat/sessions/{chat['session_id']}", {"Authorization": f"Bearer {chat['token']}"}
        said = await app.post(f"{session}/messages", json={"text": "I have a question about my bill"}, headers=auth)
        assert said.status_code == 200, said.text
        customer_id = _unverified_claims(chat["token"])["cid"]
        syntheses = f"/api/customers/{customer_id}/syntheses"
        assert (await app.get(syntheses)).json() == {"customer_id": customer_id, "syntheses": []}

        # The page's close, sent twice at once (a double click), then again after a lost answer.
        closes = [*await asyncio.gather(*(app.post(f"{session}/close", headers=auth) for _ in range(2))),
                  await app.post(f"{session}/close", headers=auth)]
        assert [(c.status_code, c.json()) for c in closes] == [
            (200, {"session_id": chat["session_id"], "status": "completed"})] * 3
        assert (await app.get(session, headers=auth)).json()["status"] == "completed"

        deadline = time.monotonic() + 30
        while not (written := (await app.get(syntheses)).json()["syntheses"]):
            assert time.monotonic() < deadline, "no synthesis was written"
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # any second write would have landed by now
        (synthesis,) = (await app.get(syntheses)).json()["syntheses"]
        assert written == [synthesis]
        assert (synthesis["session_id"], synthesis["channel"], synthesis["ended_by"]) == (
            chat["session_id"], "webchat", "closed"), synthesis
        assert "bill" in (synthesis["goal"] + synthesis["summary"]).lower(), synthesis
        started = (await app.get(DURABLE, params={"instanceIdPrefix": f"synthesis-closed-{chat['session_id']}"}))
        assert len(started.json()) == 1, started.json()

        missing = await app.get("/api/customers/cus_nobody/syntheses")
        assert missing.status_code == 404, missing.text
