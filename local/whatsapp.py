"""`python -m local.whatsapp`: be a WhatsApp customer of the running system (`make run`), from a terminal.

    python -m local.whatsapp --from +15555550100 "my lights are out"    # one message, then the agent's replies
    python -m local.whatsapp --from +15555550123                        # a conversation: a line per message

Each message goes to the ACS emulator (`POST /_emulator/inbound`), which notes when the customer wrote (that opens
WhatsApp's 24-hour window) and posts an AdvancedMessageReceived event to the Functions host exactly as Event Grid
would. The agent's replies are printed as they land in the emulator's outbox. `--hours-ago 25` sends a message as if
it had been written a day ago and delivered late, which shows the template that goes out when the window is closed.
In a conversation, `/image`, `/audio` or `/location` send one of those instead of text. Every other message goes
without a `messageId`, as the docs' samples of the event are, so the app's fallback (the event's id) is exercised
whenever a person talks to it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

from local.project import load_local_settings
from shared.settings import PROJECT_ROOT, Settings, SettingsError

#: After the host has taken the event, how long the outbox must stay quiet before we stop listening for replies.
QUIET_SECONDS = 1.0
POLL_SECONDS = 0.2
MEDIA_COMMANDS = {"/image": "image", "/audio": "audio", "/location": "location", "/video": "video"}


class SimulatorError(Exception):
    """Something a person can fix (start `make run`, change a port); the message says what."""


class Phone:
    """One customer's WhatsApp, talking to the emulator at `url`."""

    def __init__(self, session: aiohttp.ClientSession, url: str, number: str) -> None:
        self.session, self.url, self.number = session, url.rstrip("/"), number
        self.seen: set[str] = set()
        self.sent = 0

    async def catch_up(self) -> None:
        """Remember what is already in the outbox for this number, so only new replies are printed."""
        self.seen |= {m["messageId"] for m in await self._outbox()}

    async def send(self, text: str, kind: str = "text", hours_ago: float = 0, wait: float = 15.0) -> None:
        body: dict[str, Any] = {"from": self.number, "type": kind}
        self.sent += 1
        if self.sent % 2 == 0:
            body["messageId"] = None  # the emulator leaves it out of the event, as ACS's samples do
        if kind == "text":
            body["text"] = text
        elif text:
            body["caption"] = text
        if hours_ago:
            body["receivedTimestamp"] = (datetime.now(timezone.utc) - timedelta(hours=hours_ago)).isoformat()
        delivery = asyncio.create_task(self._post("/_emulator/inbound", body))
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
        if not printed and kind != "reaction":
            print(f"  (no reply yet; the outbox is at {self.url}/_emulator/messages?to={self.number})")

    async def _print_new(self) -> int:
        new = [m for m in await self._outbox() if m["messageId"] not in self.seen]
        for message in new:
            self.seen.add(message["messageId"])
            print(_render(message), flush=True)
        return len(new)

    async def _outbox(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/_emulator/messages", params={"to": self.number})

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", path, json=body)

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self.session.request(method, self.url + path, **kwargs) as response:
                payload = await response.json(content_type=None)
        except aiohttp.ClientConnectionError:
            raise SimulatorError(
                f"nothing answers at {self.url}: start the system with `make run` first "
                "(or point --emulator / ACS_EMULATOR_PORT at the emulator it started)"
            ) from None
        except aiohttp.ContentTypeError:
            raise SimulatorError(f"{self.url} is not the ACS emulator (its answer is not JSON)") from None
        if response.status >= 400:
            error = payload.get("error") if isinstance(payload, dict) else None
            message = error.get("message") if isinstance(error, dict) else error
            raise SimulatorError(f"the emulator answered {response.status}: {message or payload}")
        return payload


def _render(message: dict[str, Any]) -> str:
    if message["kind"] == "template":
        values = ", ".join(f"{k}={v}" for k, v in (message.get("templateValues") or {}).items())
        line = f"agent  [template {message['template']} ({message.get('language')}): {values}]"
    else:
        line = f"agent  {message.get('content')}"
    if message.get("status") == "failed" and message.get("error"):
        line += f"  (failed: {message['error'].get('channelCode')} {message['error'].get('channelMessage')})"
    return line


async def converse(url: str, number: str, text: str | None, kind: str, hours_ago: float, wait: float) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        phone = Phone(session, url, number)
        await phone.catch_up()
        if text is not None or kind != "text":
            print(f"you    {text or '[' + kind + ']'}")
            await phone.send(text or "", kind, hours_ago, wait)
            return
        print(f"WhatsApp as {number} (Ctrl-D or /quit to leave; /image, /audio, /location send media)")
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
            if not line:
                continue
            command, _, caption = line.partition(" ")
            if command in MEDIA_COMMANDS:
                await phone.send(caption, MEDIA_COMMANDS[command], hours_ago, wait)
            else:
                await phone.send(line, "text", hours_ago, wait)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.whatsapp", description=__doc__.splitlines()[0])
    parser.add_argument("message", nargs="?", help="what the customer writes; leave it out for a conversation")
    parser.add_argument("--from", dest="number", default="+15555550100",
                        help="the customer's number, E.164 (default: +15555550100, Jordan Lee in the demo data)")
    parser.add_argument("--type", dest="kind", default="text", choices=["text", "image", "audio", "video", "location"],
                        help="send media instead of text (the message becomes its caption)")
    parser.add_argument("--hours-ago", type=float, default=0,
                        help="date the message this many hours back (over 24: the reply window is closed)")
    parser.add_argument("--emulator", help="the ACS emulator's URL (default: http://127.0.0.1:$ACS_EMULATOR_PORT)")
    parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait for a reply that is late")
    args = parser.parse_args(argv)

    if not args.number.startswith("+") or not args.number[1:].isdigit():
        parser.error(f"--from must be an E.164 number like +15555550100, not {args.number!r}")
    try:
        load_local_settings(PROJECT_ROOT)
        url = args.emulator or f"http://127.0.0.1:{Settings.from_env().acs_emulator_port}"
    except SettingsError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(converse(url, args.number, args.message, args.kind, args.hours_ago, args.wait))
    except SimulatorError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
