"""A model playing the customer (`--simulate`) and a model judging each transcript, through the same OpenAI client
the OpenAI policy uses (shared/policies/openai_policy.py: Azure OpenAI or an OpenAI-compatible endpoint, from
AZURE_OPENAI_* or OPENAI_*), so whatever endpoint the agent is evaluated on also plays and grades.
"""

from __future__ import annotations

import json
import re
from typing import Any

from evals.journeys import Journey, Line
from shared.policies.openai_policy import OpenAIPolicy
from shared.settings import PROJECT_ROOT, Settings

#: The environment a model is configured by; `configured` says whether one is.
MODEL_KEYS = ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_DEPLOYMENT", "AZURE_OPENAI_API_VERSION",
              "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "LLM_TIMEOUT_SECONDS")
RUBRIC = ("goal_met", "accurate", "tone", "no_repetition_asked")

CUSTOMER_PROMPT = """You play a customer contacting a {scenario} company's assistant, to test it.
Persona: {persona}
Your goal: {goal}
Channel: {channel}. Write only the customer's next message: one short, natural message in your own words, as this
persona would write or say it. Do not add quotes, labels or explanations. This message should do what this step of
the script does (keep every number, name and address exactly as given): {step}"""

JUDGE_PROMPT = """You grade a conversation between a customer and a {scenario} company's AI assistant.
Customer's goal: {goal}
Persona: {persona}
The back office's data (what the assistant's tools return; any figure the assistant gives must agree with it):
{data}
Grade the transcript against this rubric:
- goal_met: the customer's goal was reached (or rightly handed to a person or another channel when that was the goal)
- accurate: every fact the assistant stated agrees with the data above; nothing invented or contradicted
- tone: polite, clear and concise for the channel
- no_repetition_asked: the assistant never asked for something the customer had already given
Answer with one JSON object only: {{"goal_met": true|false, "accurate": true|false, "tone": true|false,
"no_repetition_asked": true|false, "verdict": "passed"|"failed", "reasons": "one or two sentences"}}.
The verdict is "failed" if any criterion is false."""


def configured(env: dict[str, str]) -> bool:
    return bool(env.get("AZURE_OPENAI_ENDPOINT") or env.get("OPENAI_BASE_URL"))


def model_env(env: dict[str, str]) -> dict[str, str]:
    return {k: env[k] for k in MODEL_KEYS if env.get(k)}


class _Model:
    def __init__(self, env: dict[str, str]) -> None:
        self._policy = OpenAIPolicy(Settings.from_env(model_env(env)))

    async def complete(self, system: str, user: str) -> str:
        return (await self._policy.complete([{"role": "system", "content": system},
                                             {"role": "user", "content": user}])).strip()

    async def close(self) -> None:
        await self._policy.close()


class SimulatedCustomer(_Model):
    """Words each scripted line from the persona and the goal, given the conversation so far."""

    async def line(self, journey: Journey, line: Line, scripted: str, transcript: list[tuple[str, str]]) -> str:
        system = CUSTOMER_PROMPT.format(scenario=journey.scenario, persona=journey.persona, goal=journey.goal,
                                        channel=journey.channel, step=scripted)
        said = await self.complete(system, _conversation(transcript) or "(the conversation has not started)")
        return said.strip().strip('"') or scripted  # an empty answer would send nothing: say the script's line


class Judge(_Model):
    """Grades a transcript against the rubric; returns the verdict with `passed` and the judge's `reasons`."""

    async def grade(self, journey: Journey, transcript: list[tuple[str, str]]) -> dict[str, Any]:
        data = (PROJECT_ROOT / "scenarios" / journey.scenario / "data.yaml").read_text()
        system = JUDGE_PROMPT.format(scenario=journey.scenario, goal=journey.goal, persona=journey.persona, data=data)
        try:
            raw = await self.complete(system, _conversation(transcript))
        except Exception as exc:  # a judge that cannot answer grades nothing: the journey says so and fails
            return {"passed": False, "reasons": f"the judge could not be asked: {type(exc).__name__}: {exc}"}
        verdict = _json_object(raw)
        if verdict is None or "verdict" not in verdict:
            return {"passed": False, "reasons": f"the judge's answer was not a verdict: {raw[:200]!r}"}
        failed = [k for k in RUBRIC if verdict.get(k) is False]
        verdict["passed"] = verdict["verdict"] == "passed" and not failed
        verdict["reasons"] = str(verdict.get("reasons") or "") + (f" (false: {', '.join(failed)})" if failed else "")
        return verdict


def _conversation(transcript: list[tuple[str, str]]) -> str:
    return "\n".join(f"{'Customer' if who == 'customer' else 'Assistant'}: {text}" for who, text in transcript)


def _json_object(raw: str) -> dict[str, Any] | None:
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", raw.strip())
    try:
        parsed = json.loads(text[text.find("{"): text.rfind("}") + 1])
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None

