"""DTFx history events as the Python SDK reads them (docs/protocols.md, "Orchestration context and history"), and the
orchestration context JSON.

Events are plain dicts in the PascalCase shape the Durable extension serializes. `EventId` is the task id for
TaskScheduled/TimerCreated and -1 elsewhere; payload fields (`Input`, `Result`) hold JSON text, as in DTFx.
`IsPlayed` is not stored: `context_json` derives it (true before the last OrchestratorStarted), like the extension.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

Event = dict[str, Any]


class EventType(IntEnum):
    """`HistoryEventType` of the SDK (the values the extension sends)."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16
    GENERIC_EVENT = 17
    HISTORY_STATE = 18
    EXECUTION_SUSPENDED = 19
    EXECUTION_RESUMED = 20


def _event(kind: EventType, timestamp: str, event_id: int = -1, **fields: Any) -> Event:
    return {"EventType": int(kind), "EventId": event_id, "Timestamp": timestamp, **fields}


def orchestrator_started(timestamp: str) -> Event:
    """Opens an episode; its timestamp becomes `context.current_utc_datetime`."""
    return _event(EventType.ORCHESTRATOR_STARTED, timestamp)


def orchestrator_completed(timestamp: str) -> Event:
    return _event(EventType.ORCHESTRATOR_COMPLETED, timestamp)


def execution_started(timestamp: str, name: str, instance_id: str, execution_id: str, input_json: str | None) -> Event:
    # `Version` must exist: the SDK reads it unguarded (AttributeError otherwise).
    return _event(
        EventType.EXECUTION_STARTED,
        timestamp,
        Name=name,
        Version="",
        Input=input_json,
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
        ParentInstance=None,
        Tags=None,
    )


def execution_completed(timestamp: str, status: str, result_json: str | None) -> Event:
    """DTFx closes every execution with this; `OrchestrationStatus` says how (Completed, Failed, Terminated)."""
    return _event(EventType.EXECUTION_COMPLETED, timestamp, OrchestrationStatus=status, Result=result_json)


def execution_terminated(timestamp: str, reason_json: str | None) -> Event:
    return _event(EventType.EXECUTION_TERMINATED, timestamp, Input=reason_json)


def task_scheduled(timestamp: str, task_id: int, name: str, input_json: str | None) -> Event:
    return _event(EventType.TASK_SCHEDULED, timestamp, task_id, Name=name, Input=input_json)


def task_completed(timestamp: str, task_id: int, result_json: str | None) -> Event:
    return _event(EventType.TASK_COMPLETED, timestamp, TaskScheduledId=task_id, Result=result_json)


def task_failed(timestamp: str, task_id: int, reason: str, details: str) -> Event:
    """The SDK throws `Exception(f"{Reason} \\n {Details}")` into the orchestrator."""
    return _event(EventType.TASK_FAILED, timestamp, TaskScheduledId=task_id, Reason=reason, Details=details)


def timer_created(timestamp: str, timer_id: int, fire_at: str) -> Event:
    return _event(EventType.TIMER_CREATED, timestamp, timer_id, FireAt=fire_at)


def timer_fired(timestamp: str, timer_id: int, fire_at: str) -> Event:
    return _event(EventType.TIMER_FIRED, timestamp, TimerId=timer_id, FireAt=fire_at)


def event_raised(timestamp: str, name: str, input_json: str | None) -> Event:
    """Matched by `Name` against `wait_for_external_event(name)`; `Input` is decoded with df_loads."""
    return _event(EventType.EVENT_RAISED, timestamp, Name=name, Input=input_json)


def context_json(
    history: list[Event], instance_id: str, input_value: Any, parent_instance_id: str | None = None
) -> str:
    """The string `handle` receives: the history with IsPlayed set, the input, and the schema versions.

    `input_value` is the orchestration input as the extension sends it: the parsed JSON token of what was started
    (a Python client sends df_dumps text, so this is a str holding JSON, which `get_input()` decodes).
    The timer-duration keys are left out on purpose: with them, SDK schema V3 splits long timers into a chain
    (LongTimerTask) that would need extra id bookkeeping for nothing.
    """
    last_start = max(
        (i for i, event in enumerate(history) if event["EventType"] == EventType.ORCHESTRATOR_STARTED), default=0
    )
    played = [{**event, "IsPlayed": i < last_start} for i, event in enumerate(history)]
    return json.dumps(
        {
            "history": played,
            "instanceId": instance_id,
            "isReplaying": last_start > 0,
            "parentInstanceId": parent_instance_id,
            "input": input_value,
            "upperSchemaVersion": 1,
            "upperSchemaVersionNew": 2,
        }
    )


def public_history(history: list[Event], with_output: bool) -> list[dict[str, Any]]:
    """History for `GET instances/{id}?showHistory=true`: named event types, payloads only with showHistoryOutput.

    The real API returns a condensed view; this keeps every event but the episode markers, which is enough to see
    what an orchestration did.
    """
    shown: list[dict[str, Any]] = []
    for event in history:
        kind = EventType(event["EventType"])
        if kind in (EventType.ORCHESTRATOR_STARTED, EventType.ORCHESTRATOR_COMPLETED):
            continue
        item: dict[str, Any] = {"EventType": _pascal(kind.name), "Timestamp": event["Timestamp"]}
        for key in ("Name", "EventId", "TaskScheduledId", "TimerId", "FireAt", "OrchestrationStatus", "Reason"):
            if key in event and event[key] not in (None, -1):
                item[key] = event[key]
        if with_output:
            for key in ("Input", "Result", "Details"):
                if event.get(key) is not None:
                    item[key] = event[key]
        shown.append(item)
    return shown


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))
