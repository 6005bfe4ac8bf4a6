"""One turn at a time per session: a lease in SessionState, taken in arrival order, with a fencing token.

A turn reads the session, runs the policy (seconds with an LLM), then writes. Two messages of one session running at
once would both answer from stale history, and the last writer would decide the active agent. So a turn holds the
session's lock from before it reads until after it writes:

* Within a process, waiters queue on an asyncio lock per session, which wakes them in the order they arrived.
* Across processes (function instances, the media gateway), the holder also takes the lease `turn:<session id>` in
  SessionState (Redis in Azure), polling with a short backoff while another process holds it, and renews it while
  the turn runs. The lease expires on its own if its holder dies, so a killed process blocks a session for at most
  `lease_seconds`.
* A lease can still be lost (a holder stalled past its lease, a network partition). Each lease comes with a fencing
  token larger than any issued before for that session; the turn's write checks it against the last token that wrote
  to the session (`ChannelSession.fence`) and is refused if a later holder has written, so a stale holder can never
  overwrite what a newer turn saved.

If SessionState is unreachable the turn goes ahead under the in-process lock alone (logged): hot state is a cache
and the customer's record, written with optimistic concurrency, is still the truth; a customer is answered during a
Redis outage rather than told to wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import AsyncIterator

from shared.errors import SwitchboardError, Unavailable
from shared.stores.base import SessionState, _KeyedLocks

log = logging.getLogger(__name__)

#: How long a lease lasts unless renewed; the holder renews it every third of that.
LEASE_SECONDS = 30.0
#: How long a turn waits for another process's turn on the same session before giving up (a retryable 503).
WAIT_SECONDS = 60.0
#: Poll backoff while another process holds the lease: uniform jitter up to this cap.
POLL_BASE_SECONDS = 0.01
POLL_CAP_SECONDS = 0.2

#: The sessions this task already holds, with their tokens: holding is re-entrant within one task (a channel that
#: holds a session's lock around a turn and its sends calls `Conversation.turn` inside it).
_held: contextvars.ContextVar[dict[str, int | None]] = contextvars.ContextVar("held_sessions", default={})


class SessionBusy(Unavailable):
    """Another process kept the session's turn longer than a turn may wait."""


class SessionLocks:
    def __init__(self, state: SessionState, *, lease_seconds: float = LEASE_SECONDS,
                 wait_seconds: float = WAIT_SECONDS) -> None:
        self._state = state
        self._local = _KeyedLocks()
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds

    @contextlib.asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[int | None]:
        """Hold the session's turn; yields the fencing token (None when SessionState was unreachable)."""
        held = _held.get()
        if session_id in held:
            yield held[session_id]
            return
        async with self._local.hold(session_id):
            key = _lease_key(session_id)
            token = await self._acquire(key)
            renewer = asyncio.create_task(self._renew(key, token)) if token is not None else None
            reset = _held.set({**held, session_id: token})
            try:
                yield token
            finally:
                _held.reset(reset)
                if renewer is not None:
                    renewer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await renewer
                if token is not None:
                    await self._release(key, token)

    async def _acquire(self, key: str) -> int | None:
        deadline = time.monotonic() + self.wait_seconds
        attempt = 0
        while True:
            try:
                token = await self._state.acquire_lease(key, self.lease_seconds)
            except SwitchboardError as exc:
                log.warning("session state unavailable, %s runs under this process's lock only: %s", key, exc)
                return None
            if token is not None:
                return token
            if time.monotonic() >= deadline:
                raise SessionBusy(f"another turn of this session has run for over {self.wait_seconds:g} s",
                                  retry_after=1.0)
            attempt += 1
            await asyncio.sleep(random.uniform(0, min(POLL_CAP_SECONDS, POLL_BASE_SECONDS * 2**attempt)))

    async def _renew(self, key: str, token: int) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                if not await self._state.renew_lease(key, token, self.lease_seconds):
                    log.warning("%s: lease %d was lost; the turn's write will be refused if a newer one wrote", key, token)
                    return
            except SwitchboardError as exc:
                log.warning("%s: could not renew lease %d: %s", key, token, exc)

    async def _release(self, key: str, token: int) -> None:
        try:
            await self._state.release_lease(key, token)
        except SwitchboardError as exc:  # it expires by itself; the next turn waits at most one lease
            log.warning("%s: could not release lease %d: %s", key, token, exc)


def _lease_key(session_id: str) -> str:
    return f"turn:{session_id}"
