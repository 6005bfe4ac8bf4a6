"""The suite with the Foundry policy: `python -m evals --policy foundry` syncs the journeys' agents to the project,
then plays the journeys on the real stack (a `python -m local` per journey, with SWITCHBOARD_POLICY=foundry), the
host's policy reaching the project through the real azure-ai-projects and openai SDKs. The project is
tests/peers/foundry_server.py: a fake at the network boundary, as Azure AI Foundry cannot run here. It answers the
agent's requests in the order they come (a handoff between agents, a tool call, the words) and records what the model
read with each: the conversation's items as the project keeps them.
"""

from __future__ import annotations

import json

import pytest

from evals.__main__ import main
from evals.model import MODEL_KEYS
from shared.foundry.agents import agent_name
from shared.scenario import load_scenario
from tests.peers.foundry_server import FoundryTestServer, ResponseRequest

pytest_plugins = ["tests.peers.foundry_server"]

CALL_OUTAGE = ("There's an outage on Oak Street. Crews expect power back by 4:00 PM. The line is busy right now: "
               "would you like to carry on by web chat instead?")
OUTAGE = "There's an outage at 123 Oak St from a damaged transformer; crews expect power back by 4:00 PM."


def _answering(project: FoundryTestServer, text: str) -> ResponseRequest:
    """The one request whose input ends with the customer's `text`."""
    [request] = [r for r in project.responses if r.texts("user")[-1:] == [text]]
    return request


def _earlier(project: FoundryTestServer, later: ResponseRequest) -> list[ResponseRequest]:
    """The requests made before `later` in its conversation, in order."""
    return [r for r in project.responses[: project.responses.index(later)] if r.conversation == later.conversation]


def _in_order(seen: list[str], expected: list[str]) -> bool:
    """`expected` appear in `seen` in this order (a message the core hands to another agent is read again there)."""
    rest = iter(seen)
    return all(any(item == wanted for item in rest) for wanted in expected)


def _etas(request: ResponseRequest) -> list[str]:
    """The outage estimates of the tool results in what the model read."""
    outputs = [json.loads(i["output"]) for i in request.seen if i["type"] == "function_call_output"]
    return [o["data"]["eta"] for o in outputs if isinstance(o.get("data"), dict) and "eta" in o["data"]]


@pytest.fixture
def project(foundry_server: FoundryTestServer, monkeypatch: pytest.MonkeyPatch) -> FoundryTestServer:
    """The shell `python -m evals` runs in: the project's endpoint, and no model (so no judge, and the Foundry
    policy's fallback is the offline one: the summary and the invite need no scripted answer)."""
    for key in MODEL_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AZURE_AI_PROJECT_ENDPOINT", foundry_server.endpoint)
    return foundry_server


async def test_the_suite_syncs_the_agents_and_the_model_reads_the_earlier_channel_in_the_same_conversation(
    project: FoundryTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # utilities/webchat_to_whatsapp: a web chat visitor's outage, a move to WhatsApp through the real Durable handoff.
    project.reply_tool_calls(("handoff_to_OutageAgent", {"reason": "power outage"}))  # the concierge hands over
    project.reply_text("I'm sorry about that. What's the service address?")
    project.reply_tool_calls(("check_outage", {"service_address": "123 Oak St"}))
    project.reply_text(OUTAGE)
    project.reply_text("Sure. What number should I message you on?")
    project.reply_text("Thanks: I'll message you on WhatsApp at the number ending 0177. Shall I?")
    project.reply_tool_calls(("switch_channel", {"channel": "whatsapp"}))
    # On WhatsApp: the customer's answer to the invite ("hi") reaches the agent too, after the handoff's opening.
    project.reply_text("Welcome back. Is there anything else about the outage?")
    project.reply_text("Yes: crews still expect power back by 4:00 PM.")
    # utilities/caller_to_webchat: a known caller on a busy line asks for a web chat link instead.
    project.reply_tool_calls(("handoff_to_OutageAgent", {"reason": "power outage"}))
    project.reply_tool_calls(("check_outage", {}))  # the caller's address is on the record: the host fills it in
    project.reply_text(CALL_OUTAGE)
    project.reply_tool_calls(("switch_channel", {"channel": "webchat"}))
    project.reply_text("Crews still expect it back by 4:00 PM.")  # on web chat, after the link's opening

    code = await main(["--policy", "foundry", "--parallel", "1", "--show", "all",
                       "--journeys", "utilities/webchat_to_whatsapp.yaml,utilities/caller_to_webchat.yaml"])
    out, err = capsys.readouterr()
    assert code == 0, out + err

    # The scenario's agents were synced to the project first, one version each, before any customer's turn.
    scenario = load_scenario("utilities")
    assert set(project.agents) == {agent_name("switchboard", scenario, a) for a in scenario.agents}
    assert all(len(versions) == 1 for versions in project.agents.values())
    assert project.calls.index("POST agents") < project.calls.index("POST responses")
    assert "foundry sync: utilities: 5 agents (5 created)" in err

    # What the customer saw (or heard, on the call): the model's words, before and after each move.
    assert f"agent: {OUTAGE}" in out
    assert "agent: Yes: crews still expect power back by 4:00 PM." in out
    assert "agent: Crews still expect it back by 4:00 PM." in out
    assert "policy foundry: 2 journeys, task success 2/2 (100%), re-asked slots 0" in out
    assert "handoff success 2/2" in out

    # On WhatsApp the model read the web chat's turns in the same conversation, then the new question.
    on_whatsapp = _answering(project, "is it still out?")
    on_web = _earlier(project, on_whatsapp)
    assert on_web and "on web chat now" in on_web[0].texts("developer")[0]
    # The visitor's words as typed on web chat (`--seed 0`'s paraphrases), the invite's answer, the new question.
    assert _in_order(on_whatsapp.texts("user"), ["my power is out", "123 Oak St, Springfield",
                                                 "can I switch to WhatsApp?", "it's (555) 555-0177", "yes please",
                                                 "hi", "is it still out?"]), on_whatsapp.texts("user")
    assert OUTAGE in on_whatsapp.texts("assistant")
    assert "on WhatsApp now" in on_whatsapp.texts("developer")[-1]
    assert on_whatsapp.agent == agent_name("switchboard", scenario, "OutageAgent")
    assert _etas(on_whatsapp) == ["4:00 PM"]  # check_outage ran in the host with the model's arguments

    # On web chat the model read the call: the caller's words as the gateway heard them, and its own spoken answer.
    on_chat = _answering(project, "how long until it comes back?")
    on_call = _earlier(project, on_chat)
    assert on_call and "on voice now" in on_call[0].texts("developer")[0]
    heard = on_chat.texts("user")
    assert "power" in heard[0].lower() and "link" in heard[-2].lower(), heard
    assert CALL_OUTAGE in on_chat.texts("assistant")
    assert "on web chat now" in on_chat.texts("developer")[-1]
    assert _etas(on_chat) == ["4:00 PM"]  # the caller's address came from the record: the model gave none
    # Two customers, two conversations.
    assert on_chat.conversation != on_whatsapp.conversation


async def test_the_foundry_policy_without_a_project_endpoint_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AZURE_AI_PROJECT_ENDPOINT", raising=False)
    assert await main(["--policy", "foundry", "--journeys", "utilities/balance_whatsapp.yaml"]) == 2
    assert "--policy foundry needs AZURE_AI_PROJECT_ENDPOINT" in capsys.readouterr().err
