"""The one body of the SMS and WhatsApp Event Grid triggers (functions/sms.py, functions/whatsapp.py).

Unpack the event, parse it with the channel's parser, hand it to the channel's service, then start what the
customer's turn set going. A malformed or unsupported event is logged with its reason and dropped: raising would only
make Event Grid redeliver something that cannot get better. Only a failure a redelivery can cure (an outage)
propagates, so the host answers 500 and Event Grid tries again; the service keeps a redelivered event to one effect.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Awaitable, Callable, TypeVar

import azure.durable_functions as df
import azure.functions as func

from functions.after_turn import start_what_the_turn_set_going
from functions.handoff import notify_engaged
from shared import telemetry
from shared.bootstrap import Services, get_services
from shared.messenger.events import MalformedEvent
from shared.messenger.inbound import Received

log = logging.getLogger(__name__)

E = TypeVar("E")

#: A channel's parser: (event type, event id, data, event time) to one of its events, or MalformedEvent.
Parse = Callable[[str, str, Any, datetime | None], E]
#: A channel's service's `handle`, picked from the services once an event is worth building them for.
Handler = Callable[[Services], Callable[[E], Awaitable[Received | None]]]


async def handle_messaging_event(event: func.EventGridEvent, client: df.DurableOrchestrationClient, *,
                                 channel: str, label: str, parse: Parse[E], handler: Handler[E]) -> None:
    """`channel` ("sms") names the span and the metrics, `label` ("SMS") the channel in the log."""
    # ACS subscriptions can use either schema: Event Grid (event_type, event_time) or CloudEvents (type, time).
    event_type = getattr(event, "event_type", None) or getattr(event, "type", "")
    event_time = getattr(event, "event_time", None) or getattr(event, "time", None)
    try:
        data = event.get_json()
    except ValueError:
        data = None
    with telemetry.span(f"{channel}_events", kind=telemetry.SpanKind.CONSUMER, event_type=event_type):
        try:
            parsed = parse(event_type, event.id, data, event_time if isinstance(event_time, datetime) else None)
        except MalformedEvent as exc:
            log.warning("dropped %s event %s (%s): %s", label, event.id, event_type or "no type", exc)
            telemetry.error("malformed_event", channel)
            return
        received = await handler(await get_services())(parsed)
        if received is None:
            return
        if received.continued is not None:
            await notify_engaged(client, received.continued, received.session_id)
        await start_what_the_turn_set_going(client, received.customer_id, received.session_id, channel,
                                            switch_to=received.switch_to, promised=received.promised,
                                            callbacks_changed=received.callbacks_changed)
