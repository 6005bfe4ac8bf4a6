"""OpenAIPolicy driven through the real `openai` SDK against the scripted OpenAI-compatible test server.

Most tests use the utilities scenario (the one the product ships); the mini scenario under fixtures/ adds what
utilities lacks: tool parameters that are not slots, and a tool that raises.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator

import openai
import pytest

from shared.models import Turn, Verification
from shared.policies.base import (
    EscalateRequest, HandoffRequest, PolicyEvent, SwitchRequest, TextDelta, TurnContext, VerificationNeeded,
)
from shared.policies.openai_policy import ESCALATE_REASON, MAX_ROUNDS, OpenAIPolicy, build_openai_client
from shared.router import SwitchDecision
from shared.scenario import Scenario, load_scenario
from shared.settings import Settings, SettingsError
from tests.peers.openai_server import OpenAITestServer

MINI = str(Path(__file__).parent / "fixtures" / "mini")
JORDAN = "+15555550100"  # the number on record for account 100200300


def settings(server: OpenAITestServer, **overrides: str) -> Settings:
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test", "OPENAI_MODEL": "test-model"}
    return Settings.from_env({**env, "LLM_TIMEOUT_SECONDS": "5", **overrides})


def make_ctx(
    agent: str,
    text: str,
    scenario: Scenario | None = None,
    collected: dict[str, str] | None = None,
    summary: str = "",
    history: list[Turn] | None = None,
    verified_for: str | None = None,
) -> TurnContext:
    """A turn's context; `verified_for` is the number on record this session has verified for (as the core gives it
    once the customer has passed a code or the knowledge questions), else the session is unverified."""
    scenario = scenario or load_scenario("utilities")
    return TurnContext(
        scenario=scenario,
        agent=scenario.agent(agent),
        text=text,
        collected=dict(collected or {}),
        summary=summary,
        history=history or [],
        scratch={},
        verification=Verification.VERIFIED if verified_for else Verification.UNVERIFIED,
        verified_phone=verified_for,
    )


async def run(policy: OpenAIPolicy, ctx: TurnContext) -> list[PolicyEvent]:
    return [event async for event in policy.respond(ctx)]


def reply(events: list[PolicyEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def tool_results(request: Any) -> list[dict[str, Any]]:
    return [json.loads(m["content"]) for m in request.messages if m["role"] == "tool"]


@pytest.fixture
async def policy(openai_server: OpenAITestServer) -> AsyncIterator[OpenAIPolicy]:
    policy = OpenAIPolicy(settings(openai_server))
    yield policy
    await policy.close()


# Streaming text ---------------------------------------------------------------------------------------------------


async def test_text_streams_as_several_deltas(openai_server: OpenAITestServer, policy: OpenAIPolicy) -> None:
    answer = "I can help with that. Is it about your bill or an outage?"
    openai_server.reply_text(answer)
    history = [Turn("customer", f"question {i}") if i % 2 == 0 else Turn("agent", f"answer {i}") for i in range(25)]
    ctx = make_ctx("UtilitiesConcierge", "Hi there", history=history)

    events = await run(policy, ctx)

    assert all(isinstance(e, TextDelta) for e in events) and len(events) > 5
    assert reply(events) == answer
    (request,) = openai_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.body["model"] == "test-model" and request.body["stream"] is True
    assert request.body["tool_choice"] == "auto"
    messages = request.messages
    assert messages[0]["role"] == "system" and "Springfield Power & Water" in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "Hi there"}
    # The last 20 turns of the session, customer -> user and agent -> assistant.
    expected = [f"{'question' if i % 2 == 0 else 'answer'} {i}" for i in range(5, 25)]
    assert [m["content"] for m in messages[1:-1]] == expected
    assert {m["role"] for m in messages[1:-1:2]} == {"assistant"} and {m["role"] for m in messages[2:-1:2]} == {"user"}


async def test_empty_answer_yields_the_fallback(openai_server: OpenAITestServer, policy: OpenAIPolicy) -> None:
    openai_server.reply_text("")
    ctx = make_ctx("UtilitiesConcierge", "Hello?")
    assert reply(await run(policy, ctx)) == ctx.scenario.phrase("fallback")


# Tools ------------------------------------------------------------------------------------------------------------


async def test_streamed_tool_call_runs_and_its_result_goes_back(
    openai_server: OpenAITestServer, policy: OpenAIPolicy
) -> None:
    openai_server.reply_tool_calls(("get_balance", {"account_number": "100200300"}), text="Let me check. ")
    openai_server.reply_text("Your balance is $127.45, due December 15.")
    ctx = make_ctx("BillingAgent", "What's my balance? Account 100200300.", verified_for=JORDAN)

    events = await run(policy, ctx)

    assert reply(events) == "Let me check. Your balance is $127.45, due December 15."
    (call,) = ctx.tool_calls
    assert call.name == "get_balance" and call.result is not None and call.result.data["balance"] == 127.45
    assert ctx.learned["account_number"] == "100200300" and ctx.learned["customer_name"] == "Jordan Lee"

    first, second = openai_server.requests
    assistant, tool = second.messages[-2:]
    assert assistant["role"] == "assistant" and assistant["content"] == "Let me check. "
    (tool_call,) = assistant["tool_calls"]
    assert tool_call["function"]["name"] == "get_balance"
    assert json.loads(tool_call["function"]["arguments"]) == {"account_number": "100200300"}
    assert tool["role"] == "tool" and tool["tool_call_id"] == tool_call["id"]
    result = json.loads(tool["content"])
    assert result["ok"] is True and result["data"]["balance"] == 127.45 and "$127.45" in result["say"]
    # What the tool learned is a known fact in the next round, and leaves the schema.
    assert "100200300" in second.messages[0]["content"]
    assert second.tool("get_balance")["parameters"]["properties"] == {}


async def test_known_slot_is_not_in_the_schema_but_reaches_the_tool(
    openai_server: OpenAITestServer, policy: OpenAIPolicy
) -> None:
    openai_server.reply_tool_calls(("get_balance", {}))
    openai_server.reply_text("You owe $127.45.")
    summary = "Jordan phoned yesterday about a high bill; they were told it would be reviewed."
    ctx = make_ctx("BillingAgent", "How much do I owe?", collected={"account_number": "100200300"}, summary=summary,
                   verified_for=JORDAN)

    events = await run(policy, ctx)

    assert reply(events) == "You owe $127.45."
    first = openai_server.requests[0]
    properties = first.tool("get_balance")["parameters"]["properties"]
    assert "account_number" not in properties
    phone = ctx.scenario.slots["phone_number"].description
    assert properties["phone_number"] == {"type": "string", "description": phone}
    assert ctx.tool_calls[0].arguments["account_number"] == "100200300"
    system = first.messages[0]["content"]
    assert "account_number" in system and "100200300" in system and summary in system
    assert "Never ask the customer for any of these again" in system


async def test_unmet_requirement_goes_back_as_the_question_to_ask(
    openai_server: OpenAITestServer, policy: OpenAIPolicy
) -> None:
    openai_server.reply_tool_calls(("get_balance", {}))
    ask = load_scenario("utilities").tools["get_balance"].requires[0].ask
    openai_server.reply_text(ask)
    ctx = make_ctx("BillingAgent", "What's my balance?")

    assert reply(await run(policy, ctx)) == ask
    assert ctx.tool_calls[0].result is None
    (result,) = tool_results(openai_server.requests[1])
    assert result == {"ok": False, "missing": ["account_number", "phone_number"], "ask": ask}


async def test_a_tool_for_a_verified_customer_stops_the_turn_before_the_model_sees_any_account_data(
    openai_server: OpenAITestServer, policy: OpenAIPolicy
) -> None:
    # The core asks the customer to verify (tests/verification); the model must not get the balance meanwhile, nor
    # for a session verified for someone else's number.
    for verified_for in (None, "+15555550111"):
        openai_server.reply_tool_calls(("get_balance", {"account_number": "100200300"}), text="Let me check. ")
        ctx = make_ctx("BillingAgent", "What's my balance? Account 100200300.", verified_for=verified_for)
        with pytest.raises(VerificationNeeded) as needed:
            await run(policy, ctx)
        assert needed.value.tool == "get_balance" and needed.value.holder.phone == JORDAN
        assert ctx.tool_calls == []
    assert len(openai_server.requests) == 2  # one per turn: no round carried a tool result back


async def test_bad_tool_calls_are_explained_to_the_model(openai_server: OpenAITestServer, policy: OpenAIPolicy) -> None:
    mini = load_scenario(MINI)
    openai_server.reply_tool_calls(
        ("find_store", '{"city": "Spring'),  # truncated JSON
        ("launch_rockets", {}),
        ("broken_lookup", {}),
    )
    openai_server.reply_tool_calls(("find_store", {"city": "Shelbyville", "radius_km": 5}))
    openai_server.reply_text("Try Shelbyville Main St.")
    ctx = make_ctx("Desk", "Where's your nearest store?", scenario=mini, collected={"customer_name": "Ada"})

    assert reply(await run(policy, ctx)) == "Try Shelbyville Main St."
    broken_json, unknown, failed = tool_results(openai_server.requests[1])
    assert broken_json["ok"] is False and "not a valid JSON object" in broken_json["error"]
    assert unknown["ok"] is False and "no tool named 'launch_rockets'" in unknown["error"]
    assert failed["ok"] is False and "tool failed" in failed["error"]
    *_, found = tool_results(openai_server.requests[2])
    assert found["data"] == {"store": "Shelbyville Main St", "radius_km": 5}
    assert ctx.tool_calls[-1].arguments == {"city": "Shelbyville", "radius_km": 5, "customer_name": "Ada"}

    # Non-slot parameters keep their spec; the known customer_name slot is left out.
    schema = openai_server.requests[0].tool("find_store")["parameters"]
    assert schema["properties"] == {
        "city": {"type": "string", "description": "The city to search in.", "enum": ["Springfield", "Shelbyville"]},
        "radius_km": {"type": "integer", "description": "How far to search, in kilometres."},
    }


async def test_tool_rounds_are_bounded(openai_server: OpenAITestServer, policy: OpenAIPolicy) -> None:
    for _ in range(MAX_ROUNDS):
        openai_server.reply_tool_calls(("get_balance", {"account_number": "100200300"}))
    ctx = make_ctx("BillingAgent", "Balance please", verified_for=JORDAN)

    assert reply(await run(policy, ctx)) == ctx.scenario.phrase("fallback")
    assert len(openai_server.requests) == MAX_ROUNDS
    assert [r.body["tool_choice"] for r in openai_server.requests] == ["auto"] * (MAX_ROUNDS - 1) + ["none"]


# Handoffs ---------------------------------------------------------------------------------------------------------


async def test_handoff_call_yields_a_handoff_and_nothing_after(
    openai_server: OpenAITestServer, policy: OpenAIPolicy
) -> None:
    openai_server.reply_tool_calls(("handoff_to_OutageAgent", {"reason": "power outage at home"}))
    ctx = make_ctx("UtilitiesConcierge", "My power is out")

    assert await run(policy, ctx) == [HandoffRequest("OutageAgent", "power outage at home")]
    (request,) = openai_server.requests
    handoffs = {t["function"]["name"]: t["function"] for t in request.tools if t["function"]["name"].startswith("handoff_")}
    assert set(handoffs) == {f"handoff_to_{e.target}" for e in ctx.agent.handoffs}
    outage = handoffs["handoff_to_OutageAgent"]
    assert outage["description"] == ctx.agent.edge_to("OutageAgent").when
    assert list(outage["parameters"]["properties"]) == ["reason"]


async def test_handoff_wins_over_other_calls_in_the_batch(
    openai_server: OpenAITestServer, policy: OpenAIPolicy
) -> None:
    openai_server.reply_tool_calls(
        ("get_balance", {"account_number": "100200300"}), ("handoff_to_OutageAgent", "not json"), text="One moment."
    )
    ctx = make_ctx("BillingAgent", "Actually my lights just went out")

    events = await run(policy, ctx)

    assert events[-1] == HandoffRequest("OutageAgent", "")
    assert reply(events) == "One moment."
    assert ctx.tool_calls == [] and len(openai_server.requests) == 1


# A person -----------------------------------------------------------------------------------------------------------


async def test_the_model_can_hand_the_customer_to_a_person(
    openai_server: OpenAITestServer, policy: OpenAIPolicy
) -> None:
    openai_server.reply_tool_calls(("escalate_to_person", {"reason": "asked for a person about a payment plan"}),
                                   text="Of course, let me get someone for you.")
    ctx = make_ctx("BillingAgent", "I'd rather talk to a real person about a payment plan")

    events = await run(policy, ctx)

    assert reply(events) == "Of course, let me get someone for you."
    assert events[-1] == EscalateRequest("asked for a person about a payment plan")
    (request,) = openai_server.requests  # nothing more is asked of the model: the desk takes it from here
    escalate = request.tool("escalate_to_person")
    assert list(escalate["parameters"]["properties"]) == ["reason"]
    assert "asked for a person" in escalate["description"]
    system = request.messages[0]["content"]
    assert "asks for a person" in system and "cannot help" in system and "escalate_to_person" in system


async def test_a_person_wins_over_a_handoff_and_a_missing_reason_still_escalates(
    openai_server: OpenAITestServer, policy: OpenAIPolicy
) -> None:
    openai_server.reply_tool_calls(("handoff_to_OutageAgent", {"reason": "outage"}), ("escalate_to_person", "{oops"))
    ctx = make_ctx("UtilitiesConcierge", "Just put me through to a human")

    assert await run(policy, ctx) == [EscalateRequest(ESCALATE_REASON)]
    assert ctx.tool_calls == []


async def test_the_conversation_queues_the_customer_the_model_escalates(
    openai_server: OpenAITestServer, policy: OpenAIPolicy, tmp_path: Path
) -> None:
    from shared.conversation import DESK_PHRASES, Conversation
    from shared.models import Channel, EscalationStatus, Identity, IdentityKind
    from shared.stores.embedded_customers import SqliteCustomerStore
    from shared.stores.embedded_state import InProcessSessionState

    store = SqliteCustomerStore(tmp_path / "customers.sqlite3")
    conversation = Conversation(load_scenario("utilities"), store, InProcessSessionState(), policy)
    try:
        visitor = Identity(IdentityKind.WEBCHAT, "web_llm")
        opened = await conversation.open_for_identity(Channel.WEBCHAT, "web_llm", visitor)
        openai_server.reply_tool_calls(("escalate_to_person", {"reason": "wants a person"}), text="Sure.")
        outcome = await conversation.turn("web_llm", opened.customer.customer_id, "a person please, not a bot")
        # The model's words, then the desk's: nobody is on duty (and an anonymous visitor has no other channel).
        assert [r.text for r in outcome.replies] == ["Sure.", DESK_PHRASES["escalate_nobody"]]
        assert outcome.escalation is not None and outcome.escalation.reason == "wants a person"

        # While they wait the model is not asked anything: the desk answers (the server has nothing scripted).
        waiting = await conversation.turn("web_llm", opened.customer.customer_id, "hello?")
        assert [r.text for r in waiting.replies] == [DESK_PHRASES["escalate_waiting_nobody"]]
        assert len(openai_server.requests) == 1
        (escalation,) = (await store.get(opened.customer.customer_id)).escalations
        assert escalation.status is EscalationStatus.WAITING
    finally:
        await store.close()


# Failures ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 429])
async def test_endpoint_errors_fall_back_after_retries(
    openai_server: OpenAITestServer, policy: OpenAIPolicy, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    openai_server.fail(status, times=3)
    ctx = make_ctx("UtilitiesConcierge", "Hello")

    assert await run(policy, ctx) == [TextDelta(ctx.scenario.phrase("fallback"))]
    assert len(openai_server.requests) == 3  # the first try and the SDK's two retries
    (record,) = [r for r in caplog.records if r.name == "shared.policies.openai_policy"]
    assert record.levelno == logging.WARNING and str(status) in record.getMessage()


async def test_stall_past_the_timeout_falls_back_once_the_timeout_is_up(openai_server: OpenAITestServer) -> None:
    openai_server.stall(times=3)
    policy = OpenAIPolicy(settings(openai_server, LLM_TIMEOUT_SECONDS="0.3"))
    ctx = make_ctx("UtilitiesConcierge", "Hello")
    started = time.monotonic()
    try:
        assert await run(policy, ctx) == [TextDelta(ctx.scenario.phrase("fallback"))]
    finally:
        await policy.close()
    # The SDK's retries of a timed-out request do not stretch the wait: the timeout bounds them all.
    assert time.monotonic() - started < 0.3 + 0.5


async def test_stall_mid_stream_keeps_the_partial_reply_and_falls_back(openai_server: OpenAITestServer) -> None:
    openai_server.reply_text("Let me look that up for you.", stall_after=3)
    policy = OpenAIPolicy(settings(openai_server, LLM_TIMEOUT_SECONDS="0.3"))
    ctx = make_ctx("UtilitiesConcierge", "Hello")
    try:
        events = await run(policy, ctx)
    finally:
        await policy.close()
    assert reply(events) == "Let me look " + ctx.scenario.phrase("fallback")


async def test_bad_key_falls_back_and_logs_a_hint(
    openai_server: OpenAITestServer, policy: OpenAIPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    openai_server.api_key = "the-right-key"
    ctx = make_ctx("UtilitiesConcierge", "Hello")

    assert await run(policy, ctx) == [TextDelta(ctx.scenario.phrase("fallback"))]
    assert len(openai_server.requests) == 1  # 401 is not retried
    (record,) = [r for r in caplog.records if r.name == "shared.policies.openai_policy"]
    assert record.levelno == logging.ERROR and "OPENAI_API_KEY" in record.getMessage()


# Client construction ----------------------------------------------------------------------------------------------


async def test_azure_client_path(openai_server: OpenAITestServer) -> None:
    azure = {
        "AZURE_OPENAI_ENDPOINT": openai_server.url,
        "AZURE_OPENAI_API_KEY": "azure-key",
        "AZURE_OPENAI_DEPLOYMENT": "switchboard-chat",
        "AZURE_OPENAI_API_VERSION": "2024-10-21",
    }
    openai_server.api_key = "azure-key"
    openai_server.reply_tool_calls(("check_outage", {"service_address": "123 Oak St, Springfield"}))
    openai_server.reply_text("There's an outage on Oak St.")
    policy = OpenAIPolicy(settings(openai_server, **azure))
    ctx = make_ctx("OutageAgent", "Is there an outage at 123 Oak St?")
    try:
        events = await run(policy, ctx)
    finally:
        await policy.close()

    assert reply(events) == "There's an outage on Oak St."
    assert ctx.tool_calls[0].result is not None and ctx.tool_calls[0].result.data["known_outage"] is True
    for request in openai_server.requests:
        assert request.path == "/openai/deployments/switchboard-chat/chat/completions"
        assert request.query["api-version"] == "2024-10-21"
        assert request.headers["api-key"] == "azure-key" and "Authorization" not in request.headers


async def test_azure_without_a_key_uses_managed_identity() -> None:
    env = {
        "AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com",
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
    }
    llm = build_openai_client(Settings.from_env(env))
    try:
        assert isinstance(llm.client, openai.AsyncAzureOpenAI) and llm.model == "gpt-4o-mini"
        assert llm.credential is not None  # a token provider, not a key: nothing is fetched until a request
    finally:
        await OpenAIPolicy(Settings.from_env(env), llm).close()


def test_no_endpoint_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="AZURE_OPENAI_ENDPOINT or OPENAI_BASE_URL"):
        build_openai_client(Settings.from_env({}))


async def test_the_queue_tool_and_an_accepted_switch(openai_server: OpenAITestServer, policy: OpenAIPolicy) -> None:
    ctx = make_ctx("OutageAgent", "is it busy? then yes, WhatsApp please")
    ctx.switch = SwitchDecision(True, ("whatsapp", "webchat"), ("estimated wait 400 s is over 120 s",))
    openai_server.reply_tool_calls(("check_queue", {}))
    openai_server.reply_tool_calls(("switch_channel", {"channel": "whatsapp"}))

    events = await run(policy, ctx)
    assert events[-1] == SwitchRequest("whatsapp")
    assert "WhatsApp" in "".join(e.text for e in events[:-1])  # the customer is told where to go
    first, second = openai_server.requests
    assert "The phone queue is long right now (estimated wait 400 s is over 120 s)" in first.messages[0]["content"]
    assert first.tool("switch_channel")["parameters"]["properties"]["channel"]["enum"] == ["whatsapp", "webchat"]
    queue_answer = json.loads(second.messages[-1]["content"])
    assert queue_answer["data"] == {"offer": True, "channels": ["whatsapp", "webchat"], "reasons": ["estimated wait 400 s is over 120 s"]}
