"""local/durable survives a killed host: `python -m local` is SIGKILLed mid-orchestration and started again.

The app below is what that process hosts (`--app tests.local.test_durable_restart:app`). Its activity appends to a
journal file, so the test can count side effects across both processes: every orchestration completes exactly once,
and only the activity that was running when the process died runs twice (activities are at-least-once by contract).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from tests.peers.local_host import LocalHost

JOURNAL = "DURABLE_TEST_JOURNAL"  # not a Switchboard setting, so the test host inherits it
app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="orchestrators/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = await client.start_new(req.route_params["name"], req.params.get("id"), req.get_json())
    return client.create_check_status_response(req, instance_id)


@app.route(route="events/{instance_id}/{event}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def raise_event(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    await client.raise_event(req.route_params["instance_id"], req.route_params["event"], req.get_json())
    return func.HttpResponse(status_code=202)


@app.route(route="status/{instance_id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    found = await client.get_status(req.route_params["instance_id"])
    return func.HttpResponse(json.dumps(found.to_json()), mimetype="application/json")


@app.orchestration_trigger(context_name="context")
def invite_and_wait(context: df.DurableOrchestrationContext):
    """The handoff's shape: invite, then wait for the customer or a deadline."""
    key = context.instance_id
    yield context.call_activity("journal", f"{key}:invite")
    context.set_custom_status("waiting")
    deadline = context.create_timer(context.current_utc_datetime + timedelta(seconds=context.get_input()["timeout"]))
    engaged = context.wait_for_external_event("engaged")
    winner = yield context.task_any([engaged, deadline])
    outcome = "engaged" if winner == engaged else "expired"
    if not deadline.is_completed:
        deadline.cancel()
    yield context.call_activity("journal", f"{key}:{outcome}")
    return outcome


@app.orchestration_trigger(context_name="context")
def slow_step(context: df.DurableOrchestrationContext):
    yield context.call_activity("journal", f"{context.instance_id}:slow")
    return "done"


@app.activity_trigger(input_name="line")
def journal(line: str) -> None:
    path = Path(os.environ[JOURNAL])
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")
    if line.endswith(":slow") and path.with_suffix(".slow").exists():
        time.sleep(120)  # still running when the host is killed


# --- the test -----------------------------------------------------------------------------------------------------


def call(host: LocalHost, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{host.url}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return json.loads(text) if text else None


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def status_of(host: LocalHost, instance_id: str) -> dict[str, Any]:
    return call(host, "GET", f"/api/status/{instance_id}")


def test_orchestrations_survive_a_sigkill_and_complete_exactly_once(local_host_factory, tmp_path: Path):
    journal_path = tmp_path / "journal.txt"
    journal_path.with_suffix(".slow").touch()
    env = {"SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), JOURNAL: str(journal_path)}

    def lines() -> Counter[str]:
        return Counter(journal_path.read_text(encoding="utf-8").split()) if journal_path.exists() else Counter()

    first = local_host_factory("--app", "tests.local.test_durable_restart:app", **env)
    call(first, "POST", "/api/orchestrators/invite_and_wait?id=waits-for-event", {"timeout": 600})
    call(first, "POST", "/api/orchestrators/invite_and_wait?id=times-out", {"timeout": 4})
    call(first, "POST", "/api/orchestrators/slow_step?id=mid-activity", {})
    started = time.monotonic()
    wait_for(lambda: status_of(first, "waits-for-event")["customStatus"] == "waiting", "the first to wait")
    wait_for(lambda: status_of(first, "times-out")["customStatus"] == "waiting", "the second to wait")
    wait_for(lambda: lines()["mid-activity:slow"] == 1, "the slow activity to start")
    assert status_of(first, "times-out")["runtimeStatus"] == "Running"  # its deadline is still ahead

    first.process.kill()  # SIGKILL: no shutdown, no cleanup
    first.process.wait()
    first.stop()
    journal_path.with_suffix(".slow").unlink()
    time.sleep(max(0.0, 4.5 - (time.monotonic() - started)))  # the deadline passes while nothing runs

    second = local_host_factory("--app", "tests.local.test_durable_restart:app", **env)
    call(second, "POST", "/api/events/waits-for-event/engaged", {"channel": "whatsapp"})

    expected = {"waits-for-event": "engaged", "times-out": "expired", "mid-activity": "done"}
    wait_for(
        lambda: all(status_of(second, i)["runtimeStatus"] == "Completed" for i in expected), "all three to complete"
    )
    assert {i: status_of(second, i)["output"] for i in expected} == expected
    assert lines() == {
        "waits-for-event:invite": 1,
        "waits-for-event:engaged": 1,
        "times-out:invite": 1,
        "times-out:expired": 1,
        "mid-activity:slow": 2,  # killed while it ran, so it ran again: activities are at-least-once
    }
    assert second.stop() == 0


def test_a_completed_orchestration_stays_completed_after_a_restart(local_host_factory, tmp_path: Path):
    env = {"SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), JOURNAL: str(tmp_path / "journal.txt")}
    first = local_host_factory("--app", "tests.local.test_durable_restart:app", **env)
    call(first, "POST", "/api/orchestrators/slow_step?id=quick", {})
    wait_for(lambda: status_of(first, "quick")["runtimeStatus"] == "Completed", "the orchestration to complete")
    assert first.stop() == 0  # a clean SIGTERM this time

    second = local_host_factory("--app", "tests.local.test_durable_restart:app", **env)

    assert status_of(second, "quick")["output"] == "done"
    assert (tmp_path / "journal.txt").read_text(encoding="utf-8").split() == ["quick:slow"]
    try:
        call(second, "POST", "/durabletask/instances/quick/raiseEvent/late", "x")
    except urllib.error.HTTPError as exc:
        assert exc.code == 410
    else:
        raise AssertionError("raising an event on a completed instance should be 410 Gone")
