"""Mixed load on the local stack: web chat turns, WhatsApp messages and phone calls at once, for a while.

Run it from the repository root:

    .venv/bin/python bench/load.py                                   # 30 s: 4 web chat, 2 WhatsApp, 2 callers
    .venv/bin/python bench/load.py --duration 60 --webchat 8 --whatsapp 4 --calls 4
    .venv/bin/python bench/load.py --count 4                         # each client does 4 things, then stops

It starts `python -m local` (the Functions host with the ACS emulator in its process, and its own media gateway
as a child) on free ports with a throwaway data dir and the offline policy, plus a second `python -m media_gateway
--engines null` (a scripted recogniser and a tone for a voice, as bench/gateway.py uses) that the host's calls are
answered to (GATEWAY_PUBLIC_URL), so calls cost the gateway itself and not speech models. Then, concurrently until
the duration is over (or each client has done --count things):

    webchat    each client opens a session and sends a journey's lines one after another (a new session every
               len(JOURNEY) turns); timed: POST .../messages, and session creation apart
    whatsapp   each customer (its own number) writes the journey's lines through the emulator (POST
               /_emulator/inbound, which posts the Event Grid event to the host) and waits for the reply in the
               emulator's outbox, then for it to be quiet for 0.3 s; timed: inbound to reply sent (outbox polled
               every 20 ms)

Every customer names Jordan's account and proves it is theirs when asked, as bench/common.Proof does: with the code
sent to his phone (read from the emulator's outboxes, one customer asking at a time) while the hour's few codes
last, then with his ZIP code and last name. So the turns that show his balance are measured with their check.
    calls      each caller places a call through the emulator (IncomingCall -> answer -> media WebSocket to the
               null gateway -> greeting), stays on the line --call-seconds, and hangs up; timed: placing the call
               to answered, and to the first greeting audio reaching the caller (polled every 20 ms)

What it prints: per channel and operation, how many were done, errors (by kind), throughput per second of wall
time, p50/p95/p99/max latency in ms (nearest rank); then the resident memory (RSS now, and peak) of each process,
read from /proc: the host (with the emulator), the host's media gateway (idle: no call goes to it) and the null
gateway. The load average is printed with the figures: the clients run in this process on the same machine.

The exit status is 1 if any operation failed, 2 if the stack did not start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: `python bench/load.py`
from common import (JOURNEY, PROJECT_ROOT, HostFailed, Proof, free_port, local_host, memory_mb,  # noqa: E402
                    percentile, stop_process, tell)

sys.path.insert(0, str(PROJECT_ROOT))
from shared.settings import SETTINGS  # noqa: E402

POLL = 0.02
QUIET = 0.3  # a WhatsApp customer's answer is complete once the outbox is this quiet
TIMEOUT = 60.0


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # "channel: op" -> ms
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))  # channel -> kind -> n

    def time(self, what: str, started: float) -> None:
        self.latencies[what].append((time.perf_counter() - started) * 1000)

    def error(self, channel: str, kind: str) -> None:
        self.errors[channel][kind] += 1


class Failed(Exception):
    """One operation went wrong; its message is the error kind."""


def _check(response: httpx.Response, expected: int, what: str) -> httpx.Response:
    if response.status_code != expected:
        raise Failed(f"{what}: HTTP {response.status_code}")
    return response


async def _until(check, timeout: float = TIMEOUT, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        if value := await check():
            return value
        if time.monotonic() > deadline:
            raise Failed(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(POLL)


class Load:
    def __init__(self, url: str, acs_url: str, until: float, count: int | None, call_seconds: float) -> None:
        self.url, self.acs_url = url, acs_url
        self.until, self.count, self.call_seconds = until, count, call_seconds
        self.results = Results()
        self.proof = Proof(acs_url)  # every customer names Jordan's account, and proves it's theirs

    def more(self, done: int) -> bool:
        return (self.count is None or done < self.count) and time.monotonic() < self.until

    async def guarded(self, channel: str, operation) -> None:  # type: ignore[no-untyped-def]
        try:
            await operation
        except Failed as exc:
            self.results.error(channel, str(exc))
        except httpx.HTTPError as exc:
            self.results.error(channel, type(exc).__name__)

    # web chat

    async def webchat_client(self) -> None:
        done = 0
        lines = JOURNEY if self.count is None else JOURNEY[: self.count]
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            while self.more(done):
                await self.guarded("webchat", self._conversation(http, lines, lambda: self.more(done)))
                done += len(lines)

    async def _conversation(self, http: httpx.AsyncClient, lines, go_on) -> None:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        session = _check(await http.post(f"{self.url}/api/webchat/sessions", json={}), 201, "session").json()
        self.results.time("webchat: new session", started)
        messages = f"{self.url}/api/webchat/sessions/{session['session_id']}/messages"
        auth = {"Authorization": f"Bearer {session['token']}"}

        async def say(line: str) -> str:
            started = time.perf_counter()
            answer = _check(await http.post(messages, json={"text": line}, headers=auth), 200, "turn").json()
            self.results.time("webchat: turn", started)
            return " ".join(r["text"] for r in answer["replies"])

        await tell(lines, say, self.proof, http, go_on)

    # WhatsApp

    async def whatsapp_customer(self, index: int) -> None:
        phone = f"+1555800{index:04d}"  # on no account: naming Jordan's, they prove it like a web chat visitor
        done = 0
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:

            async def say(text: str) -> str:
                nonlocal done
                done += 1
                return await self._message(http, phone, text)

            while self.more(done):
                await self.guarded("whatsapp", tell(JOURNEY, say, self.proof, http, lambda: self.more(done)))

    async def _message(self, http: httpx.AsyncClient, phone: str, text: str) -> str:
        async def outbox() -> list[dict]:
            response = await http.get(f"{self.acs_url}/_emulator/messages", params={"to": phone})
            return _check(response, 200, "outbox").json()

        async def sent() -> int:
            return len(await outbox())

        before = await sent()
        started = time.perf_counter()
        _check(await http.post(f"{self.acs_url}/_emulator/inbound", json={"from": phone, "text": text}), 200, "inbound")
        await _until(lambda: _more_than(sent, before), what="reply")
        self.results.time("whatsapp: message -> reply", started)
        # The rest of the answer (an announced handoff sends two messages): the next message's replies are its own.
        settled, count = time.monotonic() + QUIET, await sent()
        while time.monotonic() < settled:
            await asyncio.sleep(POLL)
            if (now := await sent()) != count:
                settled, count = time.monotonic() + QUIET, now
        return " ".join(m.get("content") or "" for m in (await outbox())[before:])

    # calls

    async def caller(self, index: int) -> None:
        phone = f"+1555900{index:04d}"
        done = 0
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            while self.more(done):
                await self.guarded("calls", self._call(http, phone))
                done += 1

    async def _call(self, http: httpx.AsyncClient, phone: str) -> None:
        started = time.perf_counter()
        placed = await http.post(f"{self.acs_url}/_emulator/calls", json={"from": phone})
        if placed.status_code not in (200, 201):
            raise Failed(f"place call: HTTP {placed.status_code}")
        call_url = f"{self.acs_url}/_emulator/calls/{placed.json()['id']}"

        async def state() -> dict:
            return _check(await http.get(call_url), 200, "call state").json()

        try:
            await _until(lambda: _when(state, lambda c: c["state"] != "ringing"), what="answer")
            call = await state()
            if call["state"] != "connected":  # say what the host answered to IncomingCall, and what it did
                delivered = ",".join(str(d["status"]) for d in call["deliveries"]) or "never"
                actions = ",".join(a["op"] for a in call["actions"]) or "none"
                raise Failed(f"call {call['state']} (IncomingCall delivered: {delivered}; app actions: {actions})")
            self.results.time("calls: placed -> answered", started)
            await _until(lambda: _when(state, lambda c: c["audio"]["played_ms"] > 0 or c["state"] != "connected"),
                         what="first audio")
            call = await state()
            if call["audio"]["played_ms"] == 0:
                raise Failed(f"call {call['state']} (media {call['media']}) before any audio")
            self.results.time("calls: placed -> first audio", started)
            await asyncio.sleep(self.call_seconds)
        finally:
            await http.post(f"{call_url}/hangup")


async def _more_than(count, before: int) -> bool:  # type: ignore[no-untyped-def]
    return await count() > before


async def _when(state, predicate) -> dict | None:  # type: ignore[no-untyped-def]
    call = await state()
    return call if predicate(call) else None


# Processes --------------------------------------------------------------------------------------------------------


class NullGateway:
    """`python -m media_gateway --engines null` on the host's data dir (so it reads the same token secret)."""

    def __init__(self, port: int, data_dir: Path, public_url: str, log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        env = {key: value for key, value in os.environ.items() if key not in SETTINGS}
        env.update(GATEWAY_PORT=str(port), SWITCHBOARD_DATA_DIR=str(data_dir), SWITCHBOARD_PUBLIC_URL=public_url,
                   SWITCHBOARD_POLICY="offline", GATEWAY_MAX_CALLS="1000", SWITCHBOARD_SKIP_LOCAL_SETTINGS="1",
                   LOG_LEVEL=os.environ.get("LOG_LEVEL", "WARNING"), PYTHONUNBUFFERED="1")
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", "media_gateway", "--engines", "null"], cwd=PROJECT_ROOT,
                                        env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        with httpx.Client(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise HostFailed(f"the null gateway exited with {self.process.returncode}")
                try:
                    if http.get(f"{self.url}/healthz").json()["engines"]["warm"]:
                        return
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                time.sleep(0.2)
        raise HostFailed("the null gateway did not get ready")

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


def _pids_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry.name))
    return children


def _cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
    except OSError:
        return ""


def stack_processes(host_port: int, null_gateway: NullGateway) -> list[tuple[str, int]]:
    """(role, pid): `python -m local` is found among this process's children by its port, its gateway under it."""
    children = _pids_by_parent()
    found = []
    for pid in children[os.getpid()]:
        if _cmdline(pid).endswith("-m local"):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"PORT={host_port}".encode() in environ:
                found.append(("functions host + ACS emulator", pid))
                found += [("media gateway of make run (idle)", child) for child in children[pid]
                          if "media_gateway" in _cmdline(child)]
    found.append(("media gateway, null engines (the calls)", null_gateway.process.pid))
    return found


# Report -----------------------------------------------------------------------------------------------------------


def report(results: Results, proof: Proof, wall: float, memory: list[tuple[str, int, float, float]],
           args: argparse.Namespace) -> str:
    load = os.getloadavg()
    lines = [
        f"mixed load: {wall:.1f} s wall, {args.webchat} web chat clients, {args.whatsapp} WhatsApp customers, "
        f"{args.calls} callers (null engines); {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f}",
        "",
        f"{'channel: operation':<30}{'done':>6}{'per s':>8}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}  (ms)",
    ]
    for what in sorted(results.latencies):
        values = results.latencies[what]
        lines.append(
            f"{what:<30}{len(values):>6}{len(values) / wall:>8.2f}{percentile(values, 50):>8.0f}"
            f"{percentile(values, 95):>8.0f}{percentile(values, 99):>8.0f}{max(values):>8.0f}"
        )
    lines.append("")
    for channel in ("webchat", "whatsapp", "calls"):
        errors = results.errors.get(channel, Counter())
        detail = ", ".join(f"{kind} x{n}" for kind, n in errors.most_common()) if errors else ""
        lines.append(f"errors {channel:<10}{sum(errors.values()):>5}  {detail}")
    lines.append(f"verified  {proof.summary()} (Jordan's account: a code while the hour's last, then knowledge)")
    lines += ["", f"{'process':<42}{'pid':>8}{'RSS MB':>9}{'peak MB':>9}"]
    lines += [f"{role:<42}{pid:>8}{rss:>9.0f}{peak:>9.0f}" for role, pid, rss, peak in memory]
    return "\n".join(lines)


async def drive(load: Load, args: argparse.Namespace) -> float:
    started = time.perf_counter()
    await asyncio.gather(
        *(load.webchat_client() for _ in range(args.webchat)),
        *(load.whatsapp_customer(i) for i in range(args.whatsapp)),
        *(load.caller(i) for i in range(args.calls)),
    )
    return time.perf_counter() - started


async def warm_up(url: str) -> None:
    """The first request builds the app's services (scenario, stores): pay for it before timing."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        _check(await http.get(f"{url}/api/ops/queue"), 200, "warm-up")
        _check(await http.post(f"{url}/api/webchat/sessions", json={}), 201, "warm-up")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/load.py", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument("--count", type=int, help="instead of a duration: operations per client, then stop")
    parser.add_argument("--webchat", type=int, default=4, help="concurrent web chat clients (default 4)")
    parser.add_argument("--whatsapp", type=int, default=2, help="concurrent WhatsApp customers (default 2)")
    parser.add_argument("--calls", type=int, default=2, help="concurrent callers (default 2)")
    parser.add_argument("--call-seconds", type=float, default=3.0, help="how long a caller stays on (default 3)")
    args = parser.parse_args(argv)

    null_port = free_port()
    try:
        with local_host(GATEWAY_PUBLIC_URL=f"ws://127.0.0.1:{null_port}", GATEWAY_PRELOAD_MODELS="false") as host:
            null = NullGateway(null_port, host.data_dir, host.url, host.data_dir.parent / "null-gateway.log")
            try:
                null.wait_ready()
                asyncio.run(warm_up(host.url))
                until = time.monotonic() + (args.duration if args.count is None else 24 * 3600)
                load = Load(host.url, host.acs_url, until, args.count, args.call_seconds)
                wall = asyncio.run(drive(load, args))
                port = int(host.url.rsplit(":", 1)[1])
                memory = [(role, pid, *memory_mb(pid)) for role, pid in stack_processes(port, null)]
            finally:
                null.stop()
    except HostFailed as exc:
        print(f"the stack did not start: {exc}", file=sys.stderr)
        return 2
    print(report(load.results, load.proof, wall, memory, args))
    return 1 if any(load.results.errors.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
