"""Several gateway processes on one replica: a supervisor, its workers, and the figures they share.

One Python process uses one core for its event loop, so a replica with more than one core runs GATEWAY_WORKERS
worker processes (0, the default: one per core the container may use, read from its cgroup quota, since
Container Apps gives a replica a share of a larger machine). Each worker is a whole gateway serving the same port
with SO_REUSEPORT, so the kernel spreads new connections over them; a call lives and dies with its worker. The
supervisor (`python -m media_gateway` itself) starts them, starts a new one when one dies, and passes SIGTERM on.
A killed worker's sockets close with it: ACS sees the media stream end, and the call's socket claim in
SessionState refuses any reconnection to it (409), as for any call whose socket closed.

GATEWAY_MAX_CALLS stays a replica's figure: each worker carries an even share (rounded up), and holds callers past
its share as a single process does. `GET /stats` lands on one worker; it asks its siblings for their figures over
Unix sockets in a private directory the supervisor made, and answers for the replica, worker by worker as well.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

#: A worker that dies sooner than this after starting is restarted only after a pause (a crash loop stays slow).
RESTART_PAUSE_SECONDS = 1.0
SIBLING_TIMEOUT_SECONDS = 2.0
_RUN_DIR_ENV = "GATEWAY_RUN_DIR"  # set by the supervisor for its workers: where their stats sockets are


def available_cores() -> int:
    """Cores this process may use: the cgroup's CPU quota when there is one (a container's share), else affinity."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def worker_count(configured: int) -> int:
    return configured or available_cores()


@dataclass(frozen=True)
class WorkerPlace:
    """Where a worker stands in its pool: its index, the pool's size, and the directory of their stats sockets."""

    index: int
    count: int
    run_dir: Path

    @classmethod
    def from_env(cls, index: int, count: int) -> WorkerPlace:
        return cls(index, count, Path(os.environ[_RUN_DIR_ENV]))

    def socket(self, index: int | None = None) -> Path:
        return self.run_dir / f"worker-{self.index if index is None else index}.sock"

    def share_of(self, total: int) -> int:
        """This worker's share of a replica-wide figure (GATEWAY_MAX_CALLS)."""
        return max(1, math.ceil(total / self.count))

    async def siblings_stats(self, reset: bool) -> list[dict[str, Any]]:
        """Every other worker's own figures (a worker that does not answer, being restarted, says so)."""
        async def ask(index: int) -> dict[str, Any]:
            connector = aiohttp.UnixConnector(path=str(self.socket(index)))
            try:
                timeout = aiohttp.ClientTimeout(total=SIBLING_TIMEOUT_SECONDS)
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                    async with http.get("http://worker/stats", params={"reset": "pacing"} if reset else {}) as answer:
                        return await answer.json()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                return {"worker": {"index": index, "up": False, "error": str(exc) or type(exc).__name__}}

        return list(await asyncio.gather(*(ask(i) for i in range(self.count) if i != self.index)))


def supervise(argv: list[str], count: int) -> int:
    """Run `count` workers (`python -m media_gateway <argv> --worker i`) until SIGTERM/SIGINT; restart any that die."""
    run_dir = Path(tempfile.mkdtemp(prefix="switchboard-gateway-"))  # 0700: only this user reaches the sockets
    env = {**os.environ, _RUN_DIR_ENV: str(run_dir)}
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(index: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "media_gateway", *argv, "--worker", str(index), "--workers", str(count)]
        return subprocess.Popen(command, env=env, preexec_fn=_exit_with_supervisor)

    workers = {index: (start(index), time.monotonic()) for index in range(count)}
    pids = ", ".join(str(process.pid) for process, _ in workers.values())
    log.info("media gateway supervisor: %d workers (pids %s)", count, pids)
    exit_code = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for index, (process, started) in list(workers.items()):
                code = process.poll()
                if code is None or stopping:
                    continue
                if code in (1, 2) and time.monotonic() - started < 5:  # the port is taken, or a bad setting
                    log.error("media gateway worker %d could not start (exit %d): stopping", index, code)
                    stopping, exit_code = True, code
                    break
                log.error("media gateway worker %d (pid %d) exited with %d: starting another", index, process.pid, code)
                if time.monotonic() - started < RESTART_PAUSE_SECONDS:
                    time.sleep(RESTART_PAUSE_SECONDS)
                workers[index] = (start(index), time.monotonic())
    finally:
        for process, _ in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process, _ in workers.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(run_dir, ignore_errors=True)
    return exit_code


def _prctl():  # resolved here, in the supervisor: between fork and exec a worker should only call it
    try:
        return ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()
_PR_SET_PDEATHSIG = 1


def _exit_with_supervisor() -> None:
    """In a worker, before exec: SIGTERM when the supervisor dies without stopping it (killed, crashed), so no
    orphaned worker keeps the port and its calls."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
