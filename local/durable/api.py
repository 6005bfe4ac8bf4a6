"""The Durable HTTP API, as far as `DurableOrchestrationClient` and a 202's management links use it
(docs/protocols.md, "Durable HTTP API").

The same routes answer under the RPC base the client binding points at (`/durabletask/`) and under the public
webhook path whose links `create_check_status_response` hands out (`/runtime/webhooks/durabletask/`), as the
extension's HttpApiHandler does. Status codes and bodies follow that handler, because the SDK's client branches on
them: empty bodies where it answers with a bare status (the client parses every body as JSON), `ExceptionMessage`
in a 400 (the client raises it), 202 while running and 200 once ended for a status query.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from local.durable.clock import format_time, parse_time
from local.durable.engine import (
    Engine,
    InstanceExists,
    InstanceGone,
    InstanceNotFound,
    InvalidInstanceId,
    UnknownOrchestrator,
)
from local.durable.history import public_history
from local.durable.store import InstanceRow, Query

RPC_BASE = "/durabletask"
WEBHOOK_BASE = "/runtime/webhooks/durabletask"
CONNECTION = "Storage"  # the extension's default connection name, echoed in its links

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DurableApi:
    def __init__(self, engine: Engine, task_hub: str) -> None:
        self._engine = engine
        self.task_hub = task_hub

    def add_routes(self, router: web.UrlDispatcher) -> None:
        for base in (RPC_BASE, WEBHOOK_BASE):
            router.add_post(base + "/orchestrators/{name}", self.start)
            router.add_post(base + "/orchestrators/{name}/{instance_id}", self.start)
            for path in (base + "/instances", base + "/instances/"):
                router.add_get(path, self.list_instances)
                router.add_delete(path, self.purge_instances)
            router.add_get(base + "/instances/{instance_id}", self.get_status)
            router.add_delete(base + "/instances/{instance_id}", self.purge_instance)
            router.add_post(base + "/instances/{instance_id}/raiseEvent/{event}", self.raise_event)
            router.add_post(base + "/instances/{instance_id}/{operation}", self.operation)
            router.add_route("*", base + "/entities/{tail:.*}", self.not_supported)

    # links

    def management_urls(self, origin: str, instance_id: str) -> dict[str, str]:
        """The extension's HttpManagementPayload for one instance (the binding uses the id `INSTANCEID`)."""
        prefix = f"{origin}{WEBHOOK_BASE}/instances/{quote(instance_id, safe='')}"
        query = f"taskHub={quote(self.task_hub, safe='')}&connection={CONNECTION}"
        return {
            "id": instance_id,
            "statusQueryGetUri": f"{prefix}?{query}",
            "sendEventPostUri": f"{prefix}/raiseEvent/{{eventName}}?{query}",
            "terminatePostUri": f"{prefix}/terminate?reason={{text}}&{query}",
            "rewindPostUri": f"{prefix}/rewind?reason={{text}}&{query}",
            "purgeHistoryDeleteUri": f"{prefix}?{query}",
            "restartPostUri": f"{prefix}/restart?{query}",
            "suspendPostUri": f"{prefix}/suspend?reason={{text}}&{query}",
            "resumePostUri": f"{prefix}/resume?reason={{text}}&{query}",
        }

    def binding(self, origin: str) -> str:
        """The `durableClient` input value: what the SDK's DurableOrchestrationClient is built from."""
        query = f"taskHub={quote(self.task_hub, safe='')}&connection={CONNECTION}"
        create = f"{origin}{WEBHOOK_BASE}/orchestrators/{{functionName}}[/{{instanceId}}]"
        wait = "timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}"
        return json.dumps(
            {
                "taskHubName": self.task_hub,
                "creationUrls": {
                    "createNewInstancePostUri": f"{create}?{query}",
                    "createAndWaitOnNewInstancePostUri": f"{create}?{wait}&{query}",
                },
                "managementUrls": self.management_urls(origin, "INSTANCEID"),
                "baseUrl": f"{origin}{WEBHOOK_BASE}",
                "requiredQueryStringParameters": query,
                "rpcBaseUrl": f"{origin}{RPC_BASE}/",
            }
        )

    # handlers

    async def start(self, request: web.Request) -> web.Response:
        body = await request.read()
        input_json = None
        if body.strip():
            try:
                # The client double-encodes (a JSON string of df_dumps text); the token is kept as sent, as the
                # extension does, and the SDK's get_input() decodes the inner layer.
                input_json = json.dumps(json.loads(body))
            except ValueError as exc:
                return _error(400, "Invalid JSON content", exc)
        try:
            instance_id = await self._engine.start_new(
                request.match_info["name"], request.match_info.get("instance_id"), input_json
            )
        except (UnknownOrchestrator, InvalidInstanceId) as exc:
            return _error(400, "One or more of the arguments submitted is incorrect", exc, "System.ArgumentException")
        except InstanceExists as exc:
            # What the extension answers: its start handler only maps ArgumentException, so DTFx's
            # OrchestrationAlreadyExistsException becomes a 500, and the SDK's start_new raises with this body.
            return _error(
                500,
                "Something went wrong while processing your request",
                exc,
                "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException",
            )
        links = self.management_urls(_origin(request), instance_id)
        return web.json_response(
            links, status=202, headers={"Location": links["statusQueryGetUri"], "Retry-After": "10"}
        )

    async def raise_event(self, request: web.Request) -> web.Response:
        if request.content_type.lower() != "application/json":
            return _error(400, "Only application/json request content is supported")
        body = await request.read()
        try:
            # The extension stores the body's JSON token, so a Python client's double-encoded payload reaches the
            # orchestrator as the JSON *text* it encoded (a str); a plain JSON body arrives decoded.
            input_json = json.dumps(json.loads(body)) if body.strip() else None
        except ValueError as exc:
            return _error(400, "Invalid JSON content", exc)
        return await self._on_instance(
            self._engine.raise_event(request.match_info["instance_id"], request.match_info["event"], input_json)
        )

    async def operation(self, request: web.Request) -> web.Response:
        operation = request.match_info["operation"].lower()
        if operation != "terminate":
            return _error(501, f"the local Durable engine does not support {operation}")
        reason = request.query.get("reason")
        return await self._on_instance(self._engine.terminate(request.match_info["instance_id"], reason))

    async def get_status(self, request: web.Request) -> web.Response:
        row = await self._engine.status(request.match_info["instance_id"])
        if row is None:
            return web.Response(status=404)  # empty: the SDK's get_status turns that into a falsy status
        history = await self._engine.history(row.instance_id) if _flag(request, "showHistory", False) else None
        body = self.status_json(row, request, history)
        if row.is_running:
            headers = {"Location": str(request.url), "Retry-After": "5"}
            return web.json_response(body, status=202, headers=headers)
        failed_as_500 = row.status == "Failed" and _flag(request, "returnInternalServerErrorOnFailure", False)
        return web.json_response(body, status=500 if failed_as_500 else 200)

    async def list_instances(self, request: web.Request) -> web.Response:
        try:
            query = _query(request)
        except ValueError as exc:
            return _error(400, "One or more of the arguments submitted is incorrect", exc)
        rows = await self._engine.instances(query)
        return web.json_response([self.status_json(row, request, None) for row in rows])

    async def purge_instance(self, request: web.Request) -> web.Response:
        deleted = await self._engine.purge(instance_id=request.match_info["instance_id"])
        return web.json_response({"instancesDeleted": deleted}) if deleted else web.Response(status=404)

    async def purge_instances(self, request: web.Request) -> web.Response:
        if "createdTimeFrom" not in request.query:
            return _error(400, "Please provide value for 'createdTimeFrom' parameter.")
        try:
            query = _query(request)
        except ValueError as exc:
            return _error(400, "One or more of the arguments submitted is incorrect", exc)
        deleted = await self._engine.purge(query)
        return web.json_response({"instancesDeleted": deleted}) if deleted else web.Response(status=404)

    async def not_supported(self, request: web.Request) -> web.Response:
        return _error(501, "the local Durable engine does not run entities")

    def status_json(self, row: InstanceRow, request: web.Request, history: list[Any] | None) -> dict[str, Any]:
        """The extension's StatusResponsePayload; input unless showInput=false, history only when asked."""
        body: dict[str, Any] = {
            "name": row.name,
            "instanceId": row.instance_id,
            "runtimeStatus": row.status,
            "input": _loads(row.input) if _flag(request, "showInput", True) else None,
            "customStatus": _loads(row.custom_status),
            "output": _loads(row.output),
            "createdTime": _seconds(row.created_time),
            "lastUpdatedTime": _seconds(row.last_updated_time),
        }
        if history is not None:
            body["historyEvents"] = public_history(history, _flag(request, "showHistoryOutput", False))
        return body

    @staticmethod
    async def _on_instance(operation: Awaitable[None]) -> web.Response:
        """202 when queued, 404 when no such instance, 410 when it has ended; bodies empty, as the client expects."""
        try:
            await operation
        except InstanceNotFound:
            return web.Response(status=404)
        except InstanceGone:
            return web.Response(status=410)
        return web.Response(status=202)


def _error(status: int, message: str, exc: Exception | None = None, exception_type: str | None = None) -> web.Response:
    """The shape of ASP.NET's HttpError, which the extension answers with and the SDK reads `ExceptionMessage` of."""
    body: dict[str, Any] = {"Message": message}
    if exc is not None:
        body["ExceptionMessage"] = str(exc)
        body["ExceptionType"] = exception_type or type(exc).__name__
    return web.json_response(body, status=status)


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _flag(request: web.Request, name: str, default: bool) -> bool:
    """.NET bool.TryParse: "true"/"True" (what Python's str(True) sends) and "false"; anything else is the default."""
    value = request.query.get(name, "").strip().lower()
    return {"true": True, "false": False}.get(value, default)


def _query(request: web.Request) -> Query:
    args = request.query

    def when(name: str) -> str | None:
        return format_time(parse_time(args[name])) if args.get(name) else None

    statuses = tuple(s.strip() for s in args.get("runtimeStatus", "").split(",") if s.strip()) or None
    return Query(when("createdTimeFrom"), when("createdTimeTo"), statuses, args.get("instanceIdPrefix") or None)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _seconds(stamp: str) -> str:
    """The extension's `ToString("s") + "Z"`: whole seconds."""
    return stamp[:19] + "Z"
