"""The scenario's agents as Foundry prompt-agent versions, and their idempotent sync.

Each scenario agent becomes the Foundry agent `<FOUNDRY_AGENT_PREFIX>-<scenario>-<agent>`: its instructions, and as
function tools (run by our code, never by Foundry) its scenario tools with every parameter, plus the same
`check_queue`, `switch_channel`, `handoff_to_<Agent>` and `escalate_to_person` functions the OpenAI policy offers.
What changes from turn to turn (what the record knows, the channel, a long queue) cannot live in a version: the
Foundry policy says it in a developer message of the conversation instead.

A version's metadata carries a digest of its definition, so `sync` creates a version only when the definition
changed: run it on every deploy (the postdeploy hook does) and nothing happens when nothing changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from shared.policies.openai_policy import ESCALATE, SWITCH_CHANNEL, agent_functions
from shared.scenario import AgentSpec, Scenario

log = logging.getLogger(__name__)

DIGEST_KEY = "switchboard_digest"
#: Channels a customer may be offered; the policy still refuses one this customer cannot take this turn.
SWITCH_CHANNELS = ("whatsapp", "webchat")


def agent_name(prefix: str, scenario: Scenario, agent: str) -> str:
    """Foundry agent names are letters, digits and inner hyphens, at most 63 long."""
    raw = f"{prefix}-{scenario.name}-{agent}".lower()
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", raw)).strip("-")[:63].rstrip("-")


def instructions(scenario: Scenario, agent: AgentSpec) -> str:
    return "\n".join([
        f"You are the {agent.title} agent of {scenario.company}, talking with a customer by phone, WhatsApp, text"
        " message or web chat. The conversation may have started on another channel: everything said there is"
        " above, so never ask again for what the customer already said.",
        agent.instructions,
        "",
        "The latest developer message says which channel the customer is on now, what is known about them, and"
        " whether to offer another channel: follow it. Tools receive the facts it lists automatically; never ask"
        " the customer for any of them again.",
        "Use the tools to look things up; never invent account details. When a tool result says something is"
        " missing, ask the customer exactly that. If another agent should take over, call its handoff function.",
        "If the customer asks for a person (a human, a representative), or you cannot help with what they need"
        f" after trying, call {ESCALATE} with the reason in a few words: a person at our desk takes over with"
        " everything said so far. Do not say how long the wait is; the customer is told their place in line.",
        f"Call {SWITCH_CHANNEL} only when the customer agreed to continue on another channel.",
    ])


def tools(scenario: Scenario, agent: AgentSpec) -> list[dict[str, Any]]:
    """The agent's function tools in the Responses API's shape (name, description and parameters at the top)."""
    return [_function(*function) for function in agent_functions(scenario, agent, channels=SWITCH_CHANNELS)]


def _function(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    # Not strict: requirements are any-of sets a JSON schema cannot say plainly, and our tool gate answers an
    # unmet one with the question to ask.
    parameters = {"type": "object", "properties": properties, "additionalProperties": False}
    return {"type": "function", "name": name, "description": description, "parameters": parameters, "strict": False}


@dataclass(frozen=True)
class AgentVersion:
    """One agent's definition as Foundry stores it (`kind: prompt`) and the digest that names its content."""

    name: str
    definition: dict[str, Any]
    description: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.definition, sort_keys=True).encode()).hexdigest()[:32]


def versions(scenario: Scenario, prefix: str, model: str) -> list[AgentVersion]:
    return [
        AgentVersion(
            agent_name(prefix, scenario, agent.name),
            {"kind": "prompt", "model": model, "instructions": instructions(scenario, agent),
             "tools": tools(scenario, agent)},
            f"{scenario.company}: {agent.title} ({scenario.name} scenario, agent {agent.name})"[:512],
        )
        for agent in scenario.agents.values()
    ]


async def sync(project: Any, scenario: Scenario, prefix: str, model: str) -> dict[str, str]:
    """Create a version of each agent whose definition changed; returns agent name -> "created", "updated" or
    "unchanged". `project` is an azure.ai.projects.aio.AIProjectClient."""
    from azure.ai.projects.models import PromptAgentDefinition
    from azure.core.exceptions import ResourceNotFoundError

    outcome: dict[str, str] = {}
    for version in versions(scenario, prefix, model):
        try:
            current = await project.agents.get(version.name)
            latest = current.versions.latest
            known = (latest.metadata or {}).get(DIGEST_KEY)
            state = "unchanged" if known == version.digest else "updated"
        except ResourceNotFoundError:
            state = "created"
        if state != "unchanged":
            created = await project.agents.create_version(
                version.name,
                definition=PromptAgentDefinition(version.definition),
                metadata={DIGEST_KEY: version.digest, "scenario": scenario.name},
                description=version.description,
            )
            log.info("foundry: %s %s version %s", state, version.name, created.version)
        outcome[version.name] = state
    return outcome
