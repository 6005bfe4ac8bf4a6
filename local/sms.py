"""`python -m local.sms`: text the running system (`make run`) from a terminal, as a customer's phone would.

    python -m local.sms --from +15555550100 "is there an outage on my street?"   # one text, then the replies
    python -m local.sms --from +15555550123                                        # a conversation: a line a text

Each text goes to the ACS emulator (`POST /_emulator/sms/inbound`), which posts an SMSReceived event to the
Functions host as Event Grid would. What the system texts back to that number (replies, codes, links, promised
notifications) is printed as it lands in the emulator's SMS outbox. STOP, START and HELP work as on a real number.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import aiohttp

from local.project import load_local_settings
from shared.settings import PROJECT_ROOT, Settings, SettingsError

#: After the host has taken the text, how long the outbox must stay quiet before we stop listening for replies.
QUIET_SECONDS = 1.0
POLL_SECONDS = 0.2


class SimulatorError(Exception):
    """Something a person can fix (start `make run`, change a port); the message says what."""


class Handset:
    """One customer's phone, texting through the emulator at `url`."""

    def __init__(self, session: aiohttp.ClientSession, url: str, number: str) -> None:
        self.session, self.url, self.number = session, url.rstrip("/"), number
        self.seen: set[str] = set()

    async def catch_up(self) -> None:
        """Remember what is already in the outbox for this number, so only new texts are printed."""
        self.seen |= {t["messageId"] for t in await self._outbox()}

    async def text(self, text: str, wait: float = 15.0) -> int:
        """Send one text; print what comes back. Returns how many texts came back."""
        delivery = asyncio.create_task(self._request("POST", "/_emulator/sms/inbound",
                                                     json={"from": self.number, "text": text}))
        printed = 0
        while not delivery.done():
            printed += await self._print_new()
            await asyncio.wait({delivery}, timeout=POLL_SECONDS)
        result = delivery.result()
        delivered = 200 <= int(result.get("status") or 0) < 300
        if not delivered:
            print(f"  (the host answered {result.get('status')}; the emulator redelivers it like Event Grid would)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (QUIET_SECONDS if delivered else wait)
        while loop.time() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            if new := await self._print_new():
                printed += new
                deadline = max(deadline, loop.time() + QUIET_SECONDS)
        return printed

    async def _print_new(self) -> int:
        new = [t for t in await self._outbox() if t["messageId"] not in self.seen]
        for text in new:
            self.seen.add(text["messageId"])
            print(f"agent  {text['message']}", flush=True)
        return len(new)

    async def _outbox(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/_emulator/sms", params={"to": self.number})

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


async def converse(url: str, number: str, text: str | None, wait: float) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        handset = Handset(session, url, number)
        await handset.catch_up()
        if text is not None:
            print(f"you    {text}")
            if not await handset.text(text, wait):
                print(f"  (no reply; STOP, START and an opted-out number get none. Outbox: "
                      f"{url}/_emulator/sms?to={number})")
            return
        print(f"Texting as {number} (Ctrl-D or /quit to leave)")
        interactive = sys.stdin.isatty()
        while True:
            try:
                line = (await asyncio.to_thread(input, "you    " if interactive else "")).strip()
            except EOFError:
                print()
                return
            if not interactive and line:
                print(f"you    {line}")
            if line in ("/quit", "/exit"):
                return
            if line:
                await handset.text(line, wait)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.sms", description=__doc__.splitlines()[0])
    parser.add_argument("message", nargs="?", help="what the customer texts; leave it out for a conversation")
    parser.add_argument("--from", dest="number", default="+15555550100",
                        help="the customer's number, E.164 (default: +15555550100, Jordan Lee in the demo data)")
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
        asyncio.run(converse(url, args.number, args.message, args.wait))
    except SimulatorError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
