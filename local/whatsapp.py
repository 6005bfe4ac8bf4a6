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

import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

from local.texting_handset import Handset, parse, run, simulator_parser, typed_lines

MEDIA_COMMANDS = {"/image": "image", "/audio": "audio", "/location": "location", "/video": "video"}


class Phone(Handset):
    """One customer's WhatsApp, talking to the emulator at `url`."""

    inbound_path = "/_emulator/inbound"
    outbox_path = "/_emulator/messages"

    def __init__(self, session: aiohttp.ClientSession, url: str, number: str) -> None:
        super().__init__(session, url, number)
        self.sent = 0

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
        if not await self.deliver(body, wait) and kind != "reaction":
            print(f"  (no reply yet; the outbox is at {self.url}{self.outbox_path}?to={self.number})")

    def render(self, message: dict[str, Any]) -> str:
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
        async for line in typed_lines():
            command, _, caption = line.partition(" ")
            if command in MEDIA_COMMANDS:
                await phone.send(caption, MEDIA_COMMANDS[command], hours_ago, wait)
            else:
                await phone.send(line, "text", hours_ago, wait)


def main(argv: list[str] | None = None) -> int:
    parser = simulator_parser("python -m local.whatsapp", __doc__,
                              "what the customer writes; leave it out for a conversation")
    parser.add_argument("--type", dest="kind", default="text", choices=["text", "image", "audio", "video", "location"],
                        help="send media instead of text (the message becomes its caption)")
    parser.add_argument("--hours-ago", type=float, default=0,
                        help="date the message this many hours back (over 24: the reply window is closed)")
    args = parse(parser, argv)
    return run(args, lambda url: converse(url, args.number, args.message, args.kind, args.hours_ago, args.wait))


if __name__ == "__main__":
    sys.exit(main())
