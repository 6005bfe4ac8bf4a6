"""`--policy foundry`: the journeys' scenarios synced to the Foundry project as agent versions before they run.

The Foundry policy calls agents that `python -m shared.foundry sync` made (a deploy runs it); the suite runs the same
sync first, for each scenario its journeys use, so it evaluates the agents as this checkout defines them. The sync is
idempotent: a version is created only when an agent's definition changed, so running the suite again makes none.

The journeys' hosts get the project's settings (below) and SWITCHBOARD_POLICY=foundry; the model the agents run on is
AZURE_OPENAI_DEPLOYMENT, as in a deploy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.scenario import load_scenario
from shared.settings import Settings

#: What the Foundry policy and its sync read (the agents' model, AZURE_OPENAI_DEPLOYMENT, is a model key).
FOUNDRY_KEYS = ("AZURE_AI_PROJECT_ENDPOINT", "FOUNDRY_AGENT_PREFIX", "AZURE_CLIENT_ID", "AZURE_OPENAI_DEPLOYMENT")


def configured(env: Mapping[str, str]) -> bool:
    return bool(env.get("AZURE_AI_PROJECT_ENDPOINT"))


def foundry_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: env[k] for k in FOUNDRY_KEYS if env.get(k)}


async def sync_agents(env: Mapping[str, str], scenarios: Iterable[str]) -> dict[str, dict[str, str]]:
    """Each scenario's agents as versions in the project: scenario -> agent name -> created|updated|unchanged."""
    from shared.foundry.agents import sync  # azure-ai-projects: imported only when the Foundry policy is chosen
    from shared.foundry.client import build_foundry

    outcome: dict[str, dict[str, str]] = {}
    for scenario in sorted(set(scenarios)):
        settings = Settings.from_env({**foundry_env(env), "SWITCHBOARD_SCENARIO": scenario})
        project = build_foundry(settings)
        try:
            outcome[scenario] = await sync(project.project, load_scenario(scenario), settings.foundry_agent_prefix,
                                           settings.azure_openai_deployment)
        finally:
            await project.close()
    return outcome


def described(outcome: Mapping[str, Mapping[str, str]]) -> str:
    """One line per scenario: how many agents, and what the sync did to them."""
    lines = []
    for scenario, agents in outcome.items():
        states = {state: sum(s == state for s in agents.values()) for state in ("created", "updated", "unchanged")}
        done = ", ".join(f"{n} {state}" for state, n in states.items() if n)
        lines.append(f"foundry sync: {scenario}: {len(agents)} agents ({done})")
    return "\n".join(lines)
