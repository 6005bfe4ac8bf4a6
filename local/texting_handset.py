"""A customer's phone at a terminal, talking to the running emulator's driver routes (local/acs/texting.py): what the
`python -m local.sms` and `python -m local.whatsapp` simulators share.

A message goes to the emulator's inbound route, which posts it to the Functions host as Event Grid would; what the
system sends back to that number is printed as it lands in the emulator's outbox. Each simulator gives its routes,
how an outbox entry reads, and what it adds to the message and its command line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp

from local.project import load_local_settings
from shared.settings import PROJECT_ROOT, Settings, SettingsError

#: After the host has taken the message, how long the outbox must stay quiet before we stop listening for replies.
QUIET_SECONDS = 1.0
POLL_SECONDS = 0.2


class SimulatorError(Exception):
    """Something a person can fix (start `make run`, change a port); the message says what."""


class Handset:
    """One customer's phone, talking to the emulator at `url`."""

    inbound_path: str  # where a customer's message goes
    outbox_path: str  # where what was sent to customers is listed

    def __init__(self, session: aiohttp.ClientSession, url: str, number: str) -> None:
        self.session, self.url, self.number = session, url.rstrip("/"), number
        self.seen: set[str] = set()

    def render(self, message: dict[str, Any]) -> str:
        """How one outbox entry sent to this number reads on the terminal."""
        raise NotImplementedError

    async def catch_up(self) -> None:
        """Remember what is already in the outbox for this number, so only new replies are printed."""
        self.seen |= {m["messageId"] for m in await self._outbox()}

    async def deliver(self, body: dict[str, Any], wait: float) -> int:
        """Send one message (`body` for the inbound route); print what comes back. Returns how many came back."""
        delivery = asyncio.create_task(self._request("POST", self.inbound_path, json=body))
        printed = 0
        while not delivery.done():
            printed += await self._print_new()
            await asyncio.wait({delivery}, timeout=POLL_SECONDS)
        result = delivery.result()
        delivered = 200 <= int(result.get("status") or 0) < 300
        if not delivered:
            print(f"  (the host answered {result.get('status')}; the emulator redelivers it like Event Grid would)")
        # Replies go out before the host answers Event Grid, but a redelivery or a template after a failed status
        # comes later: listen until the outbox has been quiet for a moment (longer while nothing has come back).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (QUIET_SECONDS if delivered else wait)
        while loop.time() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            if new := await self._print_new():
                printed += new
                deadline = max(deadline, loop.time() + QUIET_SECONDS)
        return printed

    async def _print_new(self) -> int:
        new = [m for m in await self._outbox() if m["messageId"] not in self.seen]
        for message in new:
            self.seen.add(message["messageId"])
            print(self.render(message), flush=True)
        return len(new)

    async def _outbox(self) -> list[dict[str, Any]]:
        return await self._request("GET", self.outbox_path, params={"to": self.number})

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self.session.request(method, self.url + path, **kwargs) as response:
                payload = await response.json(content_type=None)
        except aiohttp.ClientConnectionError:
            raise SimulatorError(f"nothing answers at {self.url}: start the system with `make run` first "
                                 "(or point --emulator / ACS_EMULATOR_PORT at the emulator it started)") from None
        except aiohttp.ContentTypeError:
            raise SimulatorError(f"{self.url} is not the ACS emulator (its answer is not JSON)") from None
        if response.status >= 400:
            error = payload.get("error") if isinstance(payload, dict) else None
            message = error.get("message") if isinstance(error, dict) else error
            raise SimulatorError(f"the emulator answered {response.status}: {message or payload}")
        return payload


async def typed_lines() -> AsyncIterator[str]:
    """The customer's messages, a line each, until Ctrl-D or /quit; blank lines are skipped."""
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = (await asyncio.to_thread(input, "you    " if interactive else "")).strip()
        except EOFError:
            print()
            return
        if not interactive and line:  # piped in: echo, so the transcript reads like the terminal
            print(f"you    {line}")
        if line in ("/quit", "/exit"):
            return
        if line:
            yield line


def simulator_parser(prog: str, doc: str, message_help: str) -> argparse.ArgumentParser:
    """The command line every simulator starts from; add its own options, then `parse`."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("message", nargs="?", help=message_help)
    parser.add_argument("--from", dest="number", default="+15555550100",
                        help="the customer's number, E.164 (default: +15555550100, Jordan Lee in the demo data)")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    parser.add_argument("--emulator", help="the ACS emulator's URL (default: http://127.0.0.1:$ACS_EMULATOR_PORT)")
    parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait for a reply that is late")
    args = parser.parse_args(argv)
    if not args.number.startswith("+") or not args.number[1:].isdigit():
        parser.error(f"--from must be an E.164 number like +15555550100, not {args.number!r}")
    return args


def run(args: argparse.Namespace, converse: Callable[[str], Coroutine[Any, Any, None]]) -> int:
    """Run `converse(emulator url)` as a command: 2 when the settings are wrong, 1 for a SimulatorError."""
    try:
        load_local_settings(PROJECT_ROOT)
        url = args.emulator or f"http://127.0.0.1:{Settings.from_env().acs_emulator_port}"
    except SettingsError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(converse(url))
    except SimulatorError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print()
    return 0
