"""The Durable engine at run time: one dispatcher applying inbox messages in order, activities run through the host.

The dispatcher takes the next due message (a start, a result, a timer whose time has come, a raised event), applies
it in one transaction (history, replay, new work; see `replay.apply`) on a worker thread, then launches the
activities that episode scheduled. Activities run concurrently through `host.invoke`, so they get the same bindings
and threading as any function; each result is queued back as a message. On start, every activity still owed is run
again and every queued message (timers included) is applied: that is how an orchestration survives a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import traceback
import unicodedata
import uuid
from pathlib import Path
from typing import Any, Protocol

from azure.durable_functions.models.utils.df_serialization import df_dumps, df_loads
from azure.functions.decorators.function_app import Function

from local.durable import replay
from local.durable.clock import Clock, SystemClock, format_time, parse_time
from local.durable.history import Event
from local.durable.store import InstanceRow, Query, Store, Tx, Work

log = logging.getLogger("local.durable")

MAX_INSTANCE_ID_LENGTH = 256  # the extension's limit


class DurableError(Exception):
    """A client request the engine refuses; the API maps each kind to the status code the real one answers."""


class UnknownOrchestrator(DurableError):
    pass


class InvalidInstanceId(DurableError):
    pass


class InstanceExists(DurableError):
    """Starting an id that is Pending or Running under overridableExistingInstanceStates = NonRunningStates (the
    extension's default): refused, while a Completed, Failed or Terminated instance is replaced."""


#: host.json's `overridableExistingInstanceStates` (the extension's OverridableStates enum): which existing instances
#: a start with the same id replaces. AnyState replaces a running one too, silently; NonRunningStates refuses it.
OVERRIDABLE_STATES = ("AnyState", "NonRunningStates")


class InstanceNotFound(DurableError):
    pass


class InstanceGone(DurableError):
    """The instance has ended (Completed, Failed, Terminated): events and termination no longer apply."""


class Invoker(Protocol):
    """What the engine needs of local.host.Host: running a function with its trigger value and other bindings."""

    async def invoke(self, function: Function, trigger_value: Any) -> Any: ...


class Engine:
    def __init__(
        self, path: Path, host: Invoker, clock: Clock | None = None, *, overridable: str = "NonRunningStates"
    ) -> None:
        if overridable not in OVERRIDABLE_STATES:
            raise ValueError(f"overridableExistingInstanceStates must be one of {', '.join(OVERRIDABLE_STATES)}")
        self.clock: Clock = clock or SystemClock()
        self.overridable = overridable
        self._path = path
        self._host = host
        self._store: Store | None = None
        self._orchestrators: dict[str, Function] = {}
        self._activities: dict[str, Function] = {}
        self._wakeup = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._busy = False  # the dispatcher holds a message it has not finished with
        self._idle = asyncio.Event()

    # functions, adopted from the host before it starts

    def add_orchestrator(self, function: Function) -> None:
        self._orchestrators[function.get_function_name().lower()] = function  # names are case-insensitive in Azure

    def add_activity(self, function: Function) -> None:
        self._activities[function.get_function_name().lower()] = function

    # lifecycle

    async def start(self) -> None:
        """Open the task hub, re-run the activities a previous run still owed, and start dispatching."""
        self._store = Store(self._path)
        owed = await asyncio.to_thread(self._store.all_work)
        if owed:
            log.info("resuming %d activities owed before the restart", len(owed))
        for work in owed:
            self._launch(work)
        self._dispatcher = asyncio.create_task(self._dispatch(), name="durable-dispatcher")
        self._dispatcher.add_done_callback(_report_crash)

    async def stop(self) -> None:
        """Cancel the dispatcher and activities in flight (their work stays owed for the next start), close."""
        tasks = [task for task in (self._dispatcher, *self._running) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._dispatcher = None
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the Durable engine is not started")
        return self._store

    async def idle(self) -> None:
        """Wait until nothing is due and no activity runs (timers in the future do not count). For tests."""
        while not self._is_idle():
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), 0.05)
            except TimeoutError:
                pass

    # the client operations (the HTTP API calls these)

    async def start_new(self, name: str, instance_id: str | None, input_json: str | None) -> str:
        """Queue a new instance; returns its id. `input_json` is the JSON text of the input token."""
        if name.lower() not in self._orchestrators:
            raise UnknownOrchestrator(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function."
            )
        instance_id = instance_id or uuid.uuid4().hex
        _check_instance_id(instance_id)
        now = format_time(self.clock.now())

        def create() -> None:
            with self.store.transaction() as tx:
                existing = tx.instance(instance_id)
                if existing is not None and existing.is_running and self.overridable == "NonRunningStates":
                    raise InstanceExists(f"An Orchestration instance with the status {existing.status} already exists.")
                if existing is not None:  # ended, or AnyState: replaced, and whatever it still owed is dropped
                    tx.delete_instance(instance_id)
                row = InstanceRow(
                    instance_id=instance_id,
                    name=self._orchestrators[name.lower()].get_function_name(),
                    execution_id=uuid.uuid4().hex,
                    status="Pending",
                    input=input_json,
                    output=None,
                    custom_status=None,
                    created_time=now,
                    last_updated_time=now,
                    book=replay.new_book(),
                )
                tx.put_instance(row)
                tx.add_message(instance_id, "start", {}, now, execution_id=row.execution_id)

        await asyncio.to_thread(create)
        self._wake()
        return instance_id

    async def raise_event(self, instance_id: str, name: str, input_json: str | None) -> None:
        """Queue an event. If the orchestration is not waiting for it yet, it sits in history until it does."""
        await self._send(instance_id, "event_raised", {"name": name, "input": input_json})

    async def terminate(self, instance_id: str, reason: str | None) -> None:
        await self._send(instance_id, "terminate", {"reason": reason})

    async def status(self, instance_id: str) -> InstanceRow | None:
        return await asyncio.to_thread(self.store.instance, instance_id)

    async def history(self, instance_id: str) -> list[Event]:
        return await asyncio.to_thread(self.store.history, instance_id)

    async def instances(self, query: Query) -> list[InstanceRow]:
        return await asyncio.to_thread(self.store.instances, query)

    async def purge(self, query: Query | None = None, instance_id: str | None = None) -> int:
        """Delete instances (one by id, or all matching `query`) with everything queued for them."""

        def delete() -> int:
            with self.store.transaction() as tx:
                ids = (
                    [instance_id]
                    if instance_id is not None
                    else [r.instance_id for r in tx.instances(query or Query())]
                )
                return sum(tx.delete_instance(i) for i in ids)

        return await asyncio.to_thread(delete)

    async def _send(self, instance_id: str, kind: str, payload: dict[str, Any]) -> None:
        now = format_time(self.clock.now())

        def queue() -> None:
            with self.store.transaction() as tx:
                row = tx.instance(instance_id)
                if row is None:
                    raise InstanceNotFound(f"No instance with ID {instance_id} found.")
                if not row.is_running:
                    raise InstanceGone(f"Instance {instance_id} is {row.status}.")
                tx.add_message(instance_id, kind, payload, now)

        await asyncio.to_thread(queue)
        self._wake()

    # the dispatcher

    def _wake(self) -> None:
        self._wakeup.set()

    async def _dispatch(self) -> None:
        while True:
            self._wakeup.clear()
            message, next_due = await asyncio.to_thread(self.store.next_message, format_time(self.clock.now()))
            if message is None:
                self._idle.set()
                await self.clock.wait(self._wakeup, parse_time(next_due) if next_due else None)
                continue
            self._busy = True
            try:
                owed = await asyncio.to_thread(self._apply, message.id)
            except sqlite3.OperationalError as exc:  # e.g. locked by another process on the same data dir: retry
                log.warning("the Durable store is busy (%s); retrying", exc)
                self._busy = False
                await asyncio.sleep(1)
                continue
            except Exception:
                # An engine bug, not the orchestrator's (those fail the instance inside apply): drop the message
                # rather than retry it forever, and say so loudly.
                log.exception(
                    "the Durable engine could not apply %s for %s; dropped", message.kind, message.instance_id
                )
                await asyncio.to_thread(self._drop, message.id)
                owed = []
            for work in owed:
                self._launch(work)
            self._busy = False

    def _apply(self, message_id: int) -> list[Work]:
        """One message, one transaction (runs on a worker thread: `handle` is synchronous CPU work)."""
        now = self.clock.now()
        with self.store.transaction() as tx:
            message = tx.message(message_id)
            if message is None:  # purged meanwhile
                return []
            tx.delete_message(message_id)
            row = tx.instance(message.instance_id)
            if row is None or not row.is_running:
                return []
            if message.execution_id is not None and message.execution_id != row.execution_id:
                return []  # a timer or result of an execution that continued-as-new or was replaced
            execution = replay.Execution(
                row.instance_id, row.name, row.execution_id, row.input, tx.history(row.instance_id), row.book
            )
            function = self._orchestrators.get(row.name.lower())
            handle = function.get_user_function() if function is not None else None
            step = replay.apply(execution, message, handle, now)
            if step is None:
                return []

            tx.append_history(row.instance_id, step.events)
            row.status, row.book, row.last_updated_time = step.status, step.book, format_time(now)
            if not step.keep_custom_status:
                row.custom_status = step.custom_status_json
            for timer in step.timers:
                tx.add_message(
                    row.instance_id,
                    "timer_fired",
                    {},
                    timer.fire_at,
                    execution_id=row.execution_id,
                    task_id=timer.task_id,
                )
            tx.cancel_timers(row.instance_id, step.cancelled_timers)
            owed = [Work(row.instance_id, row.execution_id, a.task_id, a.name, a.input_json) for a in step.activities]
            for work in owed:
                tx.add_work(work)
            if step.ended:
                row.output = step.output_json
                tx.drop_work(row.instance_id)
                tx.drop_execution_messages(row.instance_id)
                if step.status == "ContinuedAsNew":
                    self._continue_as_new(tx, row, step.continue_input_json, format_time(now))
                log.info("orchestration %s (%s) %s", row.instance_id, row.name, row.status.lower())
            tx.put_instance(row)
            return owed

    @staticmethod
    def _continue_as_new(tx: Tx, row: InstanceRow, input_json: str | None, now: str) -> None:
        """A fresh history and execution id under the same instance id; raised events still queued carry over."""
        row.execution_id = uuid.uuid4().hex
        row.input, row.output, row.book = input_json, None, replay.new_book()
        tx.clear_history(row.instance_id)
        tx.add_message(row.instance_id, "start", {}, now, execution_id=row.execution_id)

    def _drop(self, message_id: int) -> None:
        with self.store.transaction() as tx:
            tx.delete_message(message_id)

    # activities

    def _launch(self, work: Work) -> None:
        self._idle.clear()
        task = asyncio.create_task(self._run_activity(work), name=f"activity {work.name} {work.instance_id}")
        self._running.add(task)
        task.add_done_callback(self._activity_done)

    def _activity_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("reporting an activity result failed", exc_info=task.exception())

    async def _run_activity(self, work: Work) -> None:
        kind, payload = await self._invoke(work)
        now = format_time(self.clock.now())

        def report() -> None:
            with self.store.transaction() as tx:
                if tx.take_work(work.instance_id, work.execution_id, work.task_id):
                    tx.add_message(
                        work.instance_id, kind, payload, now, execution_id=work.execution_id, task_id=work.task_id
                    )

        await asyncio.to_thread(report)
        self._wake()

    async def _invoke(self, work: Work) -> tuple[str, dict[str, Any]]:
        """Run one activity like the worker does (docs/protocols.md, "Activities without the host"): df_loads in,
        df_dumps out, errors as TaskFailed."""
        function = self._activities.get(work.name.lower())
        if function is None:
            reason = f"The function '{work.name}' doesn't exist, is disabled, or is not an activity function."
            return "task_failed", {"reason": reason, "details": ""}
        try:
            result = await self._host.invoke(function, _activity_input(work.input))
            return "task_completed", {"result": df_dumps(result)}
        except Exception as exc:  # noqa: BLE001 - any activity error becomes TaskFailed, as on Azure
            log.warning("activity %s of %s failed: %s", work.name, work.instance_id, exc)
            reason = f"Activity function '{work.name}' failed: {type(exc).__name__}: {exc}"
            return "task_failed", {"reason": reason, "details": traceback.format_exc()}

    def _is_idle(self) -> bool:
        if self._running or self._busy:
            return False
        if self._store is None:
            return True
        message, _ = self._store.next_message(format_time(self.clock.now()))
        return message is None


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the Durable dispatcher stopped: orchestrations will not progress", exc_info=task.exception())


def _activity_input(input_json: str | None) -> Any:
    """What the worker's ActivityTriggerConverter passes: df_loads of the text, or the text itself if not JSON."""
    if input_json is None:
        return None
    try:
        return df_loads(input_json)
    except json.JSONDecodeError:
        return input_json


def _check_instance_id(instance_id: str) -> None:
    """The extension's rules for caller-chosen ids."""
    if instance_id.startswith("@"):
        raise InvalidInstanceId("Orchestration instance ids must not start with @.")
    if any(c in "/\\#?" or unicodedata.category(c) == "Cc" for c in instance_id):
        raise InvalidInstanceId("Orchestration instance ids must not contain /, \\, #, ?, or control characters.")
    if len(instance_id) > MAX_INSTANCE_ID_LENGTH:
        raise InvalidInstanceId(f"Instance ID lengths must not exceed {MAX_INSTANCE_ID_LENGTH} characters.")
