"""SMS over ACS: one Event Grid trigger for texts received and delivery reports.

Thin by design: its body, functions/messaging_events.py, is WhatsApp's too. It unpacks the event, parses it
(shared/sms/events.py) and hands it to the SMS service. A malformed or unsupported event is logged with its reason and
dropped; raising would only make Event Grid redeliver something that cannot get better. Only a failure a redelivery can
cure (an outage) propagates, so the host answers 500 and Event Grid tries again.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from functions.messaging_events import handle_messaging_event
from shared.sms.events import parse_event

bp = df.Blueprint()


@bp.function_name("sms_events")
@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def sms_events(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    await handle_messaging_event(event, client, channel="sms", label="SMS", parse=parse_event,
                                 handler=lambda services: services.sms.handle)
