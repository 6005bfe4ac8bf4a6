"""WhatsApp over ACS Advanced Messaging: one Event Grid trigger for received messages and delivery statuses.

Thin by design: unpack the event, parse it (shared/whatsapp/events.py), hand it to the WhatsApp service. A malformed
or unsupported event is logged with its reason and dropped; raising would only make Event Grid redeliver something
that cannot get better. Only a failure a redelivery can cure (an outage) propagates, so the host answers 500.
"""

from __future__ import annotations

import logging
from datetime import datetime

import azure.durable_functions as df
import azure.functions as func

from functions.after_turn import start_what_the_turn_set_going
from functions.handoff import notify_engaged
from shared import telemetry
from shared.bootstrap import get_services
from shared.whatsapp.events import MalformedEvent, parse_event

log = logging.getLogger(__name__)

bp = df.Blueprint()


@bp.function_name("whatsapp_events")
@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def whatsapp_events(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    # ACS subscriptions can use either schema: Event Grid (event_type, event_time) or CloudEvents (type, time).
    event_type = getattr(event, "event_type", None) or getattr(event, "type", "")
    event_time = getattr(event, "event_time", None) or getattr(event, "time", None)
    try:
        data = event.get_json()
    except ValueError:
        data = None
    with telemetry.span("whatsapp_events", kind=telemetry.SpanKind.CONSUMER, event_type=event_type):
        try:
            parsed = parse_event(event_type, event.id, data, event_time if isinstance(event_time, datetime) else None)
        except MalformedEvent as exc:
            log.warning("dropped WhatsApp event %s (%s): %s", event.id, event_type or "no type", exc)
            telemetry.error("malformed_event", "whatsapp")
            return
        services = await get_services()
        received = await services.whatsapp.handle(parsed)
        if received is None:
            return
        if received.continued is not None:
            await notify_engaged(client, received.continued, received.session_id)
        await start_what_the_turn_set_going(client, received.customer_id, received.session_id, "whatsapp",
                                            switch_to=received.switch_to, promised=received.promised,
                                            callbacks_changed=received.callbacks_changed)
