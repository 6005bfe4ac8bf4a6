"""Web chat on the OpenAI policy: the local host configured with OPENAI_BASE_URL, talking to an OpenAI-compatible
test server (a fake at the network boundary: the real service cannot run here) over the real `openai` SDK."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.verifying import ASKS_TO_VERIFY, CONFIRMED, proof_async


@pytest.fixture
async def llm_host(local_host_factory, openai_server):
    host = local_host_factory(SWITCHBOARD_POLICY="openai", OPENAI_BASE_URL=openai_server.base_url, OPENAI_API_KEY="k")
    yield host
    host.stop()


async def test_an_llm_agent_hands_off_calls_a_tool_and_never_asks_for_a_known_slot(llm_host, openai_server) -> None:
    async with httpx.AsyncClient(base_url=llm_host.url, timeout=30) as client:
        created = (await client.post("/api/webchat/sessions")).json()
        auth = {"Authorization": f"Bearer {created['token']}"}
        url = f"/api/webchat/sessions/{created['session_id']}/messages"

        # Concierge hands over; Billing calls for the balance, which needs the account holder: the core asks for
        # the code before the tool runs, so the model never gets the figure for someone who has not shown it's them.
        openai_server.reply_tool_calls(("handoff_to_BillingAgent", {"reason": "balance question"}))
        openai_server.reply_tool_calls(("get_balance", {}))
        response = await client.post(url, json={"text": "what's the balance on account 100200300?"}, headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        asked = " ".join(r["text"] for r in body["replies"])
        assert body["agent"] == "BillingAgent" and ASKS_TO_VERIFY.search(asked) and "$" not in asked
        assert len(openai_server.requests) == 2 and not tool_results(openai_server.requests)

        # The code from Jordan's phone: Billing answers the question he asked, and the model words the answer.
        openai_server.reply_tool_calls(("get_balance", {}))
        openai_server.reply_text("Your balance is $127.45, due December 15.")
        code = await proof_async(client, asked, llm_host.acs_url, "100200300")
        response = await client.post(url, json={"text": code}, headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["agent"] == "BillingAgent"
        assert body["replies"][0] == {"text": CONFIRMED, "agent": "BillingAgent"}
        assert body["replies"][-1]["text"] == "Your balance is $127.45, due December 15."

        # The account number was in the customer's words: Billing's model never saw it as a parameter to ask for,
        # and the tool result it got back carries the real figure. The code never reached the model.
        billing_request = openai_server.requests[2]
        assert "account_number" not in billing_request.tool("get_balance")["parameters"]["properties"]
        assert "100200300" in billing_request.messages[0]["content"]
        assert not any(code in json.dumps(r.messages) for r in openai_server.requests)
        tool_message = openai_server.requests[3].messages[-1]
        assert tool_message["role"] == "tool" and json.loads(tool_message["content"])["data"]["balance"] == 127.45


def tool_results(requests) -> list:  # type: ignore[no-untyped-def]
    return [m for r in requests for m in r.messages if m["role"] == "tool"]


async def test_an_llm_outage_falls_back_gracefully_and_records_the_turn(llm_host, openai_server) -> None:
    async with httpx.AsyncClient(base_url=llm_host.url, timeout=60) as client:
        created = (await client.post("/api/webchat/sessions")).json()
        auth = {"Authorization": f"Bearer {created['token']}"}
        openai_server.fail(500, times=10)
        response = await client.post(
            f"/api/webchat/sessions/{created['session_id']}/messages", json={"text": "my power is out"}, headers=auth
        )
        assert response.status_code == 200
        assert "having trouble" in response.json()["replies"][0]["text"]
        turns = (await client.get(f"/api/webchat/sessions/{created['session_id']}", headers=auth)).json()["turns"]
        assert [t["role"] for t in turns[-2:]] == ["customer", "agent"]
