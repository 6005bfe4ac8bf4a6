"""Operator endpoints: read and drive the live queue metrics (demos, load tests, incident declaration), tell us
an outage is over so the texts the outage agent promised go out, and read the design's success figures.

Function-key auth in Azure (AuthLevel.FUNCTION); the local host serves them open, as Core Tools does, unless
LOCAL_FUNCTION_KEY is set (docs/security.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.durable_functions as df
import azure.functions as func

from functions.http import handles_errors, json_response
from shared.bootstrap import get_services

if TYPE_CHECKING:
    from functions.api.ops import QueueView
    from shared.bootstrap import Services

bp = df.Blueprint()  # the outage route raises the notifications' event (a Durable client)


@bp.route(route="ops/queue", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
async def ops_queue_get(req: func.HttpRequest) -> func.HttpResponse:
    services = await get_services()
    return json_response(await _view(services))


@bp.route(route="ops/queue", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
async def ops_queue_set(req: func.HttpRequest) -> func.HttpResponse:
    """`{"set": {...}, "adjust": {...}, "clear_overrides": bool}`: set values, add to counters, drop pinned values."""
    from functions.api.ops import QueueUpdate
    from functions.api.parsing import parse_body

    update = parse_body(req, QueueUpdate)
    services = await get_services()
    await services.queue.set(**update.set.model_dump(exclude_unset=True), clear_overrides=update.clear_overrides)
    await services.queue.adjust(**update.adjust.model_dump(exclude_unset=True))
    return json_response(await _view(services))


@bp.route(route="ops/outages/{outage_id}/restored", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
@handles_errors
async def ops_outage_restored(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The outage-management system (or an operator) says an outage is over: the notification of everyone promised a
    text about it is told to go (functions/notifications.py), and goes once; calling again sends nothing twice. The
    body, if any, must be empty JSON."""
    from functions.api.common import NoFields
    from functions.api.ops import OutageRestored
    from functions.api.parsing import parse_body
    from functions.notifications import moment_came
    from shared.notifications import outage_restored

    parse_body(req, NoFields, allow_empty=True)
    outage_id = req.route_params.get("outage_id", "")
    services = await get_services()
    await outage_restored(services, outage_id)
    done = await moment_came(client, "outage_restored", outage_id)
    return json_response(OutageRestored(outage=outage_id, **done))


@bp.route(route="ops/metrics", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
async def ops_metrics(req: func.HttpRequest) -> func.HttpResponse:
    """The design's success figures over the last `hours` (default 24, at most a week), from the customer records:
    each with the count it is computed over, its target and whether it is met (shared/ops_metrics.py)."""
    from functions.api.ops import MetricsQuery
    from functions.api.parsing import parse_query
    from shared import telemetry
    from shared.ops_metrics import Figures

    # `code` is the function key, when a client sends it in the query rather than the x-functions-key header.
    hours = parse_query(req, MetricsQuery, ignore=("code",)).hours
    services = await get_services()
    figures = await Figures(services.scenario, services.customers, services.state).compute(hours)
    telemetry.publish_figures(figures)
    return json_response(figures)


async def _view(services: Services) -> QueueView:
    from functions.api.ops import QueueView
    from shared.router import decide  # only this endpoint and the agents need the router

    snapshot = await services.queue.snapshot()
    omni = services.scenario.omnichannel
    # What a phone caller with a mobile number would be told right now.
    decision = decide(omni, snapshot, None, "voice")
    live = ("live: customers waiting for a person and calls, counted as they come and go; the estimate from the "
            "people on duty at the desk")
    overridden = ("overridden: an operator's figures are in force (an offset on the live counts or a pinned estimate), "
                  'so these are not all live; send {"set": {"waiting": 0, "in_progress": 0}, "clear_overrides": true} '
                  "to go back to live figures")
    return QueueView(
        queue=snapshot.to_dict(),
        figures=overridden if snapshot.overridden else live,
        thresholds={
            "queue_wait_threshold_seconds": omni.queue_wait_threshold_seconds,
            "queue_depth_threshold": omni.queue_depth_threshold,
            "mass_outage_threshold": omni.mass_outage_threshold,
        },
        switch_offered=decision.offer,
        reasons=list(decision.reasons),
    )
