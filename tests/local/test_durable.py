"""local/durable: orchestrations of a tiny inline DFApp, run by a real Host with the Durable extension.

Both sides go through the real SDK: the client functions below are HTTP triggers that use the SDK's
DurableOrchestrationClient (so its calls hit the engine's HTTP API), and the engine drives the orchestrators through
the SDK's `handle`. Time is a ManualClock: `clock.advance(...)` fires timers, `engine.idle()` waits for the work due.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import azure.durable_functions as df
import azure.functions as func
import pytest
import pytest_asyncio

from local.durable import DurableExtension, ManualClock, ScaledClock, read_overridable_states
from local.durable.clock import clock_from_environment
from local.host import Host
from shared.settings import PROJECT_ROOT

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
clock = ManualClock()
attempts: Counter[str] = Counter()
gates: dict[str, asyncio.Event] = {}


# --- client functions: the SDK's DurableOrchestrationClient, called over HTTP -----------------------------------


@app.route(route="orchestrators/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    try:
        instance_id = await client.start_new(
            req.route_params["name"], req.params.get("id"), json.loads(body) if body else None
        )
    except Exception as exc:  # noqa: BLE001 - the SDK raises what the API answered; show it to the test
        return func.HttpResponse(json.dumps({"error": str(exc)}), status_code=409, mimetype="application/json")
    return client.create_check_status_response(req, instance_id)


@app.route(route="events/{instance_id}/{event}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def raise_event(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        await client.raise_event(req.route_params["instance_id"], req.route_params["event"], req.get_json())
    except Exception as exc:  # noqa: BLE001 - the SDK's only signal for 410/404
        return func.HttpResponse(str(exc), status_code=410)
    return func.HttpResponse(status_code=202)


@app.route(route="status/{instance_id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    found = await client.get_status(req.route_params["instance_id"], show_history=bool(req.params.get("history")))
    if not found:
        return func.HttpResponse(status_code=404)
    body = {**found.to_json(), "historyEvents": getattr(found, "historyEvents", None)}
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


@app.route(route="terminate/{instance_id}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def terminate(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    await client.terminate(req.route_params["instance_id"], "customer hung up")
    return func.HttpResponse(status_code=202)


@app.route(route="purge/{instance_id}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def purge(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    result = await client.purge_instance_history(req.route_params["instance_id"])
    return func.HttpResponse(json.dumps({"deleted": result.instances_deleted}), mimetype="application/json")


# --- orchestrators ----------------------------------------------------------------------------------------------


@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext):
    names = context.get_input()
    greetings = []
    for name in names:
        greetings.append((yield context.call_activity("greet", name)))
    return greetings


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    count = context.get_input()["count"]
    sizes = yield context.task_all([context.call_activity("measure", n) for n in range(count)])
    return {"sizes": sizes, "total": sum(sizes)}


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    """The handoff's shape: wait for the customer or a deadline, whichever comes first."""
    context.set_custom_status({"step": "waiting"})
    deadline = context.create_timer(context.current_utc_datetime + timedelta(seconds=60))
    answer = context.wait_for_external_event("approved")
    winner = yield context.task_any([answer, deadline])
    if winner == answer:
        deadline.cancel()
        context.set_custom_status({"step": "approved"})
        return {"outcome": "approved", "by": answer.result}
    context.set_custom_status({"step": "expired"})
    return {"outcome": "expired"}


@app.orchestration_trigger(context_name="context")
def careful(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity("read_meter", "M-1")
    except Exception as exc:  # noqa: BLE001 - the SDK throws a plain Exception for a failed task
        return {"caught": str(exc)}
    return {"caught": None}


@app.orchestration_trigger(context_name="context")
def careless(context: df.DurableOrchestrationContext):
    context.set_custom_status("reading")
    yield context.call_activity("read_meter", "M-2")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def retrying(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=context.get_input())
    try:
        result = yield context.call_activity_with_retry("flaky", options, context.instance_id)
    except Exception as exc:  # noqa: BLE001 - the SDK throws a plain Exception for a failed task
        return {"gave_up": str(exc)}
    return {"result": result}


@app.orchestration_trigger(context_name="context")
def early_bird(context: df.DurableOrchestrationContext):
    yield context.call_activity("wait_at_gate", context.instance_id)
    context.set_custom_status("listening")
    payload = yield context.wait_for_external_event("ping")
    return {"ping": payload}


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    n = context.get_input()
    if n < 3:
        yield context.call_activity("greet", f"round {n}")
        context.continue_as_new(n + 1)
        return None
    return {"rounds": n}


@app.activity_trigger(input_name="name")
def greet(name: str) -> str:
    return f"hello {name}"


@app.activity_trigger(input_name="n")
async def measure(n: int) -> int:
    await asyncio.sleep(0.01 * (5 - n))  # finish out of order; the results still come back in task order
    return n * n


@app.activity_trigger(input_name="meter")
def read_meter(meter: str) -> int:
    raise ValueError(f"meter {meter} is offline")


@app.activity_trigger(input_name="key")
def flaky(key: str) -> str:
    attempts[key] += 1
    if attempts[key] < 2:
        raise ConnectionError(f"attempt {attempts[key]} failed")
    return f"worked on attempt {attempts[key]}"


@app.activity_trigger(input_name="key")
async def wait_at_gate(key: str) -> None:
    await gates.setdefault(key, asyncio.Event()).wait()


# --- fixtures and helpers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def durable(tmp_path_factory: pytest.TempPathFactory) -> DurableExtension:
    return DurableExtension(tmp_path_factory.mktemp("durable") / "durable.sqlite3", task_hub="TestHub", clock=clock)


@pytest_asyncio.fixture(scope="module")
async def host(durable: DurableExtension) -> AsyncIterator[Host]:
    served = Host(app, extensions=[durable])
    await served.start(port=0)
    yield served
    await served.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Driver:
    """Starts orchestrations and reads them back through the client functions above."""

    def __init__(self, host: Host, durable: DurableExtension, http: aiohttp.ClientSession) -> None:
        self.host, self.durable, self.http = host, durable, http

    async def start(self, name: str, value: Any = None, instance_id: str | None = None, settle: bool = True) -> str:
        query = f"?id={instance_id}" if instance_id else ""
        response = await self.http.post(f"{self.host.url}/api/orchestrators/{name}{query}", json=value)
        body = await response.json()
        assert response.status == 202, body
        if settle:
            await self.settle()
        return body["id"]

    async def raise_event(self, instance_id: str, event: str, value: Any, settle: bool = True) -> int:
        response = await self.http.post(f"{self.host.url}/api/events/{instance_id}/{event}", json=value)
        if settle:
            await self.settle()
        return response.status

    async def status(self, instance_id: str, history: bool = False) -> dict[str, Any]:
        response = await self.http.get(f"{self.host.url}/api/status/{instance_id}{'?history=1' if history else ''}")
        assert response.status == 200, await response.text()
        return await response.json()

    async def settle(self) -> None:
        await self.durable.engine.idle()

    async def advance(self, seconds: float) -> None:
        clock.advance(seconds=seconds)
        await self.settle()


@pytest_asyncio.fixture
async def driver(host: Host, durable: DurableExtension, http: aiohttp.ClientSession) -> Driver:
    return Driver(host, durable, http)


def event_types(status: dict[str, Any]) -> list[str]:
    return [event["EventType"] for event in status["historyEvents"]]


# --- orchestration patterns --------------------------------------------------------------------------------------


async def test_a_sequence_of_activities_returns_their_outputs(driver: Driver):
    instance_id = await driver.start("sequence", ["Ada", "Grace", "Linus"])

    status = await driver.status(instance_id, history=True)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == ["hello Ada", "hello Grace", "hello Linus"]
    assert event_types(status) == [
        "ExecutionStarted",
        *["TaskScheduled", "TaskCompleted"] * 3,
        "ExecutionCompleted",
    ]


async def test_fan_out_and_fan_in(driver: Driver):
    instance_id = await driver.start("fan_out", {"count": 5})

    status = await driver.status(instance_id)
    assert status["output"] == {"sizes": [0, 1, 4, 9, 16], "total": 30}


async def test_an_event_before_the_deadline_wins_the_race(driver: Driver):
    instance_id = await driver.start("approval")
    assert (await driver.status(instance_id))["runtimeStatus"] == "Running"

    assert await driver.raise_event(instance_id, "approved", {"agent": "Sam"}) == 202

    status = await driver.status(instance_id, history=True)
    assert status["runtimeStatus"] == "Completed"
    # The SDK's client double-encodes event data and the extension keeps it as sent, so the orchestrator gets the
    # JSON text (docs/protocols.md, "Durable HTTP API"): the same string on Azure.
    assert status["output"] == {"outcome": "approved", "by": '{"agent": "Sam"}'}
    assert "TimerFired" not in event_types(status)
    await driver.advance(120)  # the cancelled deadline never fires
    assert "TimerFired" not in event_types(await driver.status(instance_id, history=True))


async def test_the_deadline_wins_when_no_event_comes(driver: Driver):
    instance_id = await driver.start("approval")

    await driver.advance(59)
    assert (await driver.status(instance_id))["runtimeStatus"] == "Running"
    await driver.advance(2)

    status = await driver.status(instance_id, history=True)
    assert (status["runtimeStatus"], status["output"]) == ("Completed", {"outcome": "expired"})
    assert status["customStatus"] == {"step": "expired"}
    assert "TimerFired" in event_types(status)
    assert await driver.raise_event(instance_id, "approved", {"agent": "late"}) == 410  # gone: it has ended


async def test_custom_status_is_visible_to_the_client_while_it_runs(driver: Driver):
    instance_id = await driver.start("approval")

    assert (await driver.status(instance_id))["customStatus"] == {"step": "waiting"}
    await driver.raise_event(instance_id, "approved", "Sam")
    assert (await driver.status(instance_id))["customStatus"] == {"step": "approved"}


async def test_an_activity_failure_is_thrown_into_the_orchestrator(driver: Driver):
    instance_id = await driver.start("careful")

    status = await driver.status(instance_id)
    assert status["runtimeStatus"] == "Completed"
    assert "ValueError: meter M-1 is offline" in status["output"]["caught"]


async def test_an_uncaught_failure_fails_the_orchestration(driver: Driver):
    instance_id = await driver.start("careless")

    status = await driver.status(instance_id, history=True)
    assert status["runtimeStatus"] == "Failed"
    assert "meter M-2 is offline" in status["output"]
    assert status["customStatus"] == "reading"
    assert event_types(status)[-2:] == ["TaskFailed", "ExecutionCompleted"]


async def test_call_activity_with_retry_succeeds_on_the_second_attempt(driver: Driver):
    instance_id = await driver.start("retrying", 3)
    assert attempts[instance_id] == 1
    assert (await driver.status(instance_id))["runtimeStatus"] == "Running"  # waiting on the retry timer

    await driver.advance(1)

    status = await driver.status(instance_id, history=True)
    assert status["output"] == {"result": "worked on attempt 2"}
    assert attempts[instance_id] == 2
    retry = [
        (e["EventType"], e.get("EventId", e.get("TaskScheduledId", e.get("TimerId")))) for e in status["historyEvents"]
    ]
    assert retry[1:-1] == [
        ("TaskScheduled", 0),
        ("TaskFailed", 0),
        ("TimerCreated", 1),  # the SDK's internal retry timer takes the next id...
        ("TimerFired", 1),
        ("TaskScheduled", 2),  # ...and the second attempt the one after
        ("TaskCompleted", 2),
    ]


async def test_retries_give_up_after_max_attempts(driver: Driver):
    instance_id = await driver.start("retrying", 1)

    await driver.advance(1)  # DTFx waits one retry interval even after the last attempt

    status = await driver.status(instance_id)
    assert "attempt 1 failed" in status["output"]["gave_up"]
    assert attempts[instance_id] == 1


async def test_an_event_raised_before_the_orchestrator_waits_is_kept_for_it(driver: Driver):
    instance_id = await driver.start("early_bird", settle=False)
    while instance_id not in gates:  # the activity is running and will not return until the gate opens
        await asyncio.sleep(0.01)

    assert await driver.raise_event(instance_id, "ping", 42, settle=False) == 202
    while "EventRaised" not in event_types(await driver.status(instance_id, history=True)):
        await asyncio.sleep(0.01)  # the event is in history now, while the orchestrator is not waiting for it
    assert (await driver.status(instance_id))["customStatus"] is None
    gates[instance_id].set()
    await driver.settle()

    status = await driver.status(instance_id)
    assert (status["runtimeStatus"], status["output"]) == ("Completed", {"ping": "42"})


async def test_continue_as_new_restarts_with_a_fresh_history(driver: Driver):
    instance_id = await driver.start("counter", 0)

    status = await driver.status(instance_id, history=True)
    assert (status["runtimeStatus"], status["output"]) == ("Completed", {"rounds": 3})
    assert event_types(status) == ["ExecutionStarted", "ExecutionCompleted"]  # the last execution only


# --- the client API --------------------------------------------------------------------------------------------


async def test_terminate_ends_a_running_instance(driver: Driver, host: Host, http: aiohttp.ClientSession):
    instance_id = await driver.start("approval")

    await http.post(f"{host.url}/api/terminate/{instance_id}")
    await driver.settle()

    status = await driver.status(instance_id)
    assert (status["runtimeStatus"], status["output"]) == ("Terminated", "customer hung up")
    assert status["customStatus"] == {"step": "waiting"}
    rpc = await http.post(f"{host.url}/durabletask/instances/{instance_id}/terminate?reason=again")
    assert rpc.status == 410


async def test_starting_an_id_that_is_running_fails_and_one_that_ended_is_replaced(driver: Driver, host: Host, http):
    await driver.start("approval", instance_id="handoff-7")

    again = await http.post(f"{host.url}/api/orchestrators/approval?id=handoff-7")
    assert again.status == 409
    assert "already exists" in (await again.json())["error"]

    await driver.raise_event("handoff-7", "approved", "Sam")
    await driver.start("sequence", ["Kim"], instance_id="handoff-7")
    status = await driver.status("handoff-7")
    assert (status["name"], status["output"]) == ("sequence", ["hello Kim"])


async def test_an_unknown_orchestrator_or_bad_id_is_refused(driver: Driver, host: Host, http):
    unknown = await http.post(f"{host.url}/api/orchestrators/nope")
    bad_id = await http.post(f"{host.url}/api/orchestrators/sequence?id=@entity")

    assert "The function 'nope' doesn't exist" in (await unknown.json())["error"]
    assert "must not start with @" in (await bad_id.json())["error"]


async def test_status_of_an_unknown_instance_is_empty(driver: Driver, host: Host, http):
    assert (await http.get(f"{host.url}/api/status/nobody")).status == 404
    assert (await http.get(f"{host.url}/durabletask/instances/nobody")).status == 404


async def test_the_check_status_links_work(driver: Driver, host: Host, http: aiohttp.ClientSession):
    started = await http.post(f"{host.url}/api/orchestrators/approval")
    links = await started.json()
    await driver.settle()

    running = await http.get(started.headers["Location"])
    assert running.status == 202
    assert (await running.json())["runtimeStatus"] == "Running"
    # A plain JSON body (not the SDK client's double encoding) reaches the orchestrator decoded.
    sent = await http.post(links["sendEventPostUri"].replace("{eventName}", "approved"), json={"agent": "Ana"})
    assert sent.status == 202
    await driver.settle()
    done = await http.get(links["statusQueryGetUri"])
    assert done.status == 200
    assert (await done.json())["output"] == {"outcome": "approved", "by": {"agent": "Ana"}}

    purged = await http.delete(links["purgeHistoryDeleteUri"])
    assert await purged.json() == {"instancesDeleted": 1}
    assert (await http.get(links["statusQueryGetUri"])).status == 404


async def test_instances_can_be_listed_by_status_and_prefix_and_purged(driver: Driver, host: Host, http):
    await driver.start("sequence", ["a"], instance_id="list-1")
    await driver.start("approval", instance_id="list-2")

    listed = await http.get(f"{host.url}/durabletask/instances/?runtimeStatus=Running,Pending&instanceIdPrefix=list-")
    assert [item["instanceId"] for item in await listed.json()] == ["list-2"]
    everything = await http.get(f"{host.url}/durabletask/instances/?instanceIdPrefix=list-&showInput=false")
    assert [(i["instanceId"], i["input"]) for i in await everything.json()] == [("list-1", None), ("list-2", None)]

    purged = await http.post(f"{host.url}/api/purge/list-1")
    assert await purged.json() == {"deleted": 1}
    assert await (await http.post(f"{host.url}/api/purge/list-1")).json() == {"deleted": 0}  # a 404: the SDK says 0


async def test_the_client_binding_points_back_at_the_host(durable: DurableExtension, host: Host):
    binding = json.loads(await durable._client_binding(None, None))  # type: ignore[arg-type]

    assert binding["rpcBaseUrl"] == f"{host.url}/durabletask/"
    assert binding["taskHubName"] == "TestHub"
    assert binding["managementUrls"]["id"] == "INSTANCEID"
    assert binding["managementUrls"]["statusQueryGetUri"].startswith(
        f"{host.url}/runtime/webhooks/durabletask/instances/INSTANCEID?taskHub=TestHub"
    )


# --- overridableExistingInstanceStates -------------------------------------------------------------------------


async def test_the_project_asks_the_extension_to_refuse_starting_a_running_id_again():
    """Defect 8: host.json sets it explicitly (the extension's default has not always been this one)."""
    assert read_overridable_states(PROJECT_ROOT) == "NonRunningStates"
    config = json.loads((PROJECT_ROOT / "host.json").read_text())
    assert config["extensions"]["durableTask"]["overridableExistingInstanceStates"] == "NonRunningStates"


def test_an_unknown_overridable_states_value_fails_the_start(tmp_path):
    (tmp_path / "host.json").write_text(json.dumps(
        {"extensions": {"durableTask": {"overridableExistingInstanceStates": "OnlyIfNotRunning"}}}))
    with pytest.raises(ValueError, match="must be one of AnyState, NonRunningStates"):
        read_overridable_states(tmp_path)
    (tmp_path / "host.json").write_text(json.dumps({"extensions": {"durableTask": {}}}))
    assert read_overridable_states(tmp_path) == "NonRunningStates"  # the extension's default


async def test_many_concurrent_starts_of_one_id_run_one_orchestration(driver: Driver, host: Host, http):
    """Under NonRunningStates, of 20 starts at once exactly one is accepted; the rest are refused, not restarts."""
    answers = await asyncio.gather(*(http.post(f"{host.url}/api/orchestrators/approval?id=handoff-race")
                                     for _ in range(20)))
    await driver.settle()

    assert sorted(a.status for a in answers) == [202] + [409] * 19
    status = await driver.status("handoff-race", history=True)
    assert event_types(status).count("ExecutionStarted") == 1 and status["runtimeStatus"] == "Running"


async def test_any_state_lets_a_start_replace_a_running_instance(driver: Driver, durable: DurableExtension, host, http):
    """The other setting, for completeness: the running instance is silently replaced by a fresh execution."""
    await driver.start("approval", instance_id="again")
    before = await durable.engine.status("again")
    durable.engine.overridable = "AnyState"  # as `DurableExtension(..., overridable="AnyState")` would set it
    try:
        second = await http.post(f"{host.url}/api/orchestrators/approval?id=again")
        await driver.settle()
    finally:
        durable.engine.overridable = "NonRunningStates"
    after = await durable.engine.status("again")

    assert second.status == 202
    assert before.is_running and after.is_running and after.execution_id != before.execution_id


# --- LOCAL_DURABLE_TIME_SCALE ------------------------------------------------------------------------------------


async def test_a_scaled_clock_fires_timers_that_many_times_sooner(monkeypatch):
    monkeypatch.setenv("LOCAL_DURABLE_TIME_SCALE", "100")
    scaled = clock_from_environment()
    assert isinstance(scaled, ScaledClock)
    started = time.monotonic()
    await scaled.wait(asyncio.Event(), scaled.now() + timedelta(seconds=20))  # a 20 s timer, 0.2 s of wall time
    assert 0.15 < time.monotonic() - started < 2.0


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf", "fast"])
def test_a_bad_time_scale_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("LOCAL_DURABLE_TIME_SCALE", value)
    with pytest.raises(ValueError, match="LOCAL_DURABLE_TIME_SCALE"):
        clock_from_environment()
