"""The post-conversation synthesis on Durable Functions: an ended conversation starts `synthesis_orchestrator`, whose
one activity writes the synthesis on the customer record (shared/synthesis.py).

The orchestration's id is derived from the session that ended and how, so an end delivered twice (a redelivered
callback, a retried request) finds one orchestration; the activity itself writes once whatever runs it, so two ends
at once, or a restarted or replayed orchestration, leave one synthesis on the record. An expired handoff calls the activity from its own
orchestration (functions/handoff.py).
"""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from functions.handoff import RETRY
from functions.http import handles_errors, json_response
from shared import telemetry
from shared.bootstrap import get_services

log = logging.getLogger(__name__)

bp = df.Blueprint()

ORCHESTRATOR = "synthesis_orchestrator"
ACTIVITY = "synthesis_write"


def instance_id_for(session_id: str, ended_by: str) -> str:
    """One orchestration per end of a session: the same end delivered again finds it. Two different ends of one
    session (the hang-up of a call put through to a person, then the person's disposition) each get theirs, so the
    first, finding the customer still with the person, cannot stand in for the second; the record keeps one."""
    return f"synthesis-{ended_by}-{session_id}"


def work(customer_id: str, session_id: str, ended_by: str, escalation_id: str | None = None) -> dict[str, Any]:
    """The activity's input (and the orchestration's)."""
    return {"customer_id": customer_id, "session_id": session_id, "ended_by": ended_by,
            **({"escalation_id": escalation_id} if escalation_id else {})}


@bp.orchestration_trigger(context_name="context")
def synthesis_orchestrator(context: df.DurableOrchestrationContext):
    result = yield context.call_activity_with_retry(ACTIVITY, RETRY, context.get_input())
    return {"written": result.get("written"), "reason": result.get("reason")}


@bp.activity_trigger(input_name="end")
async def synthesis_write(end: dict) -> dict:
    from shared import synthesis  # imported when a conversation ends, not at cold start

    with telemetry.span("synthesis.write", customer_id=end["customer_id"], session_id=end["session_id"],
                        ended_by=end["ended_by"]):
        return await synthesis.write(await get_services(), end["customer_id"], end["session_id"], end["ended_by"],
                                     end.get("escalation_id"))


async def start_synthesis(client: df.DurableOrchestrationClient, customer_id: str, session_id: str, ended_by: str,
                          escalation_id: str | None = None) -> str | None:
    """Start (once) the synthesis of the conversation that ended in `session_id`; its orchestration id, or None if
    it could not be started. Never raises: the conversation has ended whatever becomes of its synthesis, and the
    caller (a hang-up callback, a person closing a case) must not fail for it."""
    instance_id = instance_id_for(session_id, ended_by)
    try:
        if await _exists(client, instance_id):
            telemetry.dedup_hit("synthesis")
            return instance_id
        await client.start_new(ORCHESTRATOR, instance_id, work(customer_id, session_id, ended_by, escalation_id))
    except Exception:  # the SDK raises a bare Exception with whatever the extension answered
        # Two ends raced past the check: the extension refuses the second start (host.json), and the loser finds
        # the winner's instance. Anything else is logged; the record has no synthesis for this conversation then.
        try:
            if await _exists(client, instance_id):
                return instance_id
        except Exception:
            pass
        log.exception("could not start the synthesis of session %s", session_id)
        return None
    log.info("synthesis %s started (%s)", instance_id, ended_by)
    return instance_id


async def _exists(client: df.DurableOrchestrationClient, instance_id: str) -> bool:
    status = await client.get_status(instance_id)
    return status is not None and status.runtime_status is not None


@bp.route(route="customers/{customer_id}/syntheses", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
async def customer_syntheses(req: func.HttpRequest) -> func.HttpResponse:
    """How each of the customer's ended conversations ended, oldest first (an operator's or a CRM's read)."""
    from functions.api.desk import CustomerSyntheses

    customer = await (await get_services()).customers.get(req.route_params.get("customer_id", ""))
    return json_response(CustomerSyntheses(customer_id=customer.customer_id, syntheses=list(customer.syntheses)))
