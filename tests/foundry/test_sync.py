"""`python -m shared.foundry sync` against tests/peers/foundry_server.py, a stand-in for the Foundry project at the
network boundary (Foundry cannot run here): the scenario's agents become agent versions, and only a change makes a
new one."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from shared.foundry.agents import DIGEST_KEY, agent_name
from shared.scenario import load_scenario
from shared.settings import PROJECT_ROOT
from tests.peers.foundry_server import FoundryTestServer

pytest_plugins = ["tests.peers.foundry_server"]


async def run_sync(server: FoundryTestServer, tmp_path: Path, **env: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.foundry", "sync", cwd=PROJECT_ROOT,
        env={**os.environ, "AZURE_AI_PROJECT_ENDPOINT": server.endpoint, "SWITCHBOARD_DATA_DIR": str(tmp_path), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_sync_creates_each_agent_once_and_a_new_version_only_when_it_changed(
    foundry_server: FoundryTestServer, tmp_path: Path
) -> None:
    scenario = load_scenario("utilities")
    names = {agent_name("switchboard", scenario, a) for a in scenario.agents}

    code, out = await run_sync(foundry_server, tmp_path)
    assert code == 0, out
    assert set(foundry_server.agents) == names
    billing = foundry_server.agents[agent_name("switchboard", scenario, "BillingAgent")][-1]
    tools = {t["name"] for t in billing["definition"]["tools"]}
    assert {"handoff_to_UtilitiesConcierge", "escalate_to_person", "switch_channel"} <= tools
    assert all(t["type"] == "function" for t in billing["definition"]["tools"])  # our code runs them
    assert DIGEST_KEY in billing["metadata"]

    code, out = await run_sync(foundry_server, tmp_path)  # the next deploy, nothing changed
    assert code == 0, out
    assert all(len(v) == 1 for v in foundry_server.agents.values()), "a version was created with nothing changed"
    assert out.count("unchanged") == len(names)

    code, out = await run_sync(foundry_server, tmp_path, AZURE_OPENAI_DEPLOYMENT="gpt-4.1-mini")  # a new model
    assert code == 0, out
    assert all(len(v) == 2 for v in foundry_server.agents.values())
    assert billing["definition"]["model"] == "gpt-4o-mini"
    assert foundry_server.agents[billing["name"]][-1]["definition"]["model"] == "gpt-4.1-mini"


async def test_sync_without_a_project_endpoint_says_so(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.foundry", "sync", cwd=PROJECT_ROOT,
        env={**{k: v for k, v in os.environ.items() if k != "AZURE_AI_PROJECT_ENDPOINT"},
             "SWITCHBOARD_DATA_DIR": str(tmp_path)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode == 2 and b"AZURE_AI_PROJECT_ENDPOINT" in out
