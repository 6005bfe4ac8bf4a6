"""Channel handoff latency, through a local host of its own (Functions host, Durable engine, ACS emulator).

    python bench/handoff.py [--runs 30]

Each run is one caller on a busy line: the voice leg runs the conversation core on channel `voice` in this process,
on the host's own record store (what the media gateway does), the caller asks about the outage at Jordan's account
and proves it is theirs (his ZIP code and last name), accepts WhatsApp, and the handoff starts through
`POST /api/handoffs`. Two figures, p50/p95 over the runs:

- accept → invite: from the handoff request to the invitation template in the emulator's outbox (the orchestration
  summarising, saving the context and sending, through the local Durable engine);
- first message → first reply: from the customer's first WhatsApp message to the continuation in the outbox
  (Event Grid delivery, the new session opening with the context, the turn, the send).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project, for shared/
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: `python bench/handoff.py`
from common import BenchHost, HostFailed, Proof, local_host, percentile  # noqa: E402

from shared.conversation import Conversation  # noqa: E402
from shared.models import Channel, Identity, IdentityKind, new_id  # noqa: E402
from shared.policies.offline import OfflinePolicy  # noqa: E402
from shared.scenario import load_scenario  # noqa: E402
from shared.stores.embedded_customers import SqliteCustomerStore  # noqa: E402
from shared.stores.embedded_state import InProcessSessionState  # noqa: E402
from shared.tokens import TokenSigner, load_secret  # noqa: E402
from tests.verifying import CONFIRMED, knowledge_answers  # noqa: E402

POLL = 0.005


async def wait_for(client: httpx.AsyncClient, url: str, phone: str, kind: str, after: int, timeout: float = 30) -> float:
    """Poll the emulator's outbox until a message of `kind` beyond the first `after` arrives; return when it did."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        outbox = (await client.get(f"{url}/_emulator/messages", params={"to": phone})).json()
        if any(m["kind"] == kind for m in outbox[after:]):
            return time.perf_counter()
        await asyncio.sleep(POLL)
    raise TimeoutError(f"no {kind} message for {phone} within {timeout}s")


async def one_run(host: BenchHost, conversation: Conversation, client: httpx.AsyncClient) -> tuple[float, float]:
    phone = f"+1222{uuid.uuid4().int % 10**7:07d}"
    session_id = new_id("call")
    opened = await conversation.open_for_identity(Channel.VOICE, session_id, Identity(IdentityKind.PHONE, phone))
    customer_id = opened.customer.customer_id
    await conversation.turn(session_id, customer_id, "my power is out, account 100200300")
    # The outage at his address is Jordan's to hear: he proves it's him (this core sends no codes: the questions).
    checked = await conversation.turn(session_id, customer_id, knowledge_answers(Proof.ACCOUNT))
    assert checked.replies[0].text == CONFIRMED, checked.replies
    outcome = await conversation.turn(session_id, customer_id, "yes please")
    assert outcome.switch_to == "whatsapp", outcome.replies

    token = TokenSigner(load_secret("", host.data_dir)).issue("call-control", 600, sid=session_id, cid=customer_id)
    started = time.perf_counter()
    response = await client.post(
        f"{host.url}/api/handoffs", json={"customer_id": customer_id, "session_id": session_id, "to_channel": "whatsapp"},
        headers={"Authorization": f"Bearer {token}"},  # the call's control token, as the gateway sends it
    )
    response.raise_for_status()
    invited = await wait_for(client, host.acs_url, phone, "template", 0)

    wrote = time.perf_counter()
    response = await client.post(f"{host.acs_url}/_emulator/inbound", json={"from": phone, "text": "hi, I'm here"})
    response.raise_for_status()
    replied = await wait_for(client, host.acs_url, phone, "text", 1)
    return (invited - started) * 1000, (replied - wrote) * 1000


async def run(host: BenchHost, runs: int) -> tuple[list[float], list[float]]:
    scenario = load_scenario("utilities")
    store = SqliteCustomerStore(host.data_dir / "customers.sqlite3")
    conversation = Conversation(scenario, store, InProcessSessionState(), OfflinePolicy())
    await conversation.queue.set(waiting=80, estimated_wait_seconds=600)
    invites, replies = [], []
    async with httpx.AsyncClient(timeout=60) as client:
        await client.get(f"{host.url}/api/ops/queue")  # the app's services build on first use: not part of a run
        for i in range(runs):
            invite_ms, reply_ms = await one_run(host, conversation, client)
            invites.append(invite_ms)
            replies.append(reply_ms)
            print(f"\r  run {i + 1}/{runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    await store.close()
    return invites, replies


def line(label: str, values: list[float]) -> str:
    return f"{label:32} p50 {percentile(values, 50):7.1f}  p95 {percentile(values, 95):7.1f}  max {max(values):7.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    print("starting the local host ...", file=sys.stderr, flush=True)
    try:
        with local_host(HANDOFF_REMIND_AFTER_SECONDS="600", LOG_LEVEL="WARNING") as host:
            invites, replies = asyncio.run(run(host, args.runs))
    except HostFailed as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print(f"Switchboard handoff benchmark ({args.runs} runs, local host, offline policy, poll {POLL * 1000:.0f} ms)")
    print(line("accept -> invite in outbox", invites))
    print(line("first message -> first reply", replies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
