"""WhatsApp over ACS Advanced Messaging: one Event Grid trigger for received messages and delivery statuses.

Thin by design: its body, functions/messaging_events.py, is SMS's too. It unpacks the event, parses it
(shared/whatsapp/events.py) and hands it to the WhatsApp service. A malformed or unsupported event is logged with its
reason and dropped; raising would only make Event Grid redeliver something that cannot get better. Only a failure a
redelivery can cure (an outage) propagates, so the host answers 500.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from functions.messaging_events import handle_messaging_event
from shared.whatsapp.events import parse_event

bp = df.Blueprint()


@bp.function_name("whatsapp_events")
@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def whatsapp_events(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    await handle_messaging_event(event, client, channel="whatsapp", label="WhatsApp", parse=parse_event,
                                 handler=lambda services: services.whatsapp.handle)
