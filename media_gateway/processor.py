"""Pipeline stages: each is a `FrameProcessor` with one `process_frame`, linked in a chain (Pipecat's shape).

A stage handles the frames it knows and forwards the rest with `push_frame`. `process_frame` must return quickly:
work that takes time (speech-to-text, the conversation turn, synthesis, pacing) runs in a task the stage owns,
started with `create_task`. Owned tasks are cancelled and awaited when the stage stops, and one that fails reports to
the pipeline, which ends the call rather than carrying on with a dead stage.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Coroutine, Sequence

from media_gateway.frames import Frame

log = logging.getLogger(__name__)

#: How long a cancelled task gets to finish its cleanup before we stop waiting for it.
CANCEL_TIMEOUT = 2.0

OnFailure = Callable[[BaseException], None]


async def cancel_and_wait(task: asyncio.Task[Any] | None, timeout: float = CANCEL_TIMEOUT) -> None:
    """Cancel a task we own and wait for it to finish. If *we* are cancelled meanwhile, that propagates."""
    if task is None or task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.warning("task %s did not stop within %.1f s of being cancelled", task.get_name(), timeout)


class FrameProcessor:
    def __init__(self) -> None:
        self._next: FrameProcessor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_failure: OnFailure | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def link(self, downstream: FrameProcessor) -> FrameProcessor:
        self._next = downstream
        return downstream

    async def start(self, on_failure: OnFailure) -> None:
        """Called once before the first frame; stages that own tasks start them here (after calling super)."""
        self._on_failure = on_failure

    async def stop(self) -> None:
        """Cancel and await every task this stage owns."""
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            await cancel_and_wait(task)

    async def process_frame(self, frame: Frame) -> None:
        await self.push_frame(frame)

    async def push_frame(self, frame: Frame) -> None:
        if self._next is not None:
            await self._next.process_frame(frame)

    def create_task(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.name}.{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def cancel_task(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._tasks.discard(task)
            await cancel_and_wait(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            log.error("%s failed", task.get_name(), exc_info=exc)
            if self._on_failure is not None:
                self._on_failure(exc)


class Pipeline:
    """Stages in order; frames enter at the first. Stopping stops the stages last to first."""

    def __init__(self, stages: Sequence[FrameProcessor]) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.stages = list(stages)
        for upstream, downstream in zip(self.stages, self.stages[1:]):
            upstream.link(downstream)

    async def start(self, on_failure: OnFailure) -> None:
        for stage in self.stages:
            await stage.start(on_failure)

    async def process_frame(self, frame: Frame) -> None:
        await self.stages[0].process_frame(frame)

    async def stop(self) -> None:
        for stage in reversed(self.stages):
            await stage.stop()
