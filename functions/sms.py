"""SMS over ACS: one Event Grid trigger for texts received and delivery reports.

Thin by design, like functions/whatsapp.py: unpack the event, parse it (shared/sms/events.py), hand it to the SMS
service. A malformed or unsupported event is logged with its reason and dropped; raising would only make Event Grid
redeliver something that cannot get better. Only a failure a redelivery can cure (an outage) propagates, so the host
answers 500 and Event Grid tries again.
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
from shared.sms.events import MalformedEvent, parse_event

log = logging.getLogger(__name__)

bp = df.Blueprint()


@bp.function_name("sms_events")
@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def sms_events(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    # Either schema: Event Grid (event_type, event_time) or CloudEvents (type, time).
    event_type = getattr(event, "event_type", None) or getattr(event, "type", "")
    event_time = getattr(event, "event_time", None) or getattr(event, "time", None)
    try:
        data = event.get_json()
    except ValueError:
        data = None
    with telemetry.span("sms_events", kind=telemetry.SpanKind.CONSUMER, event_type=event_type):
        try:
            parsed = parse_event(event_type, event.id, data, event_time if isinstance(event_time, datetime) else None)
        except MalformedEvent as exc:
            log.warning("dropped SMS event %s (%s): %s", event.id, event_type or "no type", exc)
            telemetry.error("malformed_event", "sms")
            return
        services = await get_services()
        received = await services.sms.handle(parsed)
        if received is None:
            return
        if received.continued is not None:
            await notify_engaged(client, received.continued, received.session_id)
        await start_what_the_turn_set_going(client, received.customer_id, received.session_id, "sms",
                                            switch_to=received.switch_to, promised=received.promised,
                                            callbacks_changed=received.callbacks_changed)
