"""local/host.py: a tiny inline app served by a real Host on a free port, driven over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import azure.durable_functions as df
import azure.functions as func
import pytest
import pytest_asyncio
from azure.functions.decorators.core import Binding
from azure.functions.decorators.function_app import Function

from local.host import Host, Invocation
from local.project import SKIP_LOCAL_SETTINGS
from shared.settings import SETTINGS
from tests.peers.local_host import PROJECT_ROOT, host_environ

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
received: list[func.EventGridEvent | func.CloudEvent] = []
seen: dict[str, Any] = {}


@app.route(route="items/{item_id:int}", methods=["GET", "POST"])
async def item(req: func.HttpRequest) -> func.HttpResponse:
    seen["loop"] = asyncio.get_running_loop()
    reply = {
        "method": req.method,
        "item_id": req.route_params["item_id"],
        "q": req.params.get("q"),
        "body": req.get_body().decode(),
        "header": req.headers.get("x-test"),
    }
    return func.HttpResponse(json.dumps(reply), status_code=201, mimetype="application/json", headers={"X-Item": "1"})


@app.route(route="files/{*rest}", methods=["PUT"])
def put_file(req: func.HttpRequest) -> func.HttpResponse:
    on_thread = threading.current_thread() is not threading.main_thread()
    return func.HttpResponse(f"{req.route_params.get('rest', '')}|{on_thread}")


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret detail from deep inside")


@app.route(route="orders")
@app.durable_client_input(client_name="client")
async def start_order(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return client.create_check_status_response(req, "order-1")


@app.activity_trigger(input_name="name")
def greet(name: str) -> str:
    return f"hello {name}"


@app.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    received.append(event)


@app.event_grid_trigger(arg_name="event")
async def failing_event(event: func.EventGridEvent) -> None:
    raise RuntimeError("handler broke")


class FakeDurable:
    """A stand-in for the Durable engine: supplies durableClient and adopts activity functions."""

    def __init__(self) -> None:
        self.activities: dict[str, Function] = {}

    def install(self, host: Host) -> None:
        host.add_input_provider("durableClient", self.client)
        host.add_trigger_handler("activityTrigger", self.adopt)

    def adopt(self, function: Function) -> None:
        self.activities[function.get_function_name()] = function

    async def client(self, binding: Binding, invocation: Invocation) -> str:
        base = "http://127.0.0.1:1/runtime/webhooks/durabletask"
        return json.dumps(
            {
                "taskHubName": "LocalHub",
                "creationUrls": {},
                "managementUrls": {"id": "INSTANCEID", "statusQueryGetUri": f"{base}/instances/INSTANCEID"},
                "rpcBaseUrl": "http://127.0.0.1:1/durabletask/",
            }
        )


durable = FakeDurable()


@pytest_asyncio.fixture(scope="module")
async def host() -> AsyncIterator[Host]:
    served = Host(app, extensions=[durable])
    await served.start(port=0)
    yield served
    await served.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    received.clear()
    async with aiohttp.ClientSession() as session:
        yield session


def grid_event(n: int, **overrides: Any) -> dict[str, Any]:
    event = {
        "id": f"evt-{n}",
        "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Communication/communicationServices/z",
        "subject": f"call/{n}",
        "eventType": "Microsoft.Communication.IncomingCall",
        "eventTime": "2026-11-25T10:00:00.1234567Z",
        "data": {"n": n},
        "dataVersion": "1.0",
    }
    return {**event, **overrides}


async def post_events(http: aiohttp.ClientSession, host: Host, body: Any, function: str = "on_event", **kw: Any):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"aeg-event-type": kw.pop("kind", "Notification"), "Content-Type": "application/json"}
    url = f"{host.url}/runtime/webhooks/EventGrid?functionName={function}"
    return await http.post(url, data=data, headers=headers)


# --- HTTP triggers --------------------------------------------------------------------------------------------


async def test_route_params_query_headers_and_body_reach_the_function(host: Host, http: aiohttp.ClientSession):
    response = await http.post(f"{host.url}/api/items/42?q=lamp", data=b"hello", headers={"X-Test": "yes"})

    assert response.status == 201
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Item"] == "1"
    assert await response.json() == {"method": "POST", "item_id": "42", "q": "lamp", "body": "hello", "header": "yes"}


async def test_async_functions_run_on_the_hosts_loop_and_sync_ones_in_a_thread(host: Host, http):
    await http.get(f"{host.url}/api/items/1")
    assert seen["loop"] is asyncio.get_running_loop()

    response = await http.put(f"{host.url}/api/files/a/b%20c.txt")
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert await response.text() == "a/b c.txt|True"


async def test_a_wrong_method_is_405_with_allow(host: Host, http: aiohttp.ClientSession):
    response = await http.delete(f"{host.url}/api/items/42")

    assert response.status == 405
    assert response.headers["Allow"] == "GET, POST"
    assert "DELETE" in (await response.json())["error"]


@pytest.mark.parametrize("path", ["/api/nothing-here", "/api/items/abc", "/elsewhere", "/apix/items/1"])
async def test_unknown_routes_are_404_json(host: Host, http: aiohttp.ClientSession, path: str):
    response = await http.get(f"{host.url}{path}")

    assert response.status == 404
    assert "error" in await response.json()


async def test_an_exception_is_500_without_a_traceback(host: Host, http: aiohttp.ClientSession, caplog):
    response = await http.get(f"{host.url}/api/boom")

    assert response.status == 500
    text = await response.text()
    assert json.loads(text) == {"error": "internal error"}
    assert "Traceback" not in text and "secret" not in text
    assert "secret detail" in caplog.text  # the traceback goes to the log instead


async def test_healthz_lists_the_hosted_functions(host: Host, http: aiohttp.ClientSession):
    response = await http.get(f"{host.url}/healthz")

    body = await response.json()
    assert body["status"] == "ok"
    assert {"item", "put_file", "on_event", "start_order", "greet"} <= set(body["functions"])


# --- the extension point --------------------------------------------------------------------------------------


async def test_an_extension_supplies_input_bindings_to_the_sdk_wrapper(host: Host, http: aiohttp.ClientSession):
    response = await http.get(f"{host.url}/api/orders")

    assert response.status == 202  # the SDK built a real DurableOrchestrationClient from the provided JSON
    assert response.headers["Location"] == f"{host.url}/runtime/webhooks/durabletask/instances/order-1"


async def test_an_extension_adopts_triggers_and_runs_them_through_the_host(host: Host):
    assert set(durable.activities) == {"greet"}

    assert await host.invoke(durable.activities["greet"], "Ada") == "hello Ada"


# --- Event Grid -----------------------------------------------------------------------------------------------


async def test_the_subscription_validation_handshake_answers_the_code(host: Host, http: aiohttp.ClientSession):
    validation = grid_event(
        0, eventType="Microsoft.EventGrid.SubscriptionValidationEvent", data={"validationCode": "abc-123"}
    )
    response = await post_events(http, host, [validation], kind="SubscriptionValidation")

    assert response.status == 200
    assert await response.json() == {"validationResponse": "abc-123"}
    assert received == []


async def test_cloudevents_abuse_protection_is_answered(host: Host, http: aiohttp.ClientSession):
    url = f"{host.url}/runtime/webhooks/EventGrid?functionName=on_event"
    response = await http.options(url, headers={"WebHook-Request-Origin": "eventgrid.azure.net"})

    assert response.status == 200
    assert response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


async def test_a_batch_of_three_calls_the_function_three_times(host: Host, http: aiohttp.ClientSession):
    response = await post_events(http, host, [grid_event(1), grid_event(2), grid_event(3)])

    assert response.status == 202
    assert [type(event) for event in received] == [func.EventGridEvent] * 3
    assert [event.id for event in received] == ["evt-1", "evt-2", "evt-3"]
    assert [event.subject for event in received] == ["call/1", "call/2", "call/3"]
    assert {event.event_type for event in received} == {"Microsoft.Communication.IncomingCall"}
    assert [event.get_json() for event in received] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert received[0].event_time.year == 2026


async def test_a_cloudevent_is_delivered_as_a_cloudevent(host: Host, http: aiohttp.ClientSession):
    cloud_event = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/acs/messages",
        "type": "Microsoft.Communication.AdvancedMessageReceived",
        "subject": "whatsapp/1",
        "time": "2026-11-25T10:00:00Z",
        "data": {"content": "hi"},
    }
    response = await post_events(http, host, cloud_event)  # one object, not an array

    assert response.status == 202
    [event] = received
    assert isinstance(event, func.CloudEvent)
    assert (event.id, event.type, event.source, event.get_json()) == (
        "ce-1",
        "Microsoft.Communication.AdvancedMessageReceived",
        "/acs/messages",
        {"content": "hi"},
    )


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "JSON"),
        (b"42", "array"),
        ([], "no events"),
        ([grid_event(1), {k: v for k, v in grid_event(2).items() if k != "eventType"}], "event 1: eventType"),
        ([grid_event(1, eventTime="yesterday")], "event 0: eventTime"),
        ([{"specversion": "1.0", "id": "x", "type": "t"}], "event 0: source"),
        ([{"specversion": "0.3", "id": "x", "source": "s", "type": "t"}], "event 0: specversion"),
        ([{k: v for k, v in grid_event(1).items() if k != "subject"}], "event 0: subject"),
    ],
)
async def test_a_malformed_batch_is_400_and_calls_nothing(host: Host, http, body: Any, says: str):
    response = await post_events(http, host, body)

    assert response.status == 400
    assert says in (await response.json())["error"]
    assert received == []


async def test_oversized_batches_are_413(host: Host, http: aiohttp.ClientSession):
    too_many = await post_events(http, host, [{}] * 5001)
    too_big = await post_events(http, host, [grid_event(1, data={"blob": "x" * 1_100_000})])

    assert (too_many.status, too_big.status) == (413, 413)
    assert received == []


async def test_event_grid_errors(host: Host, http: aiohttp.ClientSession):
    unknown = await post_events(http, host, [grid_event(1)], function="nope")
    http_function = await post_events(http, host, [grid_event(1)], function="item")
    no_header = await post_events(http, host, [grid_event(1)], kind="")
    failing = await post_events(http, host, [grid_event(1)], function="failing_event")

    assert (unknown.status, http_function.status, no_header.status) == (404, 404, 400)
    assert failing.status == 500  # so Event Grid redelivers
    assert await failing.json() == {"error": "internal error"}


# --- lifecycle ----------------------------------------------------------------------------------------------------


async def test_stop_awaits_the_apps_shutdown_and_an_empty_prefix_serves_at_root():
    small = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @small.route(route="ping")
    def ping(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pong")

    closed: list[bool] = []

    async def shutdown() -> None:
        closed.append(True)

    served = Host(small, route_prefix="", on_shutdown=shutdown)
    await served.start(port=0)
    async with aiohttp.ClientSession() as session:
        assert await (await session.get(f"{served.url}/ping")).text() == "pong"
    await served.stop()

    assert closed == [True]


# --- python -m local, as a process (the live_host machinery, hosting this module's app) ------------------------


def test_python_m_local_serves_the_app_and_stops_cleanly_on_sigterm(local_host_factory):
    process = local_host_factory("--app", "tests.local.test_host:app")

    with urllib.request.urlopen(f"{process.url}/healthz") as response:
        assert "on_event" in json.load(response)["functions"]
    # The banner comes once every service is up (the media gateway starts after the host answers /healthz).
    deadline = time.monotonic() + 60
    while f"{process.url}/api/webchat" not in process.stdout() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"{process.url}/api/webchat" in process.stdout()

    assert process.stop() == 0
    assert "Goodbye" in process.stdout()


def test_python_m_local_says_which_setting_to_change_when_the_port_is_busy(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = host_environ({"PORT": str(port), "SWITCHBOARD_DATA_DIR": str(tmp_path), "SWITCHBOARD_POLICY": "offline"})
        done = subprocess.run(
            [sys.executable, "-m", "local", "--app", "tests.local.test_host:app"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert done.returncode == 1
    assert f"port {port} is in use: set PORT=" in done.stderr


def test_test_hosts_inherit_no_switchboard_settings_and_skip_local_settings_json(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://developer.example/v1")
    monkeypatch.setenv("REDIS_URL", "redis://developer.example")
    monkeypatch.setenv("SB_TEST_UNRELATED", "kept")

    env = host_environ({"REDIS_URL": "redis://fixture"})

    assert set(SETTINGS) & set(env) == {"REDIS_URL"}
    assert env["REDIS_URL"] == "redis://fixture"
    assert (env["SB_TEST_UNRELATED"], env["PATH"]) == ("kept", os.environ["PATH"])
    assert env[SKIP_LOCAL_SETTINGS] == "1"
