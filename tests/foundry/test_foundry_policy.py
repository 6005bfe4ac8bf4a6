"""The Foundry policy through the conversation core, the real azure-ai-projects and openai SDKs, and a real SQLite
customer store, against tests/peers/foundry_server.py: a stand-in for the Foundry project at the network boundary
(Foundry cannot run here), serving the agents, Conversations and Responses routes the SDKs call."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

import shared.policies.foundry as foundry_policy
from shared.bootstrap import Services, build_services
from shared.foundry.agents import agent_name, sync
from shared.foundry.client import build_foundry
from shared.models import Channel, Identity, IdentityKind
from shared.policies.foundry import FoundryPolicy
from shared.scenario import load_scenario
from shared.settings import Settings
from tests.peers.foundry_server import FoundryTestServer

pytest_plugins = ["tests.peers.foundry_server"]

JORDAN = "+15555550100"  # a demo account holder the embedded store is seeded with


def settings(server: FoundryTestServer, data_dir: Path) -> Settings:
    return Settings.from_env({
        "AZURE_AI_PROJECT_ENDPOINT": server.endpoint, "SWITCHBOARD_DATA_DIR": str(data_dir),
        "SESSION_STATE": "memory", "LLM_TIMEOUT_SECONDS": "5",
    })


@pytest.fixture
async def services(foundry_server: FoundryTestServer, tmp_path: Path) -> AsyncIterator[Services]:
    config = settings(foundry_server, tmp_path)
    foundry = build_foundry(config)
    await sync(foundry.project, load_scenario(config.scenario), config.foundry_agent_prefix,
               config.azure_openai_deployment)
    await foundry.close()
    built = await build_services(config)
    assert isinstance(built.policy, FoundryPolicy)  # `auto` picks Foundry when its endpoint is set
    yield built
    await built.close()


async def say(services: Services, session_id: str, customer_id: str, text: str) -> str:
    outcome = await services.conversation.turn(session_id, customer_id, text)
    return " ".join(r.text for r in outcome.replies)


async def test_a_call_continued_on_whatsapp_reaches_the_model_with_the_call_in_the_same_conversation(
    services: Services, foundry_server: FoundryTestServer
) -> None:
    opened = await services.conversation.open_for_identity(Channel.VOICE, "call_1", Identity(IdentityKind.PHONE, JORDAN))
    customer_id = opened.customer.customer_id
    foundry_server.reply_text("I'm sorry about the outage on Oak Street. Crews expect power back by 4 PM.")
    assert "4 PM" in await say(services, "call_1", customer_id, "there is no power on my street")

    await services.conversation.open(Channel.WHATSAPP, "wa_1", customer_id)
    foundry_server.reply_text("Still on track for 4 PM.")
    assert "4 PM" in await say(services, "wa_1", customer_id, "any news about my power?")

    call, whatsapp = foundry_server.responses
    assert whatsapp.conversation == call.conversation
    record = await services.customers.get(customer_id)
    assert record.foundry_thread_id == call.conversation
    # The model on WhatsApp reads the call's words and its reply, not a summary of them, then the new question.
    assert whatsapp.texts("user")[-2:] == ["there is no power on my street", "any news about my power?"]
    assert "Crews expect power back by 4 PM." in whatsapp.texts("assistant")[-1]
    assert "on WhatsApp now" in whatsapp.texts("developer")[-1]
    assert call.agent == agent_name("switchboard", services.scenario, services.scenario.start_agent)


async def test_unreachable_foundry_the_fallback_answers_and_the_missed_turn_reaches_foundry_later(
    services: Services, foundry_server: FoundryTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(foundry_policy, "RETRY_AFTER_SECONDS", 0.0)  # try Foundry again on the next turn
    opened = await services.conversation.open_for_identity(Channel.VOICE, "call_2", Identity(IdentityKind.PHONE, JORDAN))
    customer_id = opened.customer.customer_id
    foundry_server.reply_text("Let me look into your bill.")
    await say(services, "call_2", customer_id, "I have a question about my bill")

    foundry_server.fail(503, times=3)  # the first try and the SDK's two retries
    reply = await say(services, "call_2", customer_id, "there is no power on my street")
    assert reply and reply != services.scenario.phrase("fallback")  # the offline policy answered it
    policy = services.policy
    assert isinstance(policy, FoundryPolicy)
    await policy.drain()
    kept = (await services.customers.get(customer_id)).foundry_backlog
    assert [i["content"] for i in kept] == ["there is no power on my street", reply]

    await services.conversation.open(Channel.WHATSAPP, "wa_2", customer_id)
    foundry_server.reply_text("Crews expect power back by 4 PM.")
    await say(services, "wa_2", customer_id, "when will it be back?")
    await policy.drain()

    later = foundry_server.responses[-1]
    assert later.texts("user")[-2:] == ["there is no power on my street", "when will it be back?"]
    assert reply in later.texts("assistant")
    assert (await services.customers.get(customer_id)).foundry_backlog == []  # sent once, not again


async def test_a_tool_the_model_calls_goes_through_our_verification_gate_and_leaves_no_call_unanswered(
    services: Services, foundry_server: FoundryTestServer
) -> None:
    # A web chat visitor names an account: the balance needs a verified holder, so our gate stops the tool before
    # it runs and the core asks them to verify, whatever Foundry's agent wanted.
    opened = await services.conversation.open_for_identity(Channel.WEBCHAT, "web_3", Identity(IdentityKind.WEBCHAT, "web_3"))
    customer_id = opened.customer.customer_id
    policy = services.policy
    assert isinstance(policy, FoundryPolicy)
    foundry_server.reply_tool_calls(("handoff_to_BillingAgent", {"reason": "balance"}))
    foundry_server.reply_tool_calls(("get_balance", {"account_number": "100200300"}))
    reply = await say(services, "web_3", customer_id, "what is the balance on account 100200300?")
    assert "$" not in reply and ("verify" in reply.lower() or "code" in reply.lower()), reply
    await policy.drain()

    conversation = (await services.customers.get(customer_id)).foundry_thread_id
    assert conversation is not None
    items = foundry_server.conversations[conversation]
    calls = [i["call_id"] for i in items if i["type"] == "function_call"]
    outputs = {i["call_id"]: i["output"] for i in items if i["type"] == "function_call_output"}
    assert calls and set(calls) <= set(outputs), "a function call was left without its output"
    assert "verify" in outputs[calls[-1]]  # the balance tool did not run
    assert foundry_server.responses[-1].agent.endswith("billingagent")  # the handoff reached Billing's agent
    # Billing's agent read the customer's words once: the handoff did not send them into the conversation again.
    said = [i for i in items if i["type"] == "message" and i.get("role") == "user"]
    assert len(said) == 1, said
