"""One replay episode: apply a message to an execution, run the SDK's orchestrator, and work out what it asked for.

Pure and synchronous (no I/O, no clock of its own), so the engine runs it inside a store transaction on a worker
thread and tests can drive it with the SDK's `handle` directly.

The subtle part is task ids. The SDK numbers tasks itself, from 0, in the order they are first yielded, and matches
completions to tasks by those numbers; it never tells the host which number it gave. So the engine hands out the same
numbers in the same order (docs/protocols.md, "Task ids"): every new atomic action in the reply (the one action list,
flattened depth-first through WhenAny/WhenAll) takes the next id, except external-event waits; and a with-retry failure
takes an id for its internal retry timer at the moment the TaskFailed goes into history, and that timer's firing takes
one for the rescheduled attempt, because that is when the SDK takes them while replaying. One completion per episode
keeps that order trivially identical on both sides.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from local.durable import history as h
from local.durable.clock import format_time, parse_time
from local.durable.store import Message

# The SDK warns "Potential duplicate Task completion" whenever an event arrives before its wait. Here that is the
# normal buffering DTFx does (the SDK defers the event until the wait appears), not a problem worth a warning.
warnings.filterwarnings("ignore", message="Potential duplicate Task completion")

#: `handle(context_json) -> state_json`, what `Function.get_user_function()` returns for an orchestrator.
Orchestrator = Callable[[str], str]

OUT_OF_PROC_MARKER = "$OutOfProcData$:"


class ActionType:
    """`ActionType` of the SDK (models/actions/ActionType.py)."""

    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    WHEN_ANY = 11
    WHEN_ALL = 12


UNSUPPORTED = {
    ActionType.CALL_SUB_ORCHESTRATOR: "sub-orchestrations (call_sub_orchestrator)",
    ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY: "sub-orchestrations (call_sub_orchestrator_with_retry)",
    ActionType.CALL_ENTITY: "entities (call_entity)",
    ActionType.SIGNAL_ENTITY: "entities (signal_entity)",
    ActionType.CALL_HTTP: "durable HTTP calls (call_http)",
}


@dataclass
class Execution:
    """One execution of an instance, as the replay needs it. `book` is the engine's JSON bookkeeping:

    `next_id` (the next task id), `actions` (one entry per atomic action already seen, in order: its type, id and
    name, to spot new ones and non-determinism) and `tasks` (open activities and timers by id, as strings).
    """

    instance_id: str
    name: str
    execution_id: str
    input_json: str | None
    history: list[h.Event]
    book: dict[str, Any]


@dataclass(frozen=True)
class ActivityCall:
    task_id: int
    name: str
    input_json: str | None


@dataclass(frozen=True)
class TimerCall:
    task_id: int
    fire_at: str


@dataclass
class Step:
    """What applying one message did; the engine persists it in the same transaction."""

    events: list[h.Event]
    book: dict[str, Any]
    status: str  # Running, Completed, Failed, ContinuedAsNew, Terminated
    output_json: str | None = None
    custom_status_json: str | None = None
    activities: list[ActivityCall] = field(default_factory=list)
    timers: list[TimerCall] = field(default_factory=list)
    cancelled_timers: list[int] = field(default_factory=list)
    continue_input_json: str | None = None  # the next execution's input, for ContinuedAsNew
    keep_custom_status: bool = False  # a termination does not replay, so it leaves the custom status as it was

    @property
    def ended(self) -> bool:
        return self.status != "Running"


def new_book() -> dict[str, Any]:
    return {"next_id": 0, "actions": [], "tasks": {}}


def apply(execution: Execution, message: Message, orchestrator: Orchestrator | None, now: datetime) -> Step | None:
    """Apply `message` to a running execution. None: the message is stale (a task no longer open) and is dropped."""
    book = copy.deepcopy(execution.book)
    stamp = _episode_time(execution.history, now)
    started = h.orchestrator_started(stamp)

    if message.kind == "terminate":
        reason = json.dumps(message.payload.get("reason"))
        events = [
            started,
            h.execution_terminated(stamp, reason),
            h.execution_completed(stamp, "Terminated", reason),
            h.orchestrator_completed(stamp),
        ]
        book["tasks"] = {}
        return Step(events, book, "Terminated", output_json=reason, keep_custom_status=True)

    decisions: list[h.Event] = []  # what DTFx records after the new events: TaskScheduled, TimerCreated, ...
    step = Step([], book, "Running")
    if message.kind == "start":
        new = h.execution_started(
            stamp, execution.name, execution.instance_id, execution.execution_id, execution.input_json
        )
    elif message.kind == "event_raised":
        new = h.event_raised(stamp, message.payload["name"], message.payload.get("input"))
    else:
        task = book["tasks"].pop(str(message.task_id), None)
        if task is None:
            return None
        new = _completion(message, task, stamp, now, book, step, decisions)
        if (expired := _retry_timeout_passed(message, task, stamp)) is not None:
            return _fail(step, [started, new], stamp, f"Orchestrator function '{execution.name}' failed: {expired}")

    if orchestrator is None:
        missing = f"The function '{execution.name}' doesn't exist, is disabled, or is not an orchestrator function."
        return _fail(step, [started, new, *decisions], stamp, missing)

    replayed = [*execution.history, started, new]
    state, error = _run(orchestrator, execution, replayed)
    step.custom_status_json = _dump(state.get("customStatus"))
    problem = _diff(state.get("actions") or [], book, step, decisions, stamp)
    error = error or problem
    if error is not None:
        # The extension's wording, so the status output reads the same as on Azure.
        return _fail(
            step, [started, new, *decisions], stamp, f"Orchestrator function '{execution.name}' failed: {error}"
        )

    if state.get("isDone"):
        book["tasks"] = {}
        if step.continue_input_json is not None:
            step.status = "ContinuedAsNew"
            decisions.append(h.execution_completed(stamp, "ContinuedAsNew", None))
        else:
            step.status = "Completed"
            step.output_json = _dump(state.get("output"))
            decisions.append(h.execution_completed(stamp, "Completed", step.output_json))
        step.activities, step.timers = [], []
    step.events = [started, new, *decisions, h.orchestrator_completed(stamp)]
    return step


def _completion(
    message: Message,
    task: dict[str, Any],
    stamp: str,
    now: datetime,
    book: dict[str, Any],
    step: Step,
    decisions: list[h.Event],
) -> h.Event:
    """The history event for a finished task, plus the retry bookkeeping the SDK does when it reads it."""
    task_id = message.task_id
    assert task_id is not None
    if message.kind == "task_completed":
        return h.task_completed(stamp, task_id, message.payload.get("result"))
    if message.kind == "task_failed":
        if task.get("retry") and _retry_timeout_passed(message, task, stamp) is None:
            # The SDK gives its internal retry timer the next id as it reads this TaskFailed.
            timer_id = _take_id(book)
            fire_at = format_time(now + _retry_delay(task))
            book["tasks"][str(timer_id)] = {"kind": "retry_timer", "fire_at": fire_at, "activity": task}
            decisions.append(h.timer_created(stamp, timer_id, fire_at))
            step.timers.append(TimerCall(timer_id, fire_at))
        return h.task_failed(stamp, task_id, message.payload.get("reason", ""), message.payload.get("details", ""))
    if message.kind == "timer_fired":
        activity = task.get("activity")
        if task["kind"] == "retry_timer" and activity["attempt"] < activity["retry"]["maxNumberOfAttempts"]:
            # ...and the rescheduled attempt the next one as it reads the timer firing. After the last attempt's
            # timer the SDK raises the last error instead (the "extra timer" of DTFx retries).
            attempt_id = _take_id(book)
            again = {**activity, "attempt": activity["attempt"] + 1}
            book["tasks"][str(attempt_id)] = again
            decisions.append(h.task_scheduled(stamp, attempt_id, again["name"], again["input"]))
            step.activities.append(ActivityCall(attempt_id, again["name"], again["input"]))
        return h.timer_fired(stamp, task_id, task["fire_at"])
    raise ValueError(f"unknown message kind {message.kind!r}")


def _run(
    orchestrator: Orchestrator, execution: Execution, replayed: list[h.Event]
) -> tuple[dict[str, Any], str | None]:
    """Call `handle`; (OrchestratorState, None) or, when the orchestrator raised, (its last state, the error)."""
    input_value = json.loads(execution.input_json) if execution.input_json is not None else None
    context = h.context_json(replayed, execution.instance_id, input_value)
    try:
        return json.loads(orchestrator(context)), None
    except Exception as exc:  # noqa: BLE001 - the SDK reports a failed orchestrator by raising, state after a marker
        text = str(exc)
        head, marker, data = text.partition(OUT_OF_PROC_MARKER)
        if marker:
            state = json.loads(data)
            return state, state.get("error") or head.strip()
        return {}, f"{type(exc).__name__}: {text}"


def _diff(
    actions: list[list[dict[str, Any]]], book: dict[str, Any], step: Step, decisions: list[h.Event], stamp: str
) -> str | None:
    """Record the reply's new actions (ids, TaskScheduled/TimerCreated, work); notice cancelled timers.

    Returns an error when the orchestrator asked for something this engine cannot do, or replayed differently.
    """
    known: list[dict[str, Any]] = book["actions"]
    for index, action in enumerate(_flatten(actions)):
        kind = action["actionType"]
        name = action.get("functionName") or action.get("externalEventName")
        if index < len(known):
            seen = known[index]
            if (seen["type"], seen.get("name")) != (kind, name):
                before, now = _describe(seen["type"], seen.get("name")), _describe(kind, name)
                return (
                    f"Non-deterministic workflow detected: action {index} was {before} and is now {now};"
                    " orchestrators must replay the same way every time"
                )
            if (
                kind == ActionType.CREATE_TIMER
                and action.get("isCanceled")
                and book["tasks"].pop(str(seen["id"]), None)
            ):
                step.cancelled_timers.append(seen["id"])
            continue

        if kind in UNSUPPORTED:
            return f"the local Durable engine does not run {UNSUPPORTED[kind]}"
        task_id = None if kind == ActionType.WAIT_FOR_EXTERNAL_EVENT else _take_id(book)
        known.append({"type": kind, "id": task_id, "name": name})
        if kind in (ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY):
            assert task_id is not None
            retry = action.get("retryOptions") if kind == ActionType.CALL_ACTIVITY_WITH_RETRY else None
            book["tasks"][str(task_id)] = {
                "kind": "activity",
                "name": name,
                "input": action.get("input"),
                "retry": retry,
                "attempt": 1,
                "first_at": stamp,  # DTFx measures a retry timeout from the first attempt's episode
            }
            decisions.append(h.task_scheduled(stamp, task_id, name, action.get("input")))
            step.activities.append(ActivityCall(task_id, name, action.get("input")))
        elif kind == ActionType.CREATE_TIMER:
            assert task_id is not None
            fire_at = format_time(parse_time(action["fireAt"]))
            decisions.append(h.timer_created(stamp, task_id, fire_at))
            if not action.get("isCanceled"):
                book["tasks"][str(task_id)] = {"kind": "timer", "fire_at": fire_at}
                step.timers.append(TimerCall(task_id, fire_at))
        elif kind == ActionType.CONTINUE_AS_NEW:
            step.continue_input_json = json.dumps(action.get("input"))
    return None


def _flatten(actions: list[list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """Atomic actions in order, depth-first through WhenAny/WhenAll (schema V2+ has one list; V1 one per yield)."""

    def walk(action: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if action.get("actionType") in (ActionType.WHEN_ANY, ActionType.WHEN_ALL):
            for child in action.get("compoundActions") or []:
                yield from walk(child)
        else:
            yield action

    for group in actions:
        for action in group:
            yield from walk(action)


def _fail(step: Step, events: list[h.Event], stamp: str, error: str) -> Step:
    step.status = "Failed"
    step.output_json = json.dumps(error)
    step.book["tasks"] = {}
    step.activities, step.timers = [], []
    step.events = [*events, h.execution_completed(stamp, "Failed", step.output_json), h.orchestrator_completed(stamp)]
    return step


def _take_id(book: dict[str, Any]) -> int:
    task_id = book["next_id"]
    book["next_id"] = task_id + 1
    return task_id


#: The extension's MaxRetryInterval when retryOptions name none (its RetryOptions constructor sets 6 days).
DEFAULT_MAX_RETRY_INTERVAL_MS = 6 * 24 * 3600 * 1000


def _retry_delay(task: dict[str, Any]) -> timedelta:
    """DTFx's RetryInterceptor: first interval x backoffCoefficient^(attempt-1), capped at maxRetryInterval.

    The extension reads all five fields of `retryOptions` (its RetryOptionsConverter); the Python SDK's RetryOptions
    sends only the first interval and the attempts, so a coefficient or cap comes from an orchestrator that adds them
    to the JSON (functions/handoff.py does).
    """
    retry = task["retry"]
    delay = retry["firstRetryIntervalInMilliseconds"] * retry.get("backoffCoefficient", 1) ** (task["attempt"] - 1)
    cap = retry.get("maxRetryIntervalInMilliseconds") or DEFAULT_MAX_RETRY_INTERVAL_MS
    return timedelta(milliseconds=min(delay, cap))


def _retry_timeout_passed(message: Message, task: dict[str, Any], stamp: str) -> str | None:
    """Why retrying stops here, if a failed attempt comes after the task's retryTimeoutInMilliseconds; else None.

    DTFx then schedules no retry timer and throws the last error. The Python SDK cannot follow: it counts attempts
    itself and waits for a timer after every failure, so on Azure such an orchestration would wait forever. Failing
    it with the activity's error is what the author meant, and says plainly why.
    """
    timeout = (task.get("retry") or {}).get("retryTimeoutInMilliseconds")
    if message.kind != "task_failed" or timeout is None or "first_at" not in task:
        return None
    if parse_time(stamp) < parse_time(task["first_at"]) + timedelta(milliseconds=timeout):
        return None
    return (
        f"{message.payload.get('reason', '')} (no retry: retryTimeoutInMilliseconds {timeout} has passed; with the "
        "Python SDK on Azure this orchestration would wait forever for a retry timer)"
    )


def _episode_time(past: list[h.Event], now: datetime) -> str:
    """`now`, but never before the previous episode: current_utc_datetime must not go backwards."""
    stamp = format_time(now)
    previous = [e["Timestamp"] for e in past if e["EventType"] == h.EventType.ORCHESTRATOR_STARTED]
    return max([stamp, *previous[-1:]])


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _describe(kind: int, name: str | None) -> str:
    names = {v: k.lower() for k, v in vars(ActionType).items() if isinstance(v, int)}
    label = names.get(kind, f"action type {kind}")
    return f"{label} {name!r}" if name else label
