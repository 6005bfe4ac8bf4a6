"""The suite with a model: the OpenAI policy on the real stack, a model playing the customer from the persona
(`--simulate`) and a model judging each transcript, all through the `openai` SDK against the scripted
OpenAI-compatible test server (tests/peers/openai_server.py: a fake at the network boundary, as no real model can
run here). The server answers in the order the requests come: the simulated customer's line (this process), then
the agent's requests for that turn (the host's policy: a handoff between agents, a tool call, the words), and at the
end the judge's verdict.
"""

from __future__ import annotations

import json

from evals import journeys, model, report, runner
from evals.live import LiveDriver
from tests.peers.openai_server import OpenAITestServer

PASSED = {"goal_met": True, "accurate": True, "tone": True, "no_repetition_asked": True, "verdict": "passed",
          "reasons": "The outage and its 4:00 PM estimate were given, and the follow-up got the short answer."}
FAILED = {"goal_met": True, "accurate": False, "tone": True, "no_repetition_asked": True, "verdict": "failed",
          "reasons": "The balance given is not the one in the data."}


def _env(server: OpenAITestServer) -> dict[str, str]:
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "k", "OPENAI_MODEL": "gpt-test"}


def _tool_results(server: OpenAITestServer) -> list[dict]:
    return [json.loads(m["content"]) for r in server.requests for m in r.messages if m["role"] == "tool"]


async def test_the_openai_policy_a_simulated_customer_and_a_judge_run_a_journey(openai_server) -> None:
    env = _env(openai_server)
    journey = journeys.load("utilities/outage_follow_up.yaml")[0]
    # Turn 1: the customer's words from the persona; the concierge hands to Outage, which asks where.
    openai_server.reply_text("hi, the power is out on my street")
    openai_server.reply_tool_calls(("handoff_to_OutageAgent", {"reason": "power outage"}))
    openai_server.reply_text("I'm sorry about that. What's the service address?")
    # Turn 2: the address; the model calls the tool with it and words the answer from its result.
    openai_server.reply_text("it's 123 Oak St")
    openai_server.reply_tool_calls(("check_outage", {"service_address": "123 Oak St"}))
    openai_server.reply_text("There's an outage at 123 Oak St from a damaged transformer; crews expect power back "
                             "by 4:00 PM.")
    # Turn 3: the follow-up.
    openai_server.reply_text("ok, so how long until it's back?")
    openai_server.reply_text("Crews expect it back by 4:00 PM.")
    openai_server.reply_text(json.dumps(PASSED))

    driver, customer, judge = LiveDriver("openai", model.model_env(env)), model.SimulatedCustomer(env), model.Judge(env)
    try:
        result = await runner.run(driver, journey, 0, customer, judge)
    finally:
        await customer.close()
        await judge.close()
        driver.close()

    shown = report.transcript(result)
    assert result.success and not result.reasked, f"{result.failures} {result.error}\n{shown}"
    said = [text for who, text in result.transcript if who == "customer"]
    assert said == ["hi, the power is out on my street", "it's 123 Oak St", "ok, so how long until it's back?"]
    # The tool ran in the host with the model's arguments, and its result went back to the model.
    [outage] = _tool_results(openai_server)
    assert outage["data"]["eta"] == "4:00 PM" and "transformer" in json.dumps(outage)
    # The simulated customer was given the persona and the goal; the judge the transcript and the tool data.
    assert journey.persona in openai_server.requests[0].messages[0]["content"]
    judged = openai_server.requests[-1].messages
    assert "2,400" in judged[0]["content"] or "2400" in judged[0]["content"]
    assert "Assistant: Crews expect it back by 4:00 PM." in judged[1]["content"]
    assert result.verdict is not None and result.verdict["passed"] and "judge passed 1/1" in report.totals([result], "openai")
    assert len(openai_server.requests) == 9


async def test_a_judges_failed_verdict_fails_a_journey_that_met_every_scripted_check(openai_server) -> None:
    env = _env(openai_server)
    journey = journeys.load("utilities/balance_whatsapp.yaml")[0]
    # WhatsApp vouches for the sender, so Billing's get_balance runs at once and the model words its result.
    openai_server.reply_text("what's my bill?")
    openai_server.reply_tool_calls(("handoff_to_BillingAgent", {"reason": "balance"}))
    openai_server.reply_tool_calls(("get_balance", {}))
    openai_server.reply_text("Your balance is $42.10, due December 15.")
    openai_server.reply_text("```json\n" + json.dumps(FAILED) + "\n```")

    driver, customer, judge = LiveDriver("openai", model.model_env(env)), model.SimulatedCustomer(env), model.Judge(env)
    try:
        result = await runner.run(driver, journey, 0, customer, judge)
    finally:
        await customer.close()
        await judge.close()
        driver.close()

    [balance] = _tool_results(openai_server)
    assert balance["data"]["balance"] == 42.10
    assert not result.success and not result.error
    assert result.failures == [f"judge: {FAILED['reasons']} (false: accurate)"], report.transcript(result)
    assert "judge: FAILED" in report.transcript(result)
