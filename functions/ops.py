"""Operator endpoints: read and drive the live queue metrics (demos, load tests, incident declaration), and tell us
an outage is over so the texts the outage agent promised go out.

Function-key auth in Azure (AuthLevel.FUNCTION); the local host serves them open, as Core Tools does.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from functions.http import handles_errors, json_body, json_response
from shared.bootstrap import get_services
from shared.errors import InvalidInput

bp = func.Blueprint()

_SETTABLE = {"waiting": int, "in_progress": int, "estimated_wait_seconds": (int, float), "incident_customers": int}
_ADJUSTABLE = {"waiting", "in_progress"}


@bp.route(route="ops/queue", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
async def ops_queue_get(req: func.HttpRequest) -> func.HttpResponse:
    services = await get_services()
    return json_response(await _view(services))


@bp.route(route="ops/queue", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
async def ops_queue_set(req: func.HttpRequest) -> func.HttpResponse:
    """`{"set": {...}, "adjust": {...}, "clear_overrides": bool}`: set values, add to counters, drop pinned values."""
    body = json_body(req)
    if unknown := set(body) - {"set", "adjust", "clear_overrides"}:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}; use set, adjust, clear_overrides")
    to_set = _numbers(body.get("set", {}), _SETTABLE, "set")
    to_adjust = _numbers(body.get("adjust", {}), {k: int for k in _ADJUSTABLE}, "adjust")
    clear = body.get("clear_overrides", False)
    if not isinstance(clear, bool):
        raise InvalidInput('"clear_overrides" must be true or false')
    services = await get_services()
    await services.queue.set(**to_set, clear_overrides=clear)
    await services.queue.adjust(**to_adjust)
    return json_response(await _view(services))


@bp.route(route="ops/outages/{outage_id}/restored", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handles_errors
async def ops_outage_restored(req: func.HttpRequest) -> func.HttpResponse:
    """The outage-management system (or an operator) says an outage is over: everyone promised a text about it gets
    one, once; calling again sends nothing twice (shared/sms/promises.py). The body, if any, must be empty JSON."""
    from shared.sms.promises import outage_restored

    if json_body(req, allow_empty=True):
        raise InvalidInput("this endpoint takes no fields")
    outage_id = req.route_params.get("outage_id", "")
    services = await get_services()
    done = await outage_restored(services.scenario, services.customers, services.state, services.texts, outage_id)
    return json_response({"outage": outage_id, **done.to_dict()})


async def _view(services) -> dict[str, Any]:
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
    return {
        "queue": snapshot.to_dict(),
        "figures": overridden if snapshot.overridden else live,
        "thresholds": {
            "queue_wait_threshold_seconds": omni.queue_wait_threshold_seconds,
            "queue_depth_threshold": omni.queue_depth_threshold,
            "mass_outage_threshold": omni.mass_outage_threshold,
        },
        "switch_offered": decision.offer,
        "reasons": list(decision.reasons),
    }


def _numbers(values: Any, allowed: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise InvalidInput(f'"{where}" must be an object')
    if unknown := set(values) - set(allowed):
        raise InvalidInput(f'"{where}" has unknown field(s): {", ".join(sorted(unknown))}')
    values = dict(values)
    for key, value in values.items():
        if allowed[key] is int and isinstance(value, float) and value.is_integer():
            values[key] = value = int(value)  # JSON has one number type: 3.0 is the integer 3
        if isinstance(value, bool) or not isinstance(value, allowed[key]):
            raise InvalidInput(f'"{where}.{key}" must be a number')
        if where == "set" and value < 0:
            raise InvalidInput(f'"{where}.{key}" must not be negative')
        if abs(value) > 10_000_000:
            raise InvalidInput(f'"{where}.{key}" is out of range')
    return values
