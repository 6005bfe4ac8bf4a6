"""What a customer's turn set going, started by the channel function that ran it once the answer is built: a
callback asked for or cancelled, a promise to keep, a move to another channel. Each start is idempotent by its
orchestration's id, so a redelivered or retried message starts nothing twice; a turn that set nothing going costs
nothing more (no read, no request)."""

from __future__ import annotations

import azure.durable_functions as df

from functions.callbacks import sync_callbacks
from functions.handoff import start_handoff
from functions.notifications import start_promised
from shared.models import Customer


async def start_what_the_turn_set_going(client: df.DurableOrchestrationClient, customer_id: str, session_id: str,
                                        channel: str, *, switch_to: str | None, promised: bool,
                                        callbacks_changed: bool, customer: Customer | None = None) -> None:
    """`customer`: the record as the turn saved it, when the channel has it (spares the promise start a read)."""
    if callbacks_changed:
        await sync_callbacks(client, customer_id)
    if promised:  # "we'll text you when it's restored"
        await start_promised(client, customer_id, customer)
    if switch_to is not None:  # last: its steps need not hold up the others
        await start_handoff(client, customer_id, session_id, channel, switch_to)
