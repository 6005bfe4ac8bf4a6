"""What the Foundry policy costs per turn against the plain OpenAI policy: round trips and added latency.

Both policies run through the conversation core (SQLite store, in-process state) against the test servers of
tests/peers (stand-ins at the network boundary: neither Foundry nor a model can run here), with the same realistic
delays: `--rtt` ms per round trip to the service and `--model` ms before the model's first word. A customer has
`--turns` turns on a call, then continues on WhatsApp for as many; each turn's time is until the reply is complete.

    python bench/foundry.py [--turns 6] [--rtt 40] [--model 350]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.bootstrap import build_services  # noqa: E402
from shared.foundry.agents import sync  # noqa: E402
from shared.foundry.client import build_foundry  # noqa: E402
from shared.models import Channel, Identity, IdentityKind  # noqa: E402
from shared.scenario import load_scenario  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.peers.foundry_server import FoundryTestServer  # noqa: E402

REPLY = "Crews are on it and expect power back by four this afternoon."


async def run(policy: str, turns: int, rtt: float, model: float) -> tuple[list[float], int]:
    server = FoundryTestServer()
    await server.start()
    server.latency = {"agents": rtt, "conversations": rtt, "items": rtt, "responses": rtt}
    try:
        with tempfile.TemporaryDirectory() as data:
            env = {"SWITCHBOARD_DATA_DIR": data, "SESSION_STATE": "memory", "SWITCHBOARD_POLICY": policy}
            if policy == "foundry":
                env["AZURE_AI_PROJECT_ENDPOINT"] = server.endpoint
                settings = Settings.from_env(env)
                foundry = build_foundry(settings)
                await sync(foundry.project, load_scenario(settings.scenario), settings.foundry_agent_prefix,
                           settings.azure_openai_deployment)
                await foundry.close()
            else:
                env["OPENAI_BASE_URL"], env["OPENAI_API_KEY"] = server.base_url, "bench"
                settings = Settings.from_env(env)
            services = await build_services(settings)
            # A warm instance: another customer's turn first pays the process's one-off costs (the SDKs' lazy
            # imports, the first connection), which are not the policy's per-engagement cost.
            warm = await services.conversation.open_for_identity(
                Channel.WEBCHAT, "web_warm", Identity(IdentityKind.WEBCHAT, "web_warm"))
            server.reply_text(REPLY)
            await services.conversation.turn("web_warm", warm.customer.customer_id, "hello")
            server.calls.clear()
            server.requests.clear()
            opened = await services.conversation.open_for_identity(
                Channel.VOICE, "call_b", Identity(IdentityKind.PHONE, "+15555550100"))
            customer = opened.customer.customer_id
            await services.conversation.open(Channel.WHATSAPP, "wa_b", customer)
            times = []
            for n in range(2 * turns):
                session = "call_b" if n < turns else "wa_b"
                server.reply_text(REPLY, delay=model / 1000)
                started = time.perf_counter()
                await services.conversation.turn(session, customer, f"question {n} about the outage")
                times.append((time.perf_counter() - started) * 1000)
            drain = getattr(services.policy, "drain", None)
            if drain is not None:
                await drain()
            trips = len(server.calls) + len(server.requests)  # Foundry routes + chat completions
            await services.close()
            return times, trips
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--rtt", type=float, default=40.0, help="ms per round trip to the service")
    parser.add_argument("--model", type=float, default=350.0, help="ms before the model's first word")
    args = parser.parse_args()
    results = {}
    for policy in ("openai", "foundry"):
        # The OpenAI route pays its round trip in the step delay; Foundry's routes pay it in the server's latency.
        rtt_s = args.rtt / 1000
        model = args.model + (args.rtt if policy == "openai" else 0)
        times, trips = asyncio.run(run(policy, args.turns, rtt_s, model))
        results[policy] = (times, trips)
        first, rest = times[0], times[1:]
        print(f"{policy:8} round trips {trips:3} for {len(times)} turns ({trips / len(times):.2f}/turn); "
              f"first turn {first:6.0f} ms; other turns p50 {statistics.median(rest):6.0f} ms, "
              f"max {max(rest):6.0f} ms")
    (o_times, o_trips), (f_times, f_trips) = results["openai"], results["foundry"]
    print(f"foundry - openai: first turn {f_times[0] - o_times[0]:+.0f} ms, other turns p50 "
          f"{statistics.median(f_times[1:]) - statistics.median(o_times[1:]):+.0f} ms, "
          f"{f_trips - o_trips:+d} round trips in all")


if __name__ == "__main__":
    main()
