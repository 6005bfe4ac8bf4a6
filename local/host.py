"""A local stand-in for the Azure Functions host: serves a v2-model `FunctionApp` over aiohttp.

Core Tools cannot run here, so this reads the app's registered functions (`app.get_functions()`) and serves
HTTP triggers at `/{routePrefix}/{route}` and Event Grid triggers at the path the real host uses
(`/runtime/webhooks/EventGrid?functionName=NAME`), handshakes included. Everything else (durableClient inputs,
orchestration and activity triggers) plugs in through `Extension`, so the Durable engine adds itself without
changing this module. Route templates live in `local.routes`, Event Grid payloads in `local.eventgrid`, and
what the host reads from the project folder (local.settings.json, host.json, the app module) in `local.project`.

Like Core Tools, the host checks no function keys unless it is given one (`function_key`, LOCAL_FUNCTION_KEY under
`python -m local`); then it answers 401 for a function-level route before the function runs, as Azure does
(local.auth.FunctionKeys).

Every user function runs on the one event loop that serves requests: the Durable client keeps a module-global
aiohttp session, which only works if the loop lives as long as the process (docs/protocols.md, "Durable HTTP API").
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

import azure.functions as func
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from azure.functions.decorators.core import Binding, BindingDirection
from azure.functions.decorators.function_app import Function, FunctionRegister
from multidict import CIMultiDict

from local.auth import FunctionKeys
from local.eventgrid import MAX_EVENTGRID_BYTES, BadRequest, parse_events, to_trigger_event, validation_code
from local.routes import HttpRoute
from shared import redact

log = logging.getLogger("local.host")

EVENTGRID_PATH = "/runtime/webhooks/EventGrid"
MAX_HTTP_BODY = 100 * 1024 * 1024  # the Azure Functions HTTP request limit
#: Headers only the platform's authentication writes: whatever a client sends under these names never reaches the app.
PLATFORM_HEADERS = ("x-ms-client-principal", "x-ms-token-")

# --- the extension point --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """One call of a user function, as an input provider sees it."""

    function: Function
    invocation_id: str
    request: web.Request | None  # the HTTP request behind the call, if any (its origin is the host's URL)


#: Supplies the value of one input binding (e.g. the durableClient JSON string) for one invocation.
InputProvider = Callable[[Binding, Invocation], Awaitable[Any]]
#: Takes charge of a function whose trigger the host does not serve itself (e.g. orchestrationTrigger).
TriggerHandler = Callable[[Function], None]
#: The principal headers the platform's authentication would inject for a request (local/auth.py); {} for none.
PrincipalSource = Callable[[web.Request], dict[str, str]]


class Extension(Protocol):
    """Plugs more binding types into the host; the Durable engine is the first.

    `install` runs once, before the functions load. It may call `host.add_input_provider`,
    `host.add_trigger_handler`, `host.set_principal_source`, add routes to `host.web.router`, and append to
    `host.web.on_startup` / `host.web.on_cleanup`. It later runs the functions it adopted with `await host.invoke(function, value)`.
    """

    def install(self, host: Host) -> None: ...


@dataclass(frozen=True)
class _Context:
    """What the worker passes as `context` (func.Context), for functions that declare the parameter."""

    invocation_id: str
    function_name: str
    function_directory: str
    trace_context: None = None
    retry_context: None = None
    thread_local_storage: None = None


# --- the host -------------------------------------------------------------------------------------------------


class _AccessLogger(AbstractAccessLogger):
    """`--access-log` lines: no query values that are credentials (the callback URL's and the media URL's tokens)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %d %.1f ms', request.remote, request.method, redact.url(request.path_qs),
                         response.status, time * 1000)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class Host:
    """Serves one FunctionApp. Build it inside the running event loop; `start()` binds, `stop()` drains."""

    def __init__(
        self,
        app: FunctionRegister,
        *,
        route_prefix: str = "api",
        extensions: tuple[Extension, ...] | list[Extension] = (),
        on_shutdown: Callable[[], Any] | None = None,
        function_directory: Path | None = None,
        function_key: str = "",
    ) -> None:
        self.route_prefix = route_prefix.strip("/")
        self.url = ""  # set by start(); extensions read it for self-links (e.g. the Durable rpcBaseUrl)
        self.web = web.Application(client_max_size=MAX_HTTP_BODY)
        self._on_shutdown = on_shutdown
        self._directory = str(function_directory or Path.cwd())
        self._providers: dict[str, InputProvider] = {}
        self._trigger_handlers: dict[str, TriggerHandler] = {}
        self._routes: list[HttpRoute] = []
        self._eventgrid: dict[str, Function] = {}
        self._hosted: list[tuple[str, str, str]] = []  # (function, kind, where) for the startup lines
        self._wants_context: dict[str, bool] = {}
        self._principal: PrincipalSource | None = None
        self._keys = FunctionKeys(function_key) if function_key else None  # None: no keys checked, as Core Tools
        self._runner: web.AppRunner | None = None

        self.web.router.add_get("/healthz", self._healthz)
        self.web.router.add_route("*", EVENTGRID_PATH, self._serve_eventgrid)
        for extension in extensions:
            extension.install(self)
        self._load(app.get_functions())  # once: a second call raises (docs/protocols.md, "Function app introspection")
        # Last, so extension routes win. [\s\S], not `.`: a route parameter may hold an encoded newline (%0A), and
        # aiohttp would answer a path it cannot match with its own text/plain 404, not the functions' JSON.
        self.web.router.add_route("*", r"/{path:[\s\S]*}", self._serve_http)

    # extension API

    def add_input_provider(self, binding_type: str, provider: InputProvider) -> None:
        self._providers[binding_type] = provider

    def add_trigger_handler(self, trigger_type: str, handler: TriggerHandler) -> None:
        self._trigger_handlers[trigger_type] = handler

    def set_principal_source(self, source: PrincipalSource) -> None:
        """Who is signed in, per request: the host adds these headers after removing any the client sent."""
        self._principal = source

    async def invoke(self, function: Function, trigger_value: Any, *, request: web.Request | None = None) -> Any:
        """Run a user function with its trigger value and its other input bindings; exceptions propagate."""
        name = function.get_function_name()
        trigger = function.get_trigger()
        invocation = Invocation(function, str(uuid.uuid4()), request)
        kwargs: dict[str, Any] = {trigger.name: trigger_value}
        for binding in function.get_bindings():
            provider = self._providers.get(binding.type)
            if provider and binding.name != trigger.name and _is_input(binding):
                kwargs[binding.name] = await provider(binding, invocation)
        if self._wants_context.get(name) and "context" not in kwargs:
            kwargs["context"] = _Context(invocation.invocation_id, name, self._directory)
        user_function = function.get_user_function()
        if inspect.iscoroutinefunction(user_function):
            return await user_function(**kwargs)
        return await asyncio.to_thread(user_function, **kwargs)  # sync code must not block the loop

    @property
    def functions(self) -> list[str]:
        return [name for name, _, _ in self._hosted]

    # lifecycle

    async def start(self, port: int, host: str = "127.0.0.1", *, access_log: bool = False) -> None:
        """Bind and serve. Port 0 picks a free one; `self.url` tells which. OSError if the port is taken."""
        runner = web.AppRunner(
            self.web, access_log=log if access_log else None, access_log_class=_AccessLogger, shutdown_timeout=10
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self.url = f"http://{host}:{bound_port}"
        for name, kind, where in self._hosted:
            log.info("%-28s %-24s %s", name, kind, where.replace("{url}", self.url))
        if self._keys is not None:
            log.info("function keys are checked: function-level routes answer 401 without LOCAL_FUNCTION_KEY")

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish, then run the app's shutdown() hook."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._on_shutdown is not None:
            try:
                result = self._on_shutdown()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("the app's shutdown() failed")
            self._on_shutdown = None

    # loading

    def _load(self, functions: list[Function]) -> None:
        for function in functions:
            name = function.get_function_name()
            trigger = function.get_trigger()
            self._wants_context[name] = self._declares_context(function)
            if trigger.type == "httpTrigger":
                self._add_http(function)
            elif trigger.type == "eventGridTrigger":
                self._eventgrid[name.lower()] = function
                self._hosted.append((name, "EventGrid", f"{{url}}{EVENTGRID_PATH}?functionName={name}"))
            elif trigger.type in self._trigger_handlers:
                self._trigger_handlers[trigger.type](function)
                self._hosted.append((name, trigger.type, ""))
            else:
                log.warning("%s: %s triggers are not hosted locally; skipped", name, trigger.type)
                continue
            for binding in function.get_bindings():
                if binding.name != trigger.name and _is_input(binding):
                    if binding.type not in self._providers:
                        log.warning("%s: no local provider for %s input %r", name, binding.type, binding.name)
        self._routes.sort(key=lambda route: route.rank)

    def _add_http(self, function: Function) -> None:
        name = function.get_function_name()
        if function.http_type != "function":
            log.warning("%s: %s HTTP functions are not hosted locally; skipped", name, function.http_type)
            return
        trigger = function.get_trigger()
        methods = frozenset(str(method).upper() for method in trigger.methods or ()) or None
        template = (trigger.route or name).strip("/")
        self._routes.append(HttpRoute.compile(function, template, methods))
        path = "/".join(filter(None, (self.route_prefix, template)))
        self._hosted.append((name, ",".join(sorted(methods or ("*",))), f"{{url}}/{path}"))

    @staticmethod
    def _declares_context(function: Function) -> bool:
        # signature() follows __wrapped__, so this sees through the durableClient wrapper to the user's code
        try:
            parameters = inspect.signature(function.get_user_function()).parameters
        except (TypeError, ValueError):
            return False
        bound = {binding.name for binding in function.get_bindings()}
        return "context" in parameters and "context" not in bound

    # request handlers

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "functions": self.functions})

    async def _serve_http(self, request: web.Request) -> web.StreamResponse:
        path = self._strip_prefix(request.rel_url.raw_path)
        if path is None:
            return _error(404, f"no function at {request.path}")
        allowed: set[str] = set()
        for route in self._routes:
            params = route.match(path)
            if params is None:
                continue
            if route.methods is None or request.method in route.methods:
                break
            allowed |= route.methods
        else:
            if allowed:
                methods = ", ".join(sorted(allowed))
                return _error(405, f"{request.method} is not allowed here; use {methods}", {"Allow": methods})
            return _error(404, f"no function at {request.path}")
        if self._keys is not None and (refusal := self._keys.refusal(route.auth_level, request)):
            return _error(401, refusal)  # before the body is read, as the platform refuses before the app runs

        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"request bodies are at most {MAX_HTTP_BODY} bytes")
        headers = _joined_headers(request)
        if self._principal is not None:
            headers.update(self._principal(request))
        http_request = func.HttpRequest(
            request.method,
            str(request.url),
            headers=headers,
            params=dict(request.query),
            route_params=params,
            body=body,
        )
        name = route.function.get_function_name()
        try:
            return _to_response(await self.invoke(route.function, http_request, request=request))
        except Exception:
            log.exception("function %s failed on %s %s", name, request.method, request.path)
            return _error(500, "internal error")

    def _strip_prefix(self, raw_path: str) -> str | None:
        """The path under the route prefix ("" or "/..."), or None when the path is outside it."""
        if not self.route_prefix:
            return raw_path
        prefix = "/" + self.route_prefix
        head, rest = raw_path[: len(prefix)], raw_path[len(prefix) :]
        if head.lower() != prefix.lower() or (rest and not rest.startswith("/")):
            return None
        return rest

    async def _serve_eventgrid(self, request: web.Request) -> web.StreamResponse:
        name = request.query.get("functionName", "")
        function = self._eventgrid.get(name.lower())
        if function is None:
            return _error(404, f"no Event Grid function named {name!r}" if name else "functionName is missing")
        if request.method == "OPTIONS":
            return _abuse_protection(request)
        if request.method != "POST":
            return _error(405, f"{request.method} is not allowed here; use POST", {"Allow": "POST, OPTIONS"})

        kind = request.headers.get("aeg-event-type", "").lower()
        if kind == "unsubscribe":
            return web.Response(status=202)
        if kind not in ("notification", "subscriptionvalidation"):
            return _error(400, "the aeg-event-type header must be Notification or SubscriptionValidation")
        if (request.content_length or 0) > MAX_EVENTGRID_BYTES:
            return _error(413, f"Event Grid batches are at most {MAX_EVENTGRID_BYTES} bytes")
        try:
            items = parse_events(await request.read())
            if kind == "subscriptionvalidation":
                return web.json_response({"validationResponse": validation_code(items)})
            events = [to_trigger_event(index, item) for index, item in enumerate(items)]
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"Event Grid batches are at most {MAX_EVENTGRID_BYTES} bytes")
        except BadRequest as exc:
            return _error(exc.status, str(exc))

        # Every event gets its own call even if one fails: a poison event must not starve its neighbours. A
        # failure answers 500 so Event Grid redelivers the batch; handlers deduplicate by event id.
        failed = 0
        for event in events:
            try:
                await self.invoke(function, event, request=request)
            except Exception:
                failed += 1
                log.exception("function %s failed on Event Grid event %s", function.get_function_name(), event.id)
        return _error(500, "internal error") if failed else web.Response(status=202)


def _abuse_protection(request: web.Request) -> web.Response:
    """CloudEvents webhook validation: echo the origin that asks
    (docs/protocols.md, "Event Grid subscription validation")."""
    origin = request.headers.get("WebHook-Request-Origin")
    if not origin:
        return _error(400, "OPTIONS needs a WebHook-Request-Origin header")
    return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})


def _is_input(binding: Binding) -> bool:
    # get_bindings() holds the direction as a plain int (0 = in), while the enum is not an IntEnum
    return getattr(binding.direction, "value", binding.direction) == BindingDirection.IN.value


def _joined_headers(request: web.Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        if key.lower().startswith(PLATFORM_HEADERS):
            continue  # as App Service authentication does: only the platform may say who is signed in
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    # As the Functions front end does in Azure, the peer's address goes last in X-Forwarded-For: the app reads the
    # client's address one way here and there (functions/http.py client_address).
    sent = [headers.pop(key) for key in [k for k in headers if k.lower() == "x-forwarded-for"]]
    if request.remote:
        headers["X-Forwarded-For"] = ", ".join([*sent, request.remote])
    elif sent:
        headers["X-Forwarded-For"] = ", ".join(sent)
    return headers


def _to_response(result: Any) -> web.Response:
    """func.HttpResponse (or a str, like the worker accepts) → aiohttp; None → 204."""
    if result is None:
        return web.Response(status=204)
    if isinstance(result, str):
        result = func.HttpResponse(result)
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"an HTTP function returned {type(result).__name__}, not func.HttpResponse")
    framing = ("content-length", "transfer-encoding")  # aiohttp frames the body itself
    headers = CIMultiDict((key, value) for key, value in result.headers.items() if key.lower() not in framing)
    if "Content-Type" not in headers:  # the worker's rule: mimetype, plus the charset for text/*
        mimetype = result.mimetype
        headers["Content-Type"] = f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype
    return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
