"""`python -m shared.foundry sync`: create or update the scenario's agents as Foundry agent versions.

Reads the same settings as the app (AZURE_AI_PROJECT_ENDPOINT, SWITCHBOARD_SCENARIO, FOUNDRY_AGENT_PREFIX, and
AZURE_OPENAI_DEPLOYMENT as the agents' model); signs in with DefaultAzureCredential (az login, or the managed
identity). Prints one line per agent and exits 0; nothing is created when nothing changed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from shared.foundry.agents import sync
from shared.scenario import load_scenario
from shared.settings import Settings, SettingsError


async def _sync(settings: Settings) -> dict[str, str]:
    from shared.foundry.client import build_foundry

    foundry = build_foundry(settings)
    try:
        return await sync(foundry.project, load_scenario(settings.scenario), settings.foundry_agent_prefix,
                          settings.azure_openai_deployment)
    finally:
        await foundry.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.foundry")
    parser.add_argument("command", choices=["sync"], help="sync: create or update the scenario's agent versions")
    parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if not settings.azure_ai_project_endpoint:
            raise SettingsError("AZURE_AI_PROJECT_ENDPOINT is not set: there is no Foundry project to sync to")
        outcome = asyncio.run(_sync(settings))
    except SettingsError as exc:
        print(f"foundry sync: {exc}", file=sys.stderr)
        return 2
    for name, state in outcome.items():
        print(f"{state:9} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
