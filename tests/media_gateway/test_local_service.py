"""`make run` starts the gateway as its own process and stops it cleanly."""

from __future__ import annotations

import aiohttp
import pytest

from local import PortInUse
from local.gateway import GatewayService
from shared.settings import SETTINGS, Settings
from tests.peers import free_port


async def test_the_gateway_runs_as_its_own_process_and_stops_on_sigterm(tmp_path, monkeypatch) -> None:
    for key in SETTINGS:  # only what this test says: not the developer's shell
        monkeypatch.delenv(key, raising=False)
    env = {"GATEWAY_PORT": str(free_port()), "SWITCHBOARD_DATA_DIR": str(tmp_path), "GATEWAY_PRELOAD_MODELS": "false"}
    for key, value in env.items():  # the child inherits this process's environment, as under `make run`
        monkeypatch.setenv(key, value)
    service = GatewayService(Settings.from_env(env))
    await service.start()
    try:
        assert service.banner() == [f"voice      ws://127.0.0.1:{env['GATEWAY_PORT']}/media  (media gateway; health {service.health_url})"]
        async with aiohttp.ClientSession() as http:
            async with http.get(service.health_url) as response:
                assert response.status == 200 and (await response.json())["engines"]["kind"] == "offline"
        # A second one waits a moment for the port (a killed host's gateway may be closing), then says which setting
        # to change.
        monkeypatch.setattr("local.gateway.PORT_RELEASE_WAIT", 0.5)
        with pytest.raises(PortInUse, match="GATEWAY_PORT"):
            await GatewayService(Settings.from_env(env)).start()
    finally:
        process = service._process
        await service.stop()
    assert process is not None and process.returncode == 0  # it exited on SIGTERM, not by a kill
