"""`python -m local.sms`: text the running system (`make run`) from a terminal, as a customer's phone would.

    python -m local.sms --from +15555550100 "is there an outage on my street?"   # one text, then the replies
    python -m local.sms --from +15555550123                                        # a conversation: a line a text

Each text goes to the ACS emulator (`POST /_emulator/sms/inbound`), which posts an SMSReceived event to the
Functions host as Event Grid would. What the system texts back to that number (replies, codes, links, promised
notifications) is printed as it lands in the emulator's SMS outbox. STOP, START and HELP work as on a real number.
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp

from local.texting_handset import Handset, parse, run, simulator_parser, typed_lines


class SmsHandset(Handset):
    """One customer's phone, texting through the emulator at `url`."""

    inbound_path = "/_emulator/sms/inbound"
    outbox_path = "/_emulator/sms"

    def render(self, message: dict[str, Any]) -> str:
        return f"agent  {message['message']}"

    async def text(self, text: str, wait: float = 15.0) -> int:
        """Send one text; print what comes back. Returns how many texts came back."""
        return await self.deliver({"from": self.number, "text": text}, wait)


async def converse(url: str, number: str, text: str | None, wait: float) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        handset = SmsHandset(session, url, number)
        await handset.catch_up()
        if text is not None:
            print(f"you    {text}")
            if not await handset.text(text, wait):
                print(f"  (no reply; STOP, START and an opted-out number get none. Outbox: "
                      f"{url}/_emulator/sms?to={number})")
            return
        print(f"Texting as {number} (Ctrl-D or /quit to leave)")
        async for line in typed_lines():
            await handset.text(line, wait)


def main(argv: list[str] | None = None) -> int:
    parser = simulator_parser("python -m local.sms", __doc__,
                              "what the customer texts; leave it out for a conversation")
    args = parse(parser, argv)
    return run(args, lambda url: converse(url, args.number, args.message, args.wait))


if __name__ == "__main__":
    sys.exit(main())
