"""The channel handoff on Durable Functions: summarise, save the context, invite, wait for the customer, remind,
expire (and then write the conversation's synthesis, functions/synthesis.py). The orchestrator only decides; every
step with I/O is an activity (shared/handoff.py), safe to run twice.

Channels start a handoff with `start_handoff` (web chat and WhatsApp from their own triggers, the media gateway
through `POST /api/handoffs`), and tell it the customer arrived with `notify_engaged`.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from functions.http import Forbidden, bearer_token, handles_errors, json_response
from shared import telemetry
from shared.bootstrap import get_services
from shared.errors import NotFound, SwitchboardError
from shared.models import Handoff

log = logging.getLogger(__name__)

bp = df.Blueprint()

ENGAGED_EVENT = "CustomerEngaged"
ORCHESTRATOR = "handoff_orchestrator"


class BackoffRetry(df.RetryOptions):
    """RetryOptions with DTFx's backoff coefficient and maximum interval, which the Python SDK's class leaves out
    of its JSON although the extension reads them (its RetryOptionsConverter; local/durable/replay.py does too).

    No retry timeout: the SDK counts attempts itself and waits for a retry timer after every failure, and DTFx
    stops scheduling those once the timeout passes, which would leave the orchestration waiting forever.
    """

    def __init__(self, first_retry_interval_in_milliseconds: int, max_number_of_attempts: int, *,
                 backoff_coefficient: float, max_retry_interval_in_milliseconds: int) -> None:
        super().__init__(first_retry_interval_in_milliseconds, max_number_of_attempts)
        self.backoff_coefficient = backoff_coefficient
        self.max_retry_interval_in_milliseconds = max_retry_interval_in_milliseconds

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "backoffCoefficient": self.backoff_coefficient,
                "maxRetryIntervalInMilliseconds": self.max_retry_interval_in_milliseconds}


# Transient failures (a throttled send, a store outage) are retried by Durable before a step fails: 2 s, doubling,
# at most 30 s apart, 12 attempts. Waits of 2+4+8+16+30x7 s put the last attempt 4 minutes after the first, so a
# Cosmos or Redis outage of a minute or two costs a handoff some delay, not the handoff (each step is idempotent).
RETRY = BackoffRetry(2000, 12, backoff_coefficient=2, max_retry_interval_in_milliseconds=30_000)


@bp.orchestration_trigger(context_name="context")
def handoff_orchestrator(context: df.DurableOrchestrationContext):
    plan = context.get_input()
    try:
        return (yield from _handoff(context, plan))
    except Exception as exc:  # a step failed past its retries: end it on the record too, not only in the task hub
        reason = str(exc)[:300]
        yield context.call_activity_with_retry("handoff_fail", RETRY, {"plan": plan, "reason": reason})
        context.set_custom_status(
            {"instance_id": context.instance_id, "to_channel": plan["to_channel"], "step": "failed", "reason": reason}
        )
        return {"outcome": "failed", "reason": reason}


def _handoff(context: df.DurableOrchestrationContext, plan: dict):
    """The steps. `plan` is updated in place with the record the handoff lands on, for the failure path."""
    status = {"instance_id": context.instance_id, "to_channel": plan["to_channel"], "step": "summarising"}

    context.set_custom_status(status)
    summary = yield context.call_activity_with_retry("handoff_summarise", RETRY, plan)

    context.set_custom_status({**status, "step": "saving context"})
    holder = yield context.call_activity_with_retry("handoff_save_context", RETRY, {"plan": plan, "summary": summary})
    plan["customer_id"] = holder  # the record the new channel will find (see shared.handoff.save_context)

    context.set_custom_status({**status, "step": "inviting"})
    invite = yield context.call_activity_with_retry("handoff_invite", RETRY, plan)
    status = {**status, "invite": invite}
    if invite.get("failed"):  # it could not go out and never will: the step has ended the handoff on the record
        context.set_custom_status({**status, "step": "failed"})
        return {"outcome": "failed", "reason": invite.get("reason")}

    for step, wait_seconds in (("waiting", plan["remind_after_seconds"]), ("reminded", plan["expire_after_seconds"])):
        context.set_custom_status({**status, "step": step})
        deadline = context.current_utc_datetime + timedelta(seconds=wait_seconds)
        timer = context.create_timer(deadline)
        engaged = context.wait_for_external_event(ENGAGED_EVENT)
        winner = yield context.task_any([engaged, timer])
        if winner == engaged:
            timer.cancel()
            session_id = _event_value(engaged.result)
            context.set_custom_status({**status, "step": "engaged", "session_id": session_id})
            return {"outcome": "engaged", "session_id": session_id}
        if step == "waiting":
            still_waiting = yield context.call_activity_with_retry("handoff_remind", RETRY, plan)
            if not still_waiting:  # they arrived, but the event has not reached us (or never will): done
                context.set_custom_status({**status, "step": "engaged"})
                return {"outcome": "engaged"}

    expired = yield context.call_activity_with_retry("handoff_expire", RETRY, plan)
    outcome = "expired" if expired else "engaged"
    if expired:  # nobody came: the conversation ended where it was, and its synthesis goes on the record
        context.set_custom_status({**status, "step": "writing the synthesis"})
        yield context.call_activity_with_retry("synthesis_write", RETRY, {
            "customer_id": plan["customer_id"], "session_id": plan["from_session_id"], "ended_by": "handoff_expired",
        })
    context.set_custom_status({**status, "step": outcome})
    return {"outcome": outcome}


def _event_value(raw):
    """The Python client double-encodes event data (a string arrives with its quotes), a plain POST does not."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


# Activities: each runs one step of shared/handoff.py, named alike, inside its span.


@bp.activity_trigger(input_name="plan")
async def handoff_summarise(plan: dict) -> str:
    return await _run("summarise", plan)


@bp.activity_trigger(input_name="work")
async def handoff_save_context(work: dict) -> str:
    return await _run("save_context", work["plan"], work["summary"])


@bp.activity_trigger(input_name="plan")
async def handoff_invite(plan: dict) -> dict:
    return await _run("invite", plan)


@bp.activity_trigger(input_name="plan")
async def handoff_remind(plan: dict) -> bool:
    return await _run("remind", plan)


@bp.activity_trigger(input_name="plan")
async def handoff_expire(plan: dict) -> bool:
    return await _run("expire", plan)


@bp.activity_trigger(input_name="payload")
async def handoff_fail(payload: dict) -> bool:
    return await _run("fail", payload["plan"], payload["reason"])


async def _run(step: str, plan: dict, *args: Any) -> Any:
    """`shared.handoff.<step>(services, plan, *args)` in a span that is a child of the handoff's start, whose
    traceparent the orchestration input carries (the orchestrator itself replays, so it never opens spans)."""
    from shared import handoff  # imported when a handoff runs, not at cold start

    with telemetry.span(f"handoff.{step}", parent=plan.get("traceparent"), handoff_id=plan["instance_id"],
                        customer_id=plan["customer_id"], to_channel=plan["to_channel"]):
        return await getattr(handoff, step)(await get_services(), handoff.HandoffPlan.from_dict(plan), *args)


# Client side ------------------------------------------------------------------------------------------------------


async def start_handoff(
    client: df.DurableOrchestrationClient, customer_id: str, session_id: str, from_channel: str, to_channel: str
) -> str:
    """Start (once) the handoff of this session; returns the orchestration id."""
    from shared.handoff import HandoffPlan, instance_id_for

    services = await get_services()
    instance_id = instance_id_for(session_id)
    if await _exists(client, instance_id):
        return instance_id  # accepted twice: the first acceptance already started it
    with telemetry.span("handoff.start", handoff_id=instance_id, customer_id=customer_id, session_id=session_id,
                        from_channel=from_channel, to_channel=to_channel):
        plan = HandoffPlan(
            instance_id=instance_id,
            customer_id=customer_id,
            from_session_id=session_id,
            from_channel=from_channel,
            to_channel=to_channel,
            remind_after_seconds=services.settings.handoff_remind_after_seconds,
            expire_after_seconds=services.settings.handoff_expire_after_seconds,
            traceparent=telemetry.traceparent(),
        )
        try:
            await client.start_new(ORCHESTRATOR, instance_id, plan.to_dict())
        except Exception:  # the SDK raises a bare Exception with whatever the extension answered
            # Two acceptances raced past the check above: host.json's overridableExistingInstanceStates
            # (NonRunningStates) makes the extension refuse the second start rather than restart the first one's
            # orchestration, so the loser finds the winner's instance. Anything else is a real failure.
            if not await _exists(client, instance_id):
                raise
            log.info("handoff %s was started by a concurrent acceptance", instance_id)
            return instance_id
    telemetry.handoff_started(from_channel, to_channel)
    try:  # the supervisor's handoff success rate counts it (Conversation.open counts the engaged ones)
        await services.desk.handoff_started(customer_id, session_id, to_channel)
    except SwitchboardError as exc:  # a figure on the desk, not the customer's business: the handoff goes on
        log.warning("could not count the started handoff %s: %s", instance_id, exc)
    log.info("handoff %s started: %s -> %s", instance_id, from_channel, to_channel)
    return instance_id


async def _exists(client: df.DurableOrchestrationClient, instance_id: str) -> bool:
    status = await client.get_status(instance_id)
    return status is not None and status.runtime_status is not None


async def notify_engaged(client: df.DurableOrchestrationClient, handoff: Handoff, session_id: str) -> None:
    """Tell the orchestration the customer arrived. Best effort: the record already says so, and the reminder step
    reads the record, so a lost event costs at most a skipped reminder, never a wrong one."""
    try:
        await client.raise_event(handoff.instance_id, ENGAGED_EVENT, session_id)
    except Exception as exc:  # the orchestration may have finished or been purged; the record is the truth
        log.warning("handoff %s: could not raise %s: %s", handoff.instance_id, ENGAGED_EVENT, exc)


# Anonymous at the Functions layer: the caller proves itself with the call's control token, which the media gateway
# holds (it has no function key), and the token must be for the very session and customer being handed over.
@bp.route(route="handoffs", methods=["POST"])
@bp.durable_client_input(client_name="client")
@handles_errors
async def handoffs_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """For channels outside the function app (the media gateway): `{customer_id, session_id, to_channel}`."""
    from functions.api.handoff import HandoffRequest, HandoffStarted
    from functions.api.parsing import parse_body
    from shared.calls.tokens import CONTROL_AUDIENCE

    services = await get_services()
    claims = services.tokens.verify(bearer_token(req), CONTROL_AUDIENCE)
    body = parse_body(req, HandoffRequest)
    if (claims.get("sid"), claims.get("cid")) != (body.session_id, body.customer_id):
        raise Forbidden("this token is for another call")
    customer = await services.customers.get(body.customer_id)
    session = customer.sessions.get(body.session_id)
    if session is None:
        raise NotFound("no such session for this customer")
    instance_id = await start_handoff(client, customer.customer_id, session.session_id, session.channel.value,
                                      body.to_channel)
    return json_response(HandoffStarted(id=instance_id, status_url=f"/api/handoffs/{instance_id}"), status=202)


@bp.route(route="handoffs/{instance_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
@handles_errors
async def handoffs_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from functions.api.handoff import HandoffStatus

    instance_id = req.route_params.get("instance_id", "")
    status = await client.get_status(instance_id)
    if status is None or status.runtime_status is None:
        raise NotFound(f"no handoff {instance_id!r}")
    custom = status.custom_status or {}
    return json_response(HandoffStatus(
        id=instance_id,
        runtime_status=status.runtime_status.value,
        step=custom.get("step"),
        to_channel=custom.get("to_channel"),
        invite=custom.get("invite"),
        output=status.output,
        created_time=status.created_time.isoformat() if status.created_time else None,
        last_updated_time=status.last_updated_time.isoformat() if status.last_updated_time else None,
    ))
