"""Callbacks on Durable Functions: wait for the customer's time or turn, call, retry once, say we tried.

One orchestration per callback request (shared/callbacks.py has the steps and the record). Channels call
`sync_callbacks` after a turn that may have asked for or cancelled one (WhatsApp, SMS and web chat after a message whose
turn says it did, `TurnOutcome.callbacks_changed`; a call when it ends): it starts the orchestration of each open
request, once, and raises the cancel event for each request cancelled since. The orchestrator decides; every step with
I/O is an activity that is safe to run twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from functions.handoff import RETRY
from shared import telemetry
from shared.bootstrap import get_services

log = logging.getLogger(__name__)

bp = df.Blueprint()

ORCHESTRATOR = "callback_orchestrator"


@bp.orchestration_trigger(context_name="context")
def callback_orchestrator(context: df.DurableOrchestrationContext):
    from shared import callbacks as cb

    plan = context.get_input()
    status = {"callback_id": plan["callback_id"], "when": plan["when"], "at": plan.get("at")}

    context.set_custom_status({**status, "step": "waiting"})
    if plan["when"] == "at":
        at = datetime.fromisoformat(plan["at"])
        if at > context.current_utc_datetime:
            cancelled = yield from _wait(context, at)
            if cancelled:
                return (yield from _cancelled(context, plan, status))
    else:
        give_up = context.current_utc_datetime + timedelta(seconds=cb.plan_seconds(plan, "max_turn_wait_seconds"))
        while True:
            estimate = yield context.call_activity_with_retry("callback_estimate", RETRY, None)
            context.set_custom_status({**status, "step": "waiting", "wait": estimate["wait"]})
            if estimate["under"] or context.current_utc_datetime >= give_up:
                break
            poll = timedelta(seconds=cb.plan_seconds(plan, "poll_seconds"))
            cancelled = yield from _wait(context, context.current_utc_datetime + poll)
            if cancelled:
                return (yield from _cancelled(context, plan, status))

    outcomes: list[str] = []
    for attempt in (1, 2):
        context.set_custom_status({**status, "step": f"calling (attempt {attempt})", "outcomes": outcomes})
        placed = yield context.call_activity_with_retry("callback_place", RETRY, {"plan": plan, "attempt": attempt})
        if placed["reason"] == cb.CANCELLED:  # cancelled on the record, its event lost or not yet here
            return (yield from _cancelled(context, plan, status))
        if placed["placed"]:
            outcome = yield context.call_activity_with_retry("callback_outcome", RETRY, placed["call_id"])
        else:
            outcome = "failed"
        outcomes.append(outcome)
        if outcome == "answered":
            yield context.call_activity_with_retry("callback_settle", RETRY, {"plan": plan, "state": cb.ANSWERED})
            context.set_custom_status({**status, "step": cb.ANSWERED, "outcomes": outcomes})
            return {"outcome": cb.ANSWERED, "attempts": outcomes}
        if attempt == 1:
            context.set_custom_status({**status, "step": "retrying", "outcomes": outcomes})
            retry_at = context.current_utc_datetime + timedelta(seconds=cb.plan_seconds(plan, "retry_after_seconds"))
            if (yield from _wait(context, retry_at)):
                return (yield from _cancelled(context, plan, status))

    told = yield context.call_activity_with_retry("callback_tell_we_tried", RETRY, plan)
    yield context.call_activity_with_retry("callback_settle", RETRY,
                                           {"plan": plan, "state": cb.MISSED, "detail": ", ".join(outcomes)})
    context.set_custom_status({**status, "step": cb.MISSED, "outcomes": outcomes, "told_by": told["sent_by"]})
    return {"outcome": cb.MISSED, "attempts": outcomes, "told_by": told["sent_by"]}


def _wait(context: df.DurableOrchestrationContext, until: datetime):
    """A durable timer raced against the cancel event; True if the customer cancelled first."""
    from shared.callbacks import CANCEL_EVENT

    timer = context.create_timer(until)
    cancel = context.wait_for_external_event(CANCEL_EVENT)
    winner = yield context.task_any([cancel, timer])
    if winner == cancel:
        timer.cancel()
        return True
    return False


def _cancelled(context: df.DurableOrchestrationContext, plan: dict, status: dict):
    from shared.callbacks import CANCELLED

    yield context.call_activity_with_retry("callback_settle", RETRY, {"plan": plan, "state": CANCELLED})
    context.set_custom_status({**status, "step": CANCELLED})
    return {"outcome": CANCELLED}


# Activities: each runs one step of shared/callbacks.py in its span.


@bp.activity_trigger(input_name="nothing")
async def callback_estimate(nothing: Any) -> dict:
    from shared import callbacks

    return await callbacks.estimate(await get_services())


@bp.activity_trigger(input_name="work")
async def callback_place(work: dict) -> dict:
    from shared import callbacks

    plan = work["plan"]
    with telemetry.span("callback.place", customer_id=plan["customer_id"], callback_id=plan["callback_id"],
                        attempt=work["attempt"]):
        return await callbacks.place(await get_services(), plan, work["attempt"])


@bp.activity_trigger(input_name="call_id")
async def callback_outcome(call_id: str) -> str:
    from shared import callbacks

    return await callbacks.outcome(await get_services(), call_id)


@bp.activity_trigger(input_name="work")
async def callback_settle(work: dict) -> bool:
    from shared import callbacks

    return await callbacks.settle(await get_services(), work["plan"], work["state"], work.get("detail", ""))


@bp.activity_trigger(input_name="plan")
async def callback_tell_we_tried(plan: dict) -> dict:
    from shared import callbacks

    with telemetry.span("callback.tell_we_tried", customer_id=plan["customer_id"], callback_id=plan["callback_id"]):
        return await callbacks.tell_we_tried(await get_services(), plan)


# Client side ------------------------------------------------------------------------------------------------------


async def sync_callbacks(client: df.DurableOrchestrationClient, customer_id: str) -> None:
    """Start the orchestration of each open callback of the customer (once: its id is the request's) and tell each
    one cancelled lately. A text channel calls this only after a turn whose outcome says it changed the customer's
    callbacks (`TurnOutcome.callbacks_changed`), a call when it ends. Never raises: the customer's turn has been
    answered whatever happens here, and a redelivered message or the end of the call tries again."""
    from shared import callbacks

    services = await get_services()
    try:
        start, stop = await callbacks.due(services, customer_id)
        for plan in start:
            await _start(client, plan)
        for plan in stop:
            try:
                await client.raise_event(plan["instance_id"], callbacks.CANCEL_EVENT, plan["callback_id"])
            except Exception as exc:  # never started, or ended: the record already says cancelled
                log.info("callback %s: cancel not raised (%s)", plan["instance_id"], exc)
    except Exception:
        log.exception("could not sync the callbacks of %s", customer_id)


async def _start(client: df.DurableOrchestrationClient, plan: dict[str, Any]) -> None:
    instance_id = plan["instance_id"]
    if await _exists(client, instance_id):
        telemetry.dedup_hit("callback")
        return  # started by an earlier delivery (a Completed one too: starting it again would replace it)
    try:
        await client.start_new(ORCHESTRATOR, instance_id, plan)
    except Exception:  # two deliveries raced past the check: host.json makes the extension refuse the second
        if not await _exists(client, instance_id):
            raise
        return
    log.info("callback %s started (%s)", instance_id, plan["when"])


async def _exists(client: df.DurableOrchestrationClient, instance_id: str) -> bool:
    status = await client.get_status(instance_id)
    return status is not None and status.runtime_status is not None
