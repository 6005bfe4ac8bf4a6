"""local/durable/replay.py: one episode at a time, with the SDK's own `handle` and no host, store or clock.

These pin the bookkeeping that must match the SDK's exactly (task ids, retry timers, cancelled timers) and how the
engine reads the SDK's answers (failures behind `$OutOfProcData$`, non-determinism, actions it does not run).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from local.durable import replay
from local.durable.history import EventType, context_json
from local.durable.store import Message

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
switch = {"flip": False}


@app.orchestration_trigger(context_name="context")
def mixed(context: df.DurableOrchestrationContext):
    deadline = context.create_timer(context.current_utc_datetime + timedelta(minutes=5))
    first = yield context.task_any([context.call_activity("a", 1), context.wait_for_external_event("go"), deadline])
    if not deadline.is_completed:
        deadline.cancel()
    last = yield context.call_activity("c", first.result)
    return last


@app.orchestration_trigger(context_name="context")
def stubborn(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=500, max_number_of_attempts=3)
    result = yield context.call_activity_with_retry("fails", options, "x")
    return result


class TimedRetry(df.RetryOptions):
    """RetryOptions with the DTFx fields the Python SDK leaves out of its JSON (the extension reads them)."""

    def __init__(self, **extra: float) -> None:
        super().__init__(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=5)
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), **self.extra}


@app.orchestration_trigger(context_name="context")
def backing_off(context: df.DurableOrchestrationContext):
    from functions.handoff import RETRY  # the handoff's own policy

    result = yield context.call_activity_with_retry("fails", RETRY, "x")
    return result


@app.orchestration_trigger(context_name="context")
def impatient(context: df.DurableOrchestrationContext):
    options = TimedRetry(backoffCoefficient=3, maxRetryIntervalInMilliseconds=5000, retryTimeoutInMilliseconds=10_000)
    result = yield context.call_activity_with_retry("fails", options, "x")
    return result


@app.orchestration_trigger(context_name="context")
def fickle(context: df.DurableOrchestrationContext):
    yield context.call_activity("b" if switch["flip"] else "a", None)
    return "done"


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    result = yield context.call_sub_orchestrator("child", None)
    return result


@app.orchestration_trigger(context_name="context")
def explodes(context: df.DurableOrchestrationContext):
    context.set_custom_status({"step": 1})
    yield context.call_activity("a", None)
    raise RuntimeError("the summary was empty")


handles = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}


class Run:
    """An execution fed one message at a time, keeping what the engine would persist."""

    def __init__(self, name: str, input_value: Any = None) -> None:
        input_json = None if input_value is None else json.dumps(json.dumps(input_value))
        self.execution = replay.Execution("inst-1", name, "exec-1", input_json, [], replay.new_book())
        self.now = T0
        self.steps: list[replay.Step] = []

    def send(self, kind: str, task_id: int | None = None, **payload: Any) -> replay.Step | None:
        message = Message(len(self.steps), "inst-1", "exec-1", kind, task_id, payload, "")
        step = replay.apply(self.execution, message, handles.get(self.execution.name), self.now)
        if step is not None:
            self.execution.history += step.events
            self.execution.book = step.book
            self.steps.append(step)
        return step

    def done(self, task_id: int, value: Any) -> replay.Step | None:
        return self.send("task_completed", task_id, result=json.dumps(value))

    def failed(self, task_id: int, reason: str) -> replay.Step | None:
        return self.send("task_failed", task_id, reason=reason, details="Traceback ...")

    def fired(self, task_id: int) -> replay.Step | None:
        return self.send("timer_fired", task_id)


def test_ids_follow_first_yield_order_and_event_waits_take_none():
    run = Run("mixed")

    first = run.send("start")
    assert [(a.task_id, a.name) for a in first.activities] == [(0, "a")]
    assert [t.task_id for t in first.timers] == [1]
    assert [(e["EventType"], e["EventId"]) for e in first.events[2:4]] == [
        (EventType.TASK_SCHEDULED, 0),
        (EventType.TIMER_CREATED, 1),
    ]

    second = run.send("event_raised", name="go", input=json.dumps("now"))
    assert second.cancelled_timers == [1]  # the orchestrator cancelled its deadline
    assert [(a.task_id, a.name, a.input_json) for a in second.activities] == [(2, "c", '"now"')]

    assert run.fired(1) is None  # a stale timer is dropped, not replayed
    last = run.done(2, "ok")
    assert (last.status, last.output_json) == ("Completed", '"ok"')


def test_a_retry_that_keeps_failing_uses_the_sdks_id_sequence_then_raises():
    run = Run("stubborn")
    run.send("start")

    ids = []
    for attempt in range(3):
        step = run.failed(2 * attempt, f"try {attempt}")
        [timer] = step.timers
        assert timer.fire_at == "2026-03-01T09:00:00.500000Z"  # firstRetryInterval, no backoff in the Python SDK
        step = run.fired(timer.task_id)
        ids.append((2 * attempt, timer.task_id, [a.task_id for a in step.activities]))

    assert ids == [(0, 1, [2]), (2, 3, [4]), (4, 5, [])]  # fail(0) timer(1) fail(2) timer(3) fail(4) timer(5)
    assert step.status == "Failed"
    assert "try 2" in json.loads(step.output_json)


def _fail_every_attempt(run: Run, attempt_id: int) -> tuple[list[float], replay.Step]:
    """Fail each attempt at once and fire its retry timer when due; the retry waits (s) and the last step."""
    waits = []
    while True:
        step = run.failed(attempt_id, f"store unavailable ({attempt_id})")
        if step.status != "Running":
            return waits, step
        [timer] = step.timers
        due = datetime.fromisoformat(timer.fire_at.replace("Z", "+00:00"))
        waits.append((due - run.now).total_seconds())
        run.now = due
        step = run.fired(timer.task_id)
        if step.status != "Running":
            return waits, step
        [attempt] = step.activities
        attempt_id = attempt.task_id


def test_the_handoffs_retries_back_off_and_outlast_a_minute_long_outage():
    """Defect 9: 4 attempts 2 s apart gave up ~6 s into a store outage. The handoff's policy doubles the wait up to
    30 s, and the engine honours backoffCoefficient and maxRetryIntervalInMilliseconds as DTFx does."""
    run = Run("backing_off")
    run.send("start")

    waits, last = _fail_every_attempt(run, 0)

    assert waits == [2, 4, 8, 16, 30, 30, 30, 30, 30, 30, 30, 30]  # 11 retries and DTFx's extra timer
    assert sum(waits[:-1]) == 240, "the last attempt runs 4 minutes after the first"
    assert last.status == "Failed" and "store unavailable (22)" in json.loads(last.output_json)


def test_a_retry_timeout_stops_the_retries_like_dtfx_and_fails_the_orchestration():
    run = Run("impatient")
    run.send("start")

    waits, last = _fail_every_attempt(run, 0)

    assert waits == [1, 3, 5, 5]  # 1 s x 3^n, capped at 5 s; the failure at 14 s is past the 10 s timeout...
    assert last.status == "Failed" and not last.timers  # ...so no retry timer (which the Python SDK would wait on)
    assert "retryTimeoutInMilliseconds 10000 has passed" in json.loads(last.output_json)


def test_an_orchestrator_that_raises_fails_with_its_message_and_custom_status():
    run = Run("explodes")
    run.send("start")

    step = run.done(0, None)

    assert step.status == "Failed"
    assert json.loads(step.output_json) == "Orchestrator function 'explodes' failed: the summary was empty"
    assert json.loads(step.custom_status_json) == {"step": 1}
    assert step.events[-2]["EventType"] == EventType.EXECUTION_COMPLETED


def test_replaying_differently_is_reported_as_non_determinism():
    run = Run("fickle")
    run.send("start")
    switch["flip"] = True
    try:
        step = run.done(0, None)
    finally:
        switch["flip"] = False

    assert step.status == "Failed"
    assert "Non-deterministic workflow detected" in json.loads(step.output_json)


def test_actions_the_engine_does_not_run_fail_clearly():
    step = Run("parent").send("start")

    assert step.status == "Failed"
    assert "does not run sub-orchestrations" in json.loads(step.output_json)


def test_a_missing_orchestrator_fails_the_instance():
    step = Run("renamed_since").send("start")

    assert step.status == "Failed"
    assert "The function 'renamed_since' doesn't exist" in json.loads(step.output_json)


def test_termination_does_not_replay():
    run = Run("mixed")
    run.send("start")

    step = run.send("terminate", reason="bye")

    assert (step.status, step.output_json, step.book["tasks"]) == ("Terminated", '"bye"', {})
    assert step.keep_custom_status


def test_episode_time_never_goes_back():
    run = Run("mixed")
    run.send("start")
    run.now = T0 - timedelta(hours=1)

    step = run.send("event_raised", name="go", input=None)

    assert step.events[0]["Timestamp"] == "2026-03-01T09:00:00.000000Z"


def test_the_context_marks_played_events_and_leaves_out_timer_durations():
    run = Run("sequence-free", {"k": 1})
    history = [
        {"EventType": 12, "EventId": -1, "Timestamp": "t0"},
        {"EventType": 0, "EventId": -1, "Timestamp": "t0", "Version": ""},
        {"EventType": 13, "EventId": -1, "Timestamp": "t0"},
        {"EventType": 12, "EventId": -1, "Timestamp": "t1"},
        {"EventType": 15, "EventId": -1, "Timestamp": "t1", "Name": "go", "Input": None},
    ]

    context = json.loads(context_json(history, "inst-1", json.loads(run.execution.input_json)))

    assert [e["IsPlayed"] for e in context["history"]] == [True, True, True, False, False]
    assert context["input"] == '{"k": 1}'  # a str holding JSON, as a Python client's start leaves it
    assert (context["upperSchemaVersion"], context["upperSchemaVersionNew"]) == (1, 2)
    assert not {"maximumShortTimerDuration", "longRunningTimerIntervalDuration"} & set(context)
