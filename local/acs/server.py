"""The emulator's aiohttp app: HMAC-checked API routes plus an unauthenticated `/_emulator/...` inspection surface.

API modules register with `ApiModule.install(app, emulator)`; tests and people read what the emulator saw at
`/_emulator/...` routes the modules add (e.g. `GET /_emulator/messages`, `GET /_emulator/sms`).
"""

from __future__ import annotations

import base64
import errno
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from local import PortInUse
from local.acs.auth import verify

log = logging.getLogger("local.acs")

EMULATOR_KEY = web.AppKey("acs_emulator", object)


class ApiModule(Protocol):
    """One ACS API (messages, calls): adds its routes and state to the emulator."""

    def install(self, app: web.Application, emulator: "AcsEmulator") -> None: ...


@dataclass
class AcsEmulator:
    """Settings and shared state of one emulator instance."""

    access_key: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    functions_url: str = "http://127.0.0.1:7071"  # where events and callbacks are delivered
    modules: list[ApiModule] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # per-module state, keyed by module name

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate], client_max_size=1024 * 1024)
        app[EMULATOR_KEY] = self
        for module in self.modules:
            module.install(app, self)
        return app

    @web.middleware
    async def _authenticate(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        body = await request.read()
        if reason := verify(request, body, self.access_key):
            log.warning("rejected %s %s: %s", request.method, request.path, reason)
            return web.json_response({"error": {"code": "Unauthorized", "message": reason}}, status=401)
        return await handler(request)


class EmulatorService:
    """The emulator as one of `make run`'s services (see local/__main__.py)."""

    name = "ACS emulator"

    def __init__(self, emulator: AcsEmulator, port: int) -> None:
        self.emulator = emulator
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.emulator.build_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {self.port} is in use: set ACS_EMULATOR_PORT=<another port>") from None
            raise

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def banner(self) -> list[str]:
        return [f"ACS emu    {self.url}  (outbox: {self.url}/_emulator/messages, texts: {self.url}/_emulator/sms)"]
