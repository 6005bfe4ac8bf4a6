"""The media gateway under `make run`: `python -m media_gateway` as a child process, as its container runs in Azure.

It is a separate process on purpose: the live audio loop must not share an event loop (or a GIL) with the function
app. It inherits the environment `python -m local` has built (local.settings.json, the ACS emulator's endpoint), so
both read the same token secret and customer store. Its log lines go to the same terminal. It runs one gateway
process (GATEWAY_WORKERS=1 unless set), as on the 0.25 vCPU replica `infra/` deploys: the offline models load once.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
import time

import aiohttp

from local import PortInUse
from shared.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # importing numpy, onnxruntime and the conversation core is the slow part
STOP_TIMEOUT = 10.0
#: How long a start waits for the gateway port to be let go. A gateway whose `python -m local` was killed gets
#: SIGTERM from the kernel (see `_exit_with_parent`) and closes its calls before it exits; a host started again
#: at once would otherwise find the port still held by that dying gateway and give up.
PORT_RELEASE_WAIT = 15.0


class GatewayFailed(RuntimeError):
    """The gateway process exited or never answered /healthz."""


class GatewayService:
    name = "media gateway"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._process: asyncio.subprocess.Process | None = None
        self.health_url = f"http://127.0.0.1:{settings.gateway_port}/healthz"

    async def start(self) -> None:
        await self._wait_for_port()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "media_gateway", cwd=PROJECT_ROOT,
            env={**os.environ, "GATEWAY_WORKERS": os.environ.get("GATEWAY_WORKERS", "1")},
            preexec_fn=_exit_with_parent if _PRCTL is not None else None,
        )
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.monotonic() < deadline:
                if self._process.returncode is not None:
                    code = self._process.returncode
                    raise GatewayFailed(f"python -m media_gateway exited with {code} (see its log above)")
                try:
                    async with http.get(self.health_url) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        await self.stop()
        raise GatewayFailed(f"python -m media_gateway did not answer {self.health_url} within {START_TIMEOUT:.0f} s")

    async def stop(self) -> None:
        """SIGTERM (the gateway closes its calls and exits), then a kill if it hangs."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()

    def banner(self) -> list[str]:
        url = self._settings.gateway_public_url
        return [f"voice      {url}/media  (media gateway; health {self.health_url})"]

    async def _wait_for_port(self) -> None:
        """Say which setting to change before starting a child that would only fail on it; a port held a little
        longer (by the gateway of a host killed a moment ago) is waited for, up to PORT_RELEASE_WAIT."""
        deadline = time.monotonic() + PORT_RELEASE_WAIT
        if not self._port_free():  # a person waiting on a held port should know what they are waiting for
            log.warning("port %d is held (a gateway still closing?): waiting up to %.0f s for it",
                        self._settings.gateway_port, PORT_RELEASE_WAIT)
        while not self._port_free():
            if time.monotonic() >= deadline:
                raise PortInUse(f"port {self._settings.gateway_port} is in use: set GATEWAY_PORT=<another port>")
            await asyncio.sleep(0.2)

    def _port_free(self) -> bool:
        with socket.socket() as probe:
            try:
                probe.bind((self._settings.gateway_host, self._settings.gateway_port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
                raise
        return True


_PR_SET_PDEATHSIG = 1


def _prctl():  # resolved in the parent: the child, between fork and exec, should only call it
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl() if sys.platform == "linux" else None


def _exit_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when `python -m local` dies without stopping us (a crash, a
    SIGKILL), so no orphaned gateway keeps the port."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
