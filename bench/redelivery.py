"""The redelivery storm at larger counts, through a local host of its own (Functions host, ACS emulator).

    python bench/redelivery.py [--events 5000] [--calls 300] [--phones 600] [--in-flight 32] [--seed 7]

The same storm as tests/reliability/test_redelivery.py (which runs 1,000 events): WhatsApp messages and calls
(IncomingCall, then four Call Automation callbacks each), every event delivered one to three times, shuffled,
`--in-flight` requests at a time. It prints the storm's line (events, deliveries, effects, duplicates) and the
throughput; a duplicate or a missing effect makes it exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project, for shared/ and the storm
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: `python bench/redelivery.py`
from common import HostFailed, free_port, local_host  # noqa: E402

from tests.reliability.common import storm  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=300, help="calls among the events (5 events each)")
    parser.add_argument("--phones", type=int, default=600, help="WhatsApp numbers the messages come from")
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.calls * 5 >= args.events:
        parser.error("--calls brings 5 events each: leave room for WhatsApp messages")
    print("starting the local host ...", file=sys.stderr, flush=True)
    try:
        # Nothing listens on the gateway URL: media fails at once and each caller is transferred to a person.
        with local_host(GATEWAY_PUBLIC_URL=f"ws://127.0.0.1:{free_port()}", LOG_LEVEL="WARNING") as host:
            result = asyncio.run(storm(host.url, host.acs_url, host.data_dir, events=args.events, calls=args.calls,
                                       phones_count=args.phones, in_flight=args.in_flight, seed=args.seed))
    except HostFailed as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print(f"Switchboard redelivery benchmark (local host, offline policy, {args.in_flight} in flight, "
          f"seed {args.seed})")
    print(result.summary())
    print(f"{result.events / result.seconds:.0f} events/s, {result.deliveries / result.seconds:.0f} deliveries/s")
    for problem in result.problems[:20]:
        print(f"  {problem}")
    return 0 if result.effects == result.events and not result.duplicates and not result.tally.given_up else 1


if __name__ == "__main__":
    sys.exit(main())
