"""What the benchmarks share: a `python -m local` of their own, and percentiles.

The host gets free ports for everything it starts (functions host, ACS emulator, media gateway), so a benchmark
runs beside a developer's `make run`, and its own data dir, removed afterwards.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Iterator, Sequence

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from tests.verifying import ASKS_TO_VERIFY, CONFIRMED, codes_sent_async, knowledge_answers  # noqa: E402

STARTUP_TIMEOUT = 60.0


@dataclass(frozen=True)
class BenchHost:
    url: str
    acs_url: str
    data_dir: Path


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


#: Where the customer proves the account is theirs: the code the agent just sent to the number on record, or the
#: ZIP code and last name, whichever it asked for (`Proof`); nothing is said there if nothing was asked.
PROOF = "<the code or the answers the agent asked for>"
#: What a text-channel customer says, in order; clients with more turns start over.
JOURNEY = (
    "Hi, I have a question about my bill",
    "My account number is 100200300",
    PROOF,
    "When is it due?",
    "Also my power is out",
    "Is there an outage on my street?",
    "How can I save energy?",
    "Thanks, that's all",
)


class Proof:
    """Jordan's phone and memory, for benchmark customers who all name his account (JOURNEY).

    Account data needs a verified customer (docs/security.md, "Verifying customers"): a customer naming his account
    is sent a code to his number on record (a few an hour), or past that asked his ZIP code and last name. A code is
    read where it went, the ACS emulator's outboxes at `acs_url`. Customers asking for one take turns (`asking`), so
    the code that arrives while one holds the turn is theirs: a wrong guess would count towards locking Jordan out.
    Without `acs_url` (a host whose texts reach real phones) only the knowledge questions can be answered.
    """

    HOLDER, ACCOUNT = "+15555550100", "100200300"

    def __init__(self, acs_url: str | None) -> None:
        self.acs_url = acs_url
        self._turn = asyncio.Lock()
        self.checks = self.passed = 0  # checks answered, and how many of them the agent confirmed
        self.unanswered = 0  # checks the bench could not answer (a code it could not read)

    @asynccontextmanager
    async def asking(self, http: httpx.AsyncClient) -> AsyncIterator[Callable[[str], Awaitable[str | None]]]:
        """Hold the turn while saying the line that may be answered with a check; yields `answer(reply)`: what to
        say to the check in that reply, or None if it asked for nothing."""
        async with self._turn:
            before = len(await self._codes(http))

            async def answer(reply: str) -> str | None:
                if not ASKS_TO_VERIFY.search(reply):
                    return None
                if "ZIP code" in reply:
                    return knowledge_answers(self.ACCOUNT)
                # The code went out before the agent said so. Exactly one new one is ours; two (a customer who
                # skipped their check asked again meanwhile) cannot be told apart, and a wrong guess counts.
                new = (await self._codes(http))[before:]
                if len(new) != 1:
                    self.unanswered += 1
                    return None
                return new[0]

            yield answer

    def summary(self) -> str:
        return (f"{self.passed} of {self.checks} checks passed"
                + (f", {self.unanswered} could not be answered (no code to read)" if self.unanswered else ""))

    async def _codes(self, http: httpx.AsyncClient) -> list[str]:
        return await codes_sent_async(http, self.acs_url, self.HOLDER) if self.acs_url else []


async def tell(lines: Sequence[str], say: Callable[[str], Awaitable[str]], proof: Proof, http: httpx.AsyncClient,
               go_on: Callable[[], bool] = lambda: True) -> None:
    """Say `lines` one after another with `say` (which sends one and returns the reply's text), answering the
    agent's check where PROOF stands; stop early when `go_on()` is false."""
    answer: str | None = None
    for i, line in enumerate(lines):
        if not go_on():
            return
        if line == PROOF:
            if answer is not None:
                proof.checks += 1
                proof.passed += (await say(answer)).startswith(CONFIRMED)
            answer = None
        elif i + 1 < len(lines) and lines[i + 1] == PROOF:
            async with proof.asking(http) as prove:
                answer = await prove(await say(line))
        else:
            await say(line)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM (it drains and exits), then SIGKILL if it hangs."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_host(**settings: str) -> Iterator[BenchHost]:
    """`python -m local` on free ports with a temporary data dir (plus `settings`); stopped after."""
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    port, acs_port, gateway_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "ACS_EMULATOR_PORT": str(acs_port),
        "GATEWAY_PORT": str(gateway_port),
        "SWITCHBOARD_DATA_DIR": str(workdir / "data"),
        "SWITCHBOARD_POLICY": "offline",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "WEBCHAT_SESSIONS_PER_ADDRESS": "0",  # a benchmark is one address starting sessions as fast as it can
        "PYTHONUNBUFFERED": "1",
        **settings,
    }
    log_path = workdir / "host.log"
    url = f"http://127.0.0.1:{port}"
    process = spawn_local(env, log_path)
    try:
        wait_local(process, url, env["GATEWAY_PORT"], log_path)
        yield BenchHost(url, f"http://127.0.0.1:{acs_port}", workdir / "data")
    finally:
        _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def spawn_local(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m local` with `env`, its output appended to `log_path`, in a process group of its own (so stopping
    the group stops the media gateway it starts too)."""
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "local"],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_local(process: subprocess.Popen[bytes], url: str, gateway_port: str, log_path: Path) -> None:
    """Until the stack `spawn_local` started serves: the Functions host answers first, then the media gateway it
    starts last (if that fails, `python -m local` exits, and the log tail says why)."""
    _wait_healthy(process, url, log_path)
    _wait_healthy(process, f"http://127.0.0.1:{gateway_port}", log_path)


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS now, peak RSS) in MB, from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


class HostFailed(RuntimeError):
    pass


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise HostFailed(f"the local host exited with status {process.returncode}:\n{_tail(log_path)}")
            try:
                if client.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise HostFailed(f"the local stack did not answer {url}/healthz within {STARTUP_TIMEOUT:.0f} s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)  # the group we created with start_new_session
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


