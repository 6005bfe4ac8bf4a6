"""Notifications kept as promised, on Durable Functions: one orchestration per promise on a customer record
(shared/notifications.py), which waits for its time or its condition and then sends it once.

Started by the channel function once a turn that recorded a promise has its answer (`start_promised`, with the
function's Durable client), by `POST /api/notifications/start` for a promise made on a call (the media gateway has no
Durable client, so it asks, off the turn) and, for what those missed, by the moment's own trigger (`moment_came`, from
POST /api/ops/outages/{id}/restored). The orchestration's id is the notification's, so every start after the first finds
it. While it waits for a condition it looks again every RECHECK_SECONDS (the scenario's data may say the outage is over
after a redeploy, with no event), and gives up after EXPIRE_SECONDS; an event raised twice, or by two restores at once,
finds it waiting once or finished, and the send itself goes once whatever runs it (shared/notifications.py).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from functions.handoff import RETRY, _event_value
from functions.http import Forbidden, bearer_token, handles_errors, json_response
from shared import telemetry
from shared.bootstrap import get_services
from shared.errors import NotFound
from shared.models import Customer

log = logging.getLogger(__name__)

bp = df.Blueprint()

ORCHESTRATOR = "notification_orchestrator"
#: Raised on a notification's orchestration when its moment comes (the outage restored).
MOMENT_EVENT = "MomentCame"
#: While waiting for a condition, how often the orchestration reads the scenario's data again.
RECHECK_SECONDS = 600
#: A condition that has not held after this long is handed to people: an outage lasting a week is not texted about.
EXPIRE_SECONDS = 7 * 24 * 3600


@bp.orchestration_trigger(context_name="context")
def notification_orchestrator(context: df.DurableOrchestrationContext):
    work = context.get_input()
    status = {"notification": work["id"], "kind": work["kind"], "ref": work["ref"]}
    if work.get("due"):
        due = datetime.fromisoformat(work["due"])
        if due > context.current_utc_datetime:
            context.set_custom_status({**status, "step": "waiting for its time", "due": work["due"]})
            yield context.create_timer(due)
    else:
        came = yield context.call_activity_with_retry("notification_check", RETRY, work)
        if not came:
            expires = datetime.fromisoformat(work["expires_at"])
            if context.current_utc_datetime >= expires:
                result = yield context.call_activity_with_retry("notification_give_up", RETRY, work)
                context.set_custom_status({**status, "step": "expired"})
                return result
            context.set_custom_status({**status, "step": "waiting for its moment"})
            timer = context.create_timer(min(expires, context.current_utc_datetime + timedelta(seconds=RECHECK_SECONDS)))
            event = context.wait_for_external_event(MOMENT_EVENT)
            winner = yield context.task_any([event, timer])
            if winner != event:
                # Look again with a fresh history: weeks of rechecks must not grow one without bound.
                context.continue_as_new(work)
                return None
            timer.cancel()
            status["told_by"] = _event_value(event.result)
    context.set_custom_status({**status, "step": "sending"})
    result = yield context.call_activity_with_retry("notification_send", RETRY, work)
    context.set_custom_status({**status, "step": "done", **result})
    return result


@bp.activity_trigger(input_name="work")
async def notification_check(work: dict) -> bool:
    from shared import notifications

    services = await get_services()
    return await notifications.has_happened(services, _notification(work))


@bp.activity_trigger(input_name="work")
async def notification_send(work: dict) -> dict:
    from shared import notifications

    with telemetry.span("notification.send", customer_id=work["customer_id"], notification=work["id"]):
        return await notifications.send(await get_services(), work["customer_id"], work["id"])


@bp.activity_trigger(input_name="work")
async def notification_give_up(work: dict) -> dict:
    from shared import notifications

    services = await get_services()
    return await notifications._settle(services, work["customer_id"], work["id"], None, None,
                                       "expired: its moment never came")


def _notification(work: dict[str, Any]):
    from shared.notifications import Notification

    return Notification(work["id"], work["customer_id"], work["kind"], work["ref"], work.get("due"))


# Client side ------------------------------------------------------------------------------------------------------


async def start(client: df.DurableOrchestrationClient, notification: Any, promised_at: str) -> bool:
    """Start the notification's orchestration unless it exists; True if this call started it."""
    if await _exists(client, notification.id):
        return False
    expires = datetime.fromisoformat(promised_at) + timedelta(seconds=EXPIRE_SECONDS)
    try:
        await client.start_new(ORCHESTRATOR, notification.id, {**notification.to_dict(),
                                                                "expires_at": expires.isoformat()})
    except Exception:  # the SDK raises a bare Exception with whatever the extension answered
        # Two starts raced past the check: the extension refuses the second (host.json's
        # overridableExistingInstanceStates), and the loser finds the winner's instance.
        if not await _exists(client, notification.id):
            raise
        return False
    log.info("notification %s started (%s %s)", notification.id, notification.kind, notification.ref)
    return True


async def start_promised(client: df.DurableOrchestrationClient, customer_id: str,
                         customer: Customer | None = None) -> list[str]:
    """Start the orchestration of each promise the customer's record still has to keep (`customer`: the record as
    the turn saved it, which spares a read); their ids. What the start route does, for a channel function that holds
    a Durable client after a turn that recorded a promise (`TurnOutcome.promised`). Never raises: the customer has
    their answer, and the moment's trigger starts what this missed (a redelivered message tries again)."""
    try:
        if customer is None:
            customer = await (await get_services()).customers.get(customer_id)
        return await start_pending(client, customer)
    except Exception:
        log.exception("could not start the notifications of %s; the moment's trigger starts them", customer_id)
        return []


async def start_pending(client: df.DurableOrchestrationClient, customer: Customer) -> list[str]:
    """Start the orchestration of each promise on the record still to keep; their ids."""
    from shared.notifications import find, pending

    ids = []
    for notification in pending(customer):
        await start(client, notification, find(customer, notification.id)["at"])
        ids.append(notification.id)
    return ids


async def moment_came(client: df.DurableOrchestrationClient, kind: str, ref: str) -> dict[str, Any]:
    """Tell every notification waiting for kind:ref that its moment came (starting any not started yet). Returns
    what each customer promised it stands at: {"sent": told to go now, "already_sent", "not_sent": {why: n}}."""
    from shared.notifications import find, notification_id, notification_of

    services = await get_services()
    told, already, not_sent = 0, 0, {}
    for customer_id in sorted(await services.state.members(f"promises:{kind}:{ref}")):
        try:
            customer = await services.customers.get(customer_id)
        except NotFound:
            continue
        promise = find(customer, notification_id(customer_id, kind, ref))
        if promise is None:
            continue
        if promise.get("sent_at"):
            already += 1
            continue
        if promise.get("error"):
            not_sent[promise["error"]] = not_sent.get(promise["error"], 0) + 1
            continue
        notification = notification_of(customer_id, promise)
        if not await start(client, notification, promise["at"]):  # a new one reads the moment for itself
            try:
                await client.raise_event(notification.id, MOMENT_EVENT, f"{kind}:{ref}")
            except Exception as exc:  # it finished meanwhile (sent or given up): the record says which
                log.info("notification %s not waiting any more: %s", notification.id, exc)
        told += 1
    return {"sent": told, "already_sent": already, "not_sent": not_sent}


async def _exists(client: df.DurableOrchestrationClient, instance_id: str) -> bool:
    status = await client.get_status(instance_id)
    return status is not None and status.runtime_status is not None


# Anonymous at the Functions layer: the media gateway proves itself with a start token it signed for this customer;
# all it can do is start what the record already promises. The channel functions start theirs without it.
@bp.route(route="notifications/start", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handles_errors
async def notifications_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Start the orchestrations of the promises on the token's customer's record that are still to keep."""
    from functions.api.common import NoFields
    from functions.api.notifications import NotificationsStarted
    from functions.api.parsing import parse_body
    from shared.notifications import START_AUDIENCE

    services = await get_services()
    claims = services.tokens.verify(bearer_token(req), START_AUDIENCE)
    parse_body(req, NoFields, allow_empty=True)
    customer_id = claims.get("cid")
    if not isinstance(customer_id, str) or not customer_id:
        raise Forbidden("this token names no customer")
    customer = await services.customers.get(customer_id)
    return json_response(NotificationsStarted(started=await start_pending(client, customer)))
