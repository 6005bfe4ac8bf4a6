"""A redelivery storm: 1,000 inbound events, each delivered one to three times, shuffled and concurrent.

Event Grid and ACS deliver at least once; the product promises exactly-once effects. Here WhatsApp messages
(AdvancedMessageReceived, through the Event Grid webhook) and calls (IncomingCall through Event Grid, then every
Call Automation callback ACS posts for the call) arrive through a running `python -m local`, duplicated and shuffled,
~32 requests in flight. Afterwards every event must have had exactly one effect a customer or an operator would see:

* a WhatsApp message: one customer turn on the record, and its replies in the ACS emulator's outbox once;
* IncomingCall: one answer (the emulator records every answer request);
* the call's callbacks: the caller transferred once (the media gateway is unreachable, so MediaStreamingFailed
  hands the caller to a person), the voice session closed as transferred, and the queue counters moved once per
  step: with every call over, the raw (unclamped) waiting and in-progress counters are back to exactly zero.
"""

from __future__ import annotations

import pytest

from tests.peers import free_port
from tests.reliability.common import EVENTS_PER_CALL, storm

SEED = 7
EVENTS = 1000
CALLS = 60  # each brings 5 events (IncomingCall and four callbacks); the rest of the 1,000 are WhatsApp messages
PHONES = 150  # WhatsApp senders; several messages each, so turns for one customer race on one record
IN_FLIGHT = 32


@pytest.fixture(scope="module")
def storm_host(local_host_factory, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("redelivery-data")
    # Nothing listens on the gateway URL: media fails at once and each caller is transferred (the scenario has an
    # escalation number). That keeps 60 calls from streaming 50 audio frames a second each on two busy cores.
    host = local_host_factory(
        SWITCHBOARD_DATA_DIR=str(data_dir), GATEWAY_PUBLIC_URL=f"ws://127.0.0.1:{free_port()}", LOG_LEVEL="WARNING",
    )
    return host, data_dir


async def test_every_event_has_exactly_one_effect_however_often_it_arrives(storm_host) -> None:
    host, data_dir = storm_host
    result = await storm(host.url, host.acs_url, data_dir, events=EVENTS, calls=CALLS, phones_count=PHONES,
                         in_flight=IN_FLIGHT, seed=SEED)

    print("\n" + result.summary())
    assert result.events == EVENTS and CALLS * len(EVENTS_PER_CALL) < EVENTS
    assert not result.tally.given_up, f"never accepted: {result.tally.given_up[:5]}"
    assert not result.problems, "\n".join(result.problems[:20])
    assert (result.waiting, result.in_progress) == (0, 0), "a call step counted twice (or never) in the queue"
    assert result.queue["known"] and result.queue["waiting"] == 0 and result.queue["in_progress"] == 0
    assert result.effects == result.events and result.duplicates == 0
