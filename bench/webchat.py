"""Web chat load benchmark: N concurrent customers, each holding a T-turn conversation.

Run it from the repository root:

    .venv/bin/python bench/webchat.py                        # starts a local host (offline policy) on a free port
    .venv/bin/python bench/webchat.py --clients 50 --turns 8
    .venv/bin/python bench/webchat.py --url http://127.0.0.1:7071   # an already running host (or a deployed app)

Without --url it starts `python -m local` itself, on a free port with a throwaway data dir and
SWITCHBOARD_POLICY=offline (so no language model is involved and the figures measure Switchboard itself: the HTTP
layer, routing, tools and the customer store), waits for /healthz, and stops it at the end. The host's log goes to
a file in the temporary directory; its tail is printed if the host fails.

After one warm-up conversation, each client creates a web chat session (POST /api/webchat/sessions), then sends T
messages one after another, waiting for each answer, from a realistic journey (a billing question, the account
number, the proof that it is theirs, a power outage, ...; it wraps around when T is longer). All clients start
together, each on its own connection like a browser tab. Every client names Jordan's account; the agent asks each
to prove it, and the client answers as bench/common.Proof does: the code sent to his phone, read from the local
host's ACS emulator (or the one --acs-url names), while the hour's few codes last, then his ZIP code and last name.

What it prints:

    clients      concurrent customers (each one session, one request at a time)
    turns        messages sent per client, and in total
    verified     the checks the agent made that the customers answered, and how many it confirmed
    errors       requests that failed: a non-2xx status, a transport error or a timeout (by kind)
    wall time    from the first session request to the last answer
    throughput   answered turns per second of wall time (session creations not counted)
    turn         latency of POST .../messages: p50, p95, p99 and max, in milliseconds (successful turns only)
    session      latency of POST /api/webchat/sessions, the same figures, reported apart because it does other work
                 (creating the customer record, issuing a token, the greeting)
    first        the one warm-up session created (and one turn sent) before timing starts; the first request builds
                 the app's services (scenario, stores), so it shows the cold-start cost and is kept out of the rest

Percentiles use the nearest-rank method. The exit status is 1 if any request failed, 2 if the host did not start.
The clients run in this process on the same machine as a local host and take CPU from it (about a third of what the
host uses); the local host is one Python process with one SQLite writer, so throughput there is a floor, not what
Azure Functions scales out to.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: `python bench/webchat.py`
from common import JOURNEY, HostFailed, Proof, local_host, percentile, tell  # noqa: E402




@dataclass
class Results:
    warmup_ms: float | None = None  # the first session creation of the run, on a cold host: not in session_ms
    session_ms: list[float] = field(default_factory=list)
    turn_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    turns_done: int = 0
    turns_planned: int = 0


def _error_kind(response: httpx.Response) -> str:
    try:
        detail = response.json().get("error", "")
    except (ValueError, AttributeError):
        detail = ""
    return f"HTTP {response.status_code}" + (f" ({detail[:60]})" if detail else "")


async def customer(client: httpx.AsyncClient, url: str, turns: int, results: Results, proof: Proof) -> None:
    """One customer: create a session, then say the journey's lines one after another, proving the account is
    theirs when the agent asks (bench/common.Proof)."""
    started = time.perf_counter()
    try:
        response = await client.post(f"{url}/api/webchat/sessions", json={})
    except httpx.HTTPError as exc:
        results.errors[f"session: {type(exc).__name__}"] += 1
        return
    if response.status_code != 201:
        results.errors[f"session: {_error_kind(response)}"] += 1
        return
    results.session_ms.append((time.perf_counter() - started) * 1000)
    session = response.json()
    messages = f"{url}/api/webchat/sessions/{session['session_id']}/messages"
    headers = {"Authorization": f"Bearer {session['token']}"}

    async def say(text: str) -> str:
        started = time.perf_counter()
        try:
            response = await client.post(messages, json={"text": text}, headers=headers)
        except httpx.HTTPError as exc:
            results.errors[f"turn: {type(exc).__name__}"] += 1
            return ""
        finally:
            results.turns_done += 1
        if response.status_code != 200:
            results.errors[f"turn: {_error_kind(response)}"] += 1
            return ""
        results.turn_ms.append((time.perf_counter() - started) * 1000)
        return " ".join(r["text"] for r in response.json()["replies"])

    await tell([JOURNEY[turn % len(JOURNEY)] for turn in range(turns)], say, proof, client)


async def warm_up(url: str, timeout: float, tls: ssl.SSLContext) -> float:
    """One session and one turn before timing: the first request pays for building the app's services."""
    async with httpx.AsyncClient(timeout=timeout, verify=tls) as client:
        started = time.perf_counter()
        response = await client.post(f"{url}/api/webchat/sessions", json={})
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 201:
            raise WarmUpFailed(f"POST /api/webchat/sessions answered {_error_kind(response)}")
        session = response.json()
        response = await client.post(
            f"{url}/api/webchat/sessions/{session['session_id']}/messages",
            json={"text": JOURNEY[0]},
            headers={"Authorization": f"Bearer {session['token']}"},
        )
        if response.status_code != 200:
            raise WarmUpFailed(f"POST .../messages answered {_error_kind(response)}")
    return elapsed


class WarmUpFailed(RuntimeError):
    pass


async def progress(results: Results, started: float, stream=sys.stderr) -> None:
    """A one-line status, rewritten in place, on a terminal only."""
    if not stream.isatty():
        return
    try:
        while True:
            elapsed = time.perf_counter() - started
            errors = sum(results.errors.values())
            stream.write(
                f"\r\033[K  {results.turns_done}/{results.turns_planned} turns, "
                f"{len(results.session_ms)} sessions, {errors} errors, {elapsed:.1f} s"
            )
            stream.flush()
            await asyncio.sleep(0.2)
    finally:
        stream.write("\r\033[K")
        stream.flush()


async def run(url: str, clients: int, turns: int, timeout: float, proof: Proof) -> tuple[Results, float]:
    """Every customer gets its own client and connection, like a browser tab.

    One shared httpx pool would measure httpx instead: its pool scans every connection on every request (O(n^2)),
    which at 100 customers costs the benchmark process more CPU than the host spends answering. The TLS context is
    shared because building one per client (loading the CA bundle) costs tens of milliseconds each.
    """
    results = Results(turns_planned=clients * turns)
    tls = ssl.create_default_context()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    results.warmup_ms = await warm_up(url, timeout, tls)
    sessions = [httpx.AsyncClient(timeout=timeout, limits=limits, verify=tls) for _ in range(clients)]
    try:
        started = time.perf_counter()
        ticker = asyncio.create_task(progress(results, started))
        try:
            await asyncio.gather(*(customer(client, url, turns, results, proof) for client in sessions))
        finally:
            wall = time.perf_counter() - started
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
    finally:
        await asyncio.gather(*(client.aclose() for client in sessions), return_exceptions=True)
    return results, wall


def _latency_line(label: str, values: list[float]) -> str:
    if not values:
        return f"{label:<12} (no successful requests)"
    figures = "  ".join(f"p{pct} {percentile(values, pct):8.1f}" for pct in (50, 95, 99))
    return f"{label:<12} {figures}  max {max(values):8.1f}   ms  (n={len(values)})"


def report(url: str, started_host: bool, clients: int, turns: int, results: Results, wall: float,
           proof: Proof) -> str:
    errors = sum(results.errors.values())
    lines = [
        "Switchboard web chat benchmark",
        f"{'url':<12} {url}" + ("  (local host, offline policy)" if started_host else ""),
        f"{'clients':<12} {clients}",
        f"{'turns':<12} {turns} per client, {clients * turns} in all",
        f"{'verified':<12} {proof.summary()}",
        f"{'errors':<12} {errors}",
    ]
    lines += [f"{'':<12}   {count} x {kind}" for kind, count in results.errors.most_common()]
    lines += [
        f"{'wall time':<12} {wall:.2f} s",
        f"{'throughput':<12} {len(results.turn_ms) / wall if wall else 0.0:.1f} turns/s",
        _latency_line("turn", results.turn_ms),
        _latency_line("session", results.session_ms),
    ]
    if results.warmup_ms is not None:
        lines.append(f"{'first':<12} {results.warmup_ms:.1f} ms: the warm-up session, before timing (cold services)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10, help="concurrent customers (default 10)")
    parser.add_argument(
        "--turns", type=int, default=len(JOURNEY), help=f"messages per customer (default {len(JOURNEY)})"
    )
    parser.add_argument("--url", help="base URL of a running host, e.g. http://127.0.0.1:7071 (default: start one)")
    parser.add_argument("--acs-url", help="with --url: its ACS emulator, where the codes it sends can be read "
                                          "(without it, only knowledge questions are answered)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before one request counts as failed")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.turns < 0:
        parser.error("--clients must be at least 1 and --turns at least 0")

    def measure(url: str, started_host: bool, acs_url: str | None) -> int:
        proof = Proof(acs_url)
        try:
            results, wall = asyncio.run(run(url, args.clients, args.turns, args.timeout, proof))
        except (WarmUpFailed, httpx.HTTPError) as exc:
            print(f"bench: the warm-up request failed, nothing measured: {exc}", file=sys.stderr)
            return 1
        print(report(url, started_host, args.clients, args.turns, results, wall, proof), flush=True)
        return 1 if results.errors else 0

    if args.url:
        return measure(args.url.rstrip("/"), started_host=False, acs_url=args.acs_url)
    print("starting the local host ...", file=sys.stderr, flush=True)
    try:
        with local_host() as host:
            return measure(host.url, started_host=True, acs_url=host.acs_url)
    except HostFailed as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
