"""Soak: mixed web chat, WhatsApp and call traffic for a while, with duplicate deliveries and random SIGKILLs.

Run it from the repository root:

    .venv/bin/python bench/soak.py                                  # 10 minutes: 3 web chat, 2 WhatsApp, 1 caller
    .venv/bin/python bench/soak.py --duration 120 --seed 3 --restart-every 30
    .venv/bin/python bench/soak.py --no-restarts                    # the same traffic, nothing killed

What runs (one throwaway data dir, SQLite for customers and session state, shared by the processes):

    python -m local            the Functions host (its own media gateway beside it stays idle), on a fixed port,
                               with the OpenAI policy against the fake model below
    python -m media_gateway    --engines null (Silero VAD, a scripted recogniser, a tone for a voice, the offline
                               policy: bench/load.py's NullGateway), where the host answers calls to
                               (GATEWAY_PUBLIC_URL)
    the ACS emulator           in this process, not in the host's: ACS is a service that outlives our crashes, so its
                               outbox is the customers' phones across every restart, and its 24-hour window and
                               repeatability ids are kept (tests/reliability/test_crashes.py does the same)
    the model                  in this process too (bench/fake_llm.py): an OpenAI-compatible fake at the network
                               boundary, since no real model runs here. It answers after a random delay (up to
                               --llm-delay seconds) so that a burst's turns overlap, as they do with a real model (the
                               offline policy answers in milliseconds and never lets them), and each reply names the
                               message it answers, the customer message before it in the history it was sent, and
                               how many earlier ones that history held: "Noted [a1.17] after [a1.16] (16 earlier)."

Every customer message carries a tag ("[w2.5]": web chat customer 2, message 5) so that a reply says which message
it answers and what its turn saw.

Customers, concurrently until the duration is over (each waits for its answers, then thinks 0.5-3 s):

    web chat   opens a session and says a journey's lines (bench/common.JOURNEY), each message with an
               Idempotency-Key; one in five is sent twice at once (a double submit). A request that fails (no
               connection, 5xx, 429) is retried with the same key, backing off, for up to --patience seconds.
    WhatsApp   writes from its own number: the emulator builds the AdvancedMessageReceived event ("deliver": false)
               and the customer's side plays Event Grid, delivering it twice to whatsapp_events, at once or one
               after the other, each delivery retried with backoff until it gets a 2xx. It then waits for the
               replies in the emulator's outbox, and for the outbox to stay quiet for a second.
    bursts     now and then (--bursts of the time) a web chat or WhatsApp customer types 3-5 messages 50 ms apart
               without waiting for answers, as a person typing quickly does.
    the window now and then (--window-closes of a WhatsApp customer's turns) WhatsApp's 24-hour window is closed
               for the customer when they write (by the emulator's clock, not ours, as tests/whatsapp/
               test_duplicates.py sets it up): the answers are accepted, then fail (131047), so the app holds them
               and sends its template; some of the burst may come after the window reopened, so that a failed
               answer is resent at once. Each failure's status comes twice at once (Event Grid redelivering it),
               racing the resend it causes; their next message releases what was held, and goes with two more
               copies of each failed status since they last wrote, racing it. Now and then (--send-faults)
               the emulator also refuses the next send outright (503), so a handler fails and Event Grid redelivers.
    calls      a caller places a call through the emulator (the IncomingCall event redelivered with backoff while
               the host does not take it), waits for the greeting to finish, says "what is my balance" (piper
               speech, synthesized once here), waits for the reply audio (a demo holder's caller ID only
               identifies them: the reply asks for a code or their ZIP code and name) and hangs up. A call cut
               before the reply (the gateway killed under it, say) is dialled again, as a person would, until
               --patience runs out.

Meanwhile, unless --no-restarts, the host and the null gateway are each SIGKILLed at random moments (independently,
--restart-every seconds apart on average, from half to one and a half of it) and started again on the same ports and
data dir. The host's own gateway exits with it (it gets SIGTERM when its parent dies) and comes back with it.

After the duration, the turns under way finish (a WhatsApp customer with answers held for the window writes once
more), then the outboxes are given --grace seconds to settle and every web chat session's transcript is read back (a
customer reloading the page). What it counts, from what customers saw:

    turns sent       web chat messages, WhatsApp messages and callers' utterances (retries are not new turns)
    turns answered   a 200 with replies; a reply in the outbox; reply audio on the call
    duplicates       web chat: a message twice in the transcript, the same agent text twice after one message, or
                     the two halves of a double submit answered differently; WhatsApp: a message answered twice
                     (two replies naming it reached the phone: failed sends, which the phone never shows, excepted),
                     or two templates with no customer message between them
    lost turns       never answered within --patience; web chat: answered, but missing from the transcript;
                     WhatsApp: no reply naming the message ever reached the phone
    out of order     web chat: a message whose replies in the transcript (or in its POST's answer) are another
                     message's; two messages of one burst in the transcript, or answered on the phone's side (the
                     order the replies' histories show), in the opposite order to how they were sent. A pair whose
                     delivery was retried (the host was down, a send refused) is not counted: its messages arrived
                     out of order, and the service answers in arrival order
    stale turns      a turn that did not see the turn before it: web chat, a reply whose history ends on another
                     message than the one before it in the transcript; WhatsApp, two replies whose histories end on
                     the same message (one of the two turns ran without the other)
    restarts         SIGKILLs and restarts, per process
    memory           RSS (from /proc/<pid>/status) per process, at the start (its first incarnation) and at the end
                     (its last), and the highest peak (VmHWM) over its incarnations

The problems are listed (up to 20), each with the customer and the text. Exit status: 1 if any duplicate, lost,
out-of-order or stale turn, 2 if the stack did not start. The clients, the emulator and the model run in this
process, on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: `python bench/soak.py`
from common import (JOURNEY, PROJECT_ROOT, PROOF, HostFailed, free_port, memory_mb, spawn_local,  # noqa: E402
                    wait_local)
from fake_llm import NONE, TAG, FakeLlm, noted  # noqa: E402
from load import NullGateway  # noqa: E402

sys.path.insert(0, str(PROJECT_ROOT))
from local.acs.calls import CallsApi  # noqa: E402
from local.acs.events import EVENTGRID_WEBHOOK, event_grid_event  # noqa: E402
from local.acs.messages import (CHANNEL_ID, DELIVERY_STATUS, REENGAGEMENT, MessagesApi,  # noqa: E402
                                OutboxMessage)
from local.acs.server import AcsEmulator, EmulatorService  # noqa: E402
from local.project import SKIP_LOCAL_SETTINGS  # noqa: E402
from shared.settings import SETTINGS  # noqa: E402

POLL = 0.1
REQUEST_TIMEOUT = 30.0
BACKOFF = (0.25, 0.5, 1.0, 2.0, 4.0)  # then 4 s between attempts, until the customer's patience runs out
DOUBLE_SUBMIT = 0.2  # share of web chat messages sent twice at once
BURST_SIZES = (3, 5)  # a burst is 3 to 5 messages ...
BURST_GAP = 0.05  # ... 50 ms apart
DAY_AGO = timedelta(hours=25)  # a customer who last wrote this long ago is outside WhatsApp's 24-hour window
SPEECH = "what is my balance"
DEMO_PHONES = ("+15555550100", "+15555550111", "+15555550122")  # scenarios/utilities/data.yaml
DEAD_AIR = 15.0  # seconds a caller waits in silence (no greeting, no reply, no media) before hanging up
# The soak's model calls no tools, so no web chat or WhatsApp customer is ever asked to prove who they are: they say
# the journey without its proof.
LINES = tuple(line for line in JOURNEY if line != PROOF)
HOST, GATEWAY, NULL_GATEWAY, DRIVER = ("functions host", "its media gateway (idle)", "media gateway (null engines)",
                                       "this driver + ACS emulator")


# What customers saw ----------------------------------------------------------------------------------------------


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)  # channel -> turns
    answered: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    out_of_order: Counter[str] = field(default_factory=Counter)
    stale: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)  # "web chat requests", "Event Grid deliveries", ...
    problems: list[str] = field(default_factory=list)

    def duplicate(self, channel: str, what: str, count: int = 1) -> None:
        self.duplicates[channel] += count
        self.problems.append(f"duplicate  {channel}: {what}")

    def loss(self, channel: str, what: str) -> None:
        self.lost[channel] += 1
        self.problems.append(f"lost       {channel}: {what}")

    def disorder(self, channel: str, what: str) -> None:
        self.out_of_order[channel] += 1
        self.problems.append(f"order      {channel}: {what}")

    def staleness(self, channel: str, what: str, count: int = 1) -> None:
        self.stale[channel] += count
        self.problems.append(f"stale      {channel}: {what}")

    def failures(self) -> int:
        return sum(sum(c.values()) for c in (self.duplicates, self.lost, self.out_of_order, self.stale))


@dataclass
class Said:
    """One tagged customer message, in the order its customer sent it."""

    channel: str
    conversation: str  # the web chat session id, or the WhatsApp phone number
    tag: str  # "w2.5": web chat customer 2's fifth message ("a" for WhatsApp)
    text: str  # with the tag at its end
    burst: int  # the burst it was part of (a message sent alone is a burst of one)
    sent_at: float = 0.0  # when its first request went (monotonic)
    retried: bool = False  # a delivery of it was retried: it may have arrived after a message sent later


class GaveUp(Exception):
    """A customer's patience ran out; the message says what it last got."""


async def patiently(attempt: Callable[[], Awaitable[httpx.Response]], patience: float, tally: Tally,
                    kind: str, said: Said | None = None) -> httpx.Response:
    """Retry `attempt` as a client does while the service restarts: on no connection, 5xx, 408 or 429 (after its
    Retry-After), backing off, until `patience` seconds have passed. Any other answer is returned. A retry marks
    `said` as retried."""
    deadline = time.monotonic() + patience
    for tries in itertools.count():
        last = "no connection"
        try:
            response = await attempt()
            if response.status_code < 500 and response.status_code not in (408, 429):
                return response
            last = f"HTTP {response.status_code}"
            delay = _retry_after(response) or BACKOFF[min(tries, len(BACKOFF) - 1)]
        except httpx.TransportError:
            delay = BACKOFF[min(tries, len(BACKOFF) - 1)]
        if time.monotonic() + delay > deadline:
            raise GaveUp(f"{last} after {tries + 1} attempts")
        tally.retries[kind] += 1
        if said is not None:
            said.retried = True
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(float(response.headers["Retry-After"]), 10.0)
    except (KeyError, ValueError):
        return None


# The processes ---------------------------------------------------------------------------------------------------


@dataclass
class Incarnation:
    pid: int
    rss_start: float = 0.0
    rss_end: float = 0.0
    peak: float = 0.0

    def sample(self, at_start: bool) -> None:
        try:
            rss, peak = memory_mb(self.pid)
        except OSError:
            return
        if at_start:
            self.rss_start = rss
        self.rss_end, self.peak = rss, max(self.peak, peak)


class Stack:
    """The host and the null gateway on fixed ports over one data dir, each killable and restartable."""

    def __init__(self, workdir: Path, acs: EmulatorService, llm: FakeLlm, host_port: int, null_port: int) -> None:
        self.workdir, self.data_dir = workdir, workdir / "data"
        self.url, self.null_port = f"http://127.0.0.1:{host_port}", null_port
        self.gateway_port = str(free_port())
        inherited = {key: value for key, value in os.environ.items() if key not in SETTINGS}
        self.env = {
            **inherited, SKIP_LOCAL_SETTINGS: "1", "PORT": str(host_port), "GATEWAY_PORT": self.gateway_port,
            "GATEWAY_PUBLIC_URL": f"ws://127.0.0.1:{null_port}", "GATEWAY_PRELOAD_MODELS": "false",
            "ACS_ENDPOINT": acs.url, "ACS_ACCESS_KEY": acs.emulator.access_key, "WHATSAPP_CHANNEL_ID": CHANNEL_ID,
            "SWITCHBOARD_DATA_DIR": str(self.data_dir), "SESSION_STATE": "sqlite",
            "SWITCHBOARD_POLICY": "openai", "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "soak",
            "SWITCHBOARD_SUMMARY_SECONDS": "0", "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
        }
        self.host: subprocess.Popen[bytes] | None = None
        self.null: NullGateway | None = None
        self.incarnations: dict[str, list[Incarnation]] = defaultdict(list)
        self.restarts: Counter[str] = Counter()

    # host

    def start_host(self) -> None:
        """Start `python -m local`; a restart may find the old gateway's port still closing, so it tries again."""
        log_path = self.workdir / "host.log"
        for attempt in range(3):
            self.host = spawn_local(self.env, log_path)
            try:
                wait_local(self.host, self.url, self.gateway_port, log_path)
                break
            except HostFailed:
                self._kill_group(self.host)
                if attempt == 2:
                    raise
        self.incarnations[HOST].append(Incarnation(self.host.pid))
        if (child := _child_gateway(self.host.pid)) is not None:
            self.incarnations[GATEWAY].append(Incarnation(child))

    def kill_host(self) -> None:
        """SIGKILL the host alone, as a crash would; its gateway follows on its own (PDEATHSIG)."""
        assert self.host is not None
        self._sample_last(HOST, GATEWAY)
        self.host.kill()
        self.host.wait()
        self._wait_group_gone(self.host.pid)

    def _kill_group(self, process: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def _wait_group_gone(self, pgid: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # null gateway

    def start_null(self) -> None:
        n = len(self.incarnations[NULL_GATEWAY])
        self.null = NullGateway(self.null_port, self.data_dir, self.url, self.workdir / f"null-gateway-{n}.log")
        self.null.wait_ready()
        self.incarnations[NULL_GATEWAY].append(Incarnation(self.null.process.pid))

    def kill_null(self) -> None:
        assert self.null is not None
        self._sample_last(NULL_GATEWAY)
        self.null.process.kill()
        self.null.stop()  # reaps it and closes its log

    # both

    def restart(self, which: str) -> None:
        if which == HOST:
            self.kill_host()
            self.start_host()
        else:
            self.kill_null()
            self.start_null()
        self.restarts[which] += 1

    def sample(self, at_start: bool) -> None:
        for incarnations in self.incarnations.values():
            if incarnations:
                incarnations[-1].sample(at_start)

    def _sample_last(self, *names: str) -> None:
        for name in names:
            if self.incarnations[name]:
                self.incarnations[name][-1].sample(at_start=False)

    def stop(self) -> None:
        if self.null is not None:
            self.null.stop()
        if self.host is not None and self.host.poll() is None:
            try:
                os.killpg(self.host.pid, signal.SIGTERM)
                self.host.wait(15)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self._kill_group(self.host)


def _child_gateway(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    for child in map(int, children):
        try:
            if b"media_gateway" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:
            continue
    return None


# Customers -------------------------------------------------------------------------------------------------------


@dataclass
class WebSession:
    session_id: str
    token: str
    said: list[str] = field(default_factory=list)  # messages answered, in the order sent


class Soak:
    def __init__(self, stack: Stack, acs: EmulatorService, args: argparse.Namespace, rng: random.Random) -> None:
        self.stack, self.acs_url, self.args, self.rng = stack, acs.url, args, rng
        self.whatsapp: MessagesApi = acs.emulator.state["messages"]
        self.outbox: list[OutboxMessage] = self.whatsapp.outbox
        self.until = time.monotonic() + args.duration
        self.tally = Tally()
        self.web_sessions: list[WebSession] = []
        self.said: dict[str, list[Said]] = defaultdict(list)  # conversation -> its tagged messages, in order sent
        self.inbound_at: dict[str, list[int]] = defaultdict(list)  # phone -> its outbox length as each message went
        self.bursts = Counter[str]()  # channel -> bursts sent
        self.whatsapp_events = Counter[str]()  # "window closed", "failed statuses redelivered", "sends refused"
        self.calls = Counter[str]()  # placed, answered (connected), cut
        self.speech = b""
        self._burst_ids = itertools.count(1)
        self._numbers = Counter[str]()  # customer -> messages tagged

    def going(self) -> bool:
        return time.monotonic() < self.until

    async def think(self) -> None:
        await asyncio.sleep(self.rng.uniform(0.5, 3.0))

    def burst_size(self, channel: str) -> int:
        if self.rng.random() < self.args.bursts:
            self.bursts[channel] += 1
            return self.rng.randint(*BURST_SIZES)
        return 1

    def tagged(self, channel: str, conversation: str, customer: str, line: str, burst: int) -> Said:
        """The next message of `customer` ("w2"), tagged so that replies can name it."""
        self._numbers[customer] += 1
        tag = f"{customer}.{self._numbers[customer]}"
        said = Said(channel, conversation, tag, f"{line} [{tag}]", burst)
        self.said[conversation].append(said)
        return said

    async def run(self) -> None:
        await asyncio.gather(
            *(self.web_customer(i + 1, http) for i, http in enumerate(self._clients(self.args.web))),
            *(self.whatsapp_customer(i + 1, _phone(i, 701)) for i in range(self.args.whatsapp)),
            *(self.caller(_phone(self.args.whatsapp + i, 702)) for i in range(self.args.calls)),
            self.chaos(),
        )

    def _clients(self, n: int) -> list[httpx.AsyncClient]:
        return [httpx.AsyncClient(timeout=REQUEST_TIMEOUT) for _ in range(n)]  # each its own browser

    # chaos

    async def chaos(self) -> None:
        if self.args.no_restarts:
            return
        every = self.args.restart_every
        due = {HOST: self._next(every), NULL_GATEWAY: self._next(every)}
        while True:
            which = min(due, key=due.__getitem__)
            if due[which] >= self.until:
                return
            await asyncio.sleep(max(0.0, due[which] - time.monotonic()))
            await asyncio.to_thread(self.stack.restart, which)
            due[which] = self._next(every)

    def _next(self, every: float) -> float:
        return time.monotonic() + self.rng.uniform(0.5 * every, 1.5 * every)

    # web chat

    async def web_customer(self, number: int, http: httpx.AsyncClient) -> None:
        async with http:
            while self.going():
                try:
                    session = await self._web_session(http)
                except GaveUp as exc:
                    self.tally.problems.append(f"error      web chat: no session ({exc})")
                    await self.think()
                    continue
                self.web_sessions.append(session)
                lines = list(LINES)
                while lines and self.going():
                    size = self.burst_size("web chat")
                    burst, lines = lines[:size], lines[size:]
                    await self._web_burst(http, session, f"w{number}", burst)
                    await self.think()

    async def _web_session(self, http: httpx.AsyncClient) -> WebSession:
        response = await patiently(lambda: http.post(f"{self.stack.url}/api/webchat/sessions", json={}),
                                   self.args.patience, self.tally, "web chat requests")
        if response.status_code != 201:
            raise GaveUp(f"HTTP {response.status_code}")
        body = response.json()
        return WebSession(body["session_id"], body["token"])

    async def _web_burst(self, http: httpx.AsyncClient, session: WebSession, prefix: str, lines: list[str]) -> None:
        """Say `lines` BURST_GAP apart without waiting for answers (one line: an ordinary turn)."""
        burst = next(self._burst_ids)
        said = [self.tagged("web chat", session.session_id, prefix, line, burst) for line in lines]

        async def later(n: int) -> bool:
            await asyncio.sleep(n * BURST_GAP)
            return await self._web_turn(http, session, said[n])

        answered = await asyncio.gather(*(later(n) for n in range(len(said))))
        session.said += [s.text for s, ok in zip(said, answered) if ok]

    async def _web_turn(self, http: httpx.AsyncClient, session: WebSession, said: Said) -> bool:
        url = f"{self.stack.url}/api/webchat/sessions/{session.session_id}/messages"
        headers = {"Authorization": f"Bearer {session.token}", "Idempotency-Key": str(uuid.uuid4())}

        async def post() -> list[str] | str:
            try:
                response = await patiently(lambda: http.post(url, json={"text": said.text}, headers=headers),
                                           self.args.patience, self.tally, "web chat requests", said)
            except GaveUp as exc:
                return str(exc)
            if response.status_code != 200:
                return f"HTTP {response.status_code}: {response.text[:80]}"
            return [reply["text"] for reply in response.json()["replies"]]

        self.tally.sent["web chat"] += 1
        said.sent_at = time.monotonic()
        copies = 2 if self.rng.random() < DOUBLE_SUBMIT else 1
        answers = await asyncio.gather(*(post() for _ in range(copies)))
        replies = [a for a in answers if isinstance(a, list)]
        if not replies:
            self.tally.loss("web chat", f"{session.session_id} {said.text!r}: {answers[0]}")
            return False
        self.tally.answered["web chat"] += 1
        if any(r != replies[0] for r in replies):
            self.tally.duplicate("web chat", f"{session.session_id} {said.text!r}: a double submit answered {replies}")
        if crossed := [text for text in replies[0] if (note := noted(text)) and note.tag != said.tag]:
            self.tally.disorder("web chat", f"{session.session_id} {said.text!r} was answered {crossed[0]!r}")
        return True

    async def check_transcripts(self) -> None:
        """Read every session back as a reloaded page shows it: each message once, no agent text twice after it."""
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
            for session in self.web_sessions:
                try:
                    response = await patiently(
                        lambda: http.get(f"{self.stack.url}/api/webchat/sessions/{session.session_id}",
                                         headers={"Authorization": f"Bearer {session.token}"}),
                        self.args.patience, self.tally, "web chat requests")
                except GaveUp as exc:
                    self.tally.problems.append(f"error      web chat: transcript of {session.session_id}: {exc}")
                    continue
                if response.status_code != 200:
                    self.tally.problems.append(
                        f"error      web chat: transcript of {session.session_id}: HTTP {response.status_code}")
                    continue
                self._check_transcript(session, response.json()["turns"])

    def _check_transcript(self, session: WebSession, turns: list[dict[str, Any]]) -> None:
        said = Counter(t["text"] for t in turns if t["role"] == "customer")
        for line in session.said:
            if said[line] == 0:
                self.tally.loss("web chat", f"{session.session_id} {line!r} was answered but is not in the transcript")
            elif said[line] > 1:
                self.tally.duplicate("web chat", f"{session.session_id} {line!r} is {said[line]} times in the "
                                                 "transcript", said[line] - 1)
        grouped = _answers_by_message(turns)
        for customer_line, answers in grouped:
            if repeated := [text for text, n in Counter(answers).items() if n > 1]:
                self.tally.duplicate("web chat", f"{session.session_id} {customer_line!r} answered twice with "
                                                 f"{repeated[0][:60]!r}", len(answers) - len(set(answers)))
        self._check_turns_in_transcript(session.session_id, grouped)

    def _check_turns_in_transcript(self, session_id: str, grouped: list[tuple[str, list[str]]]) -> None:
        """Each message followed by its own replies, in the order sent, each turn having seen the one before it."""
        position: dict[str, int] = {}
        before = NONE
        for index, (line, answers) in enumerate(grouped):
            tag = _tag(line)
            notes = [note for text in answers if (note := noted(text))]
            if others := [note.tag for note in notes if note.tag != tag]:
                self.tally.disorder("web chat", f"{session_id} {line!r} is followed by the reply to [{others[0]}]")
            if (mine := [note for note in notes if note.tag == tag]) and mine[0].after != before:
                self.tally.staleness("web chat", f"{session_id} [{tag}] follows [{before}] in the transcript, but its "
                                                 f"turn saw [{mine[0].after}] last")
            position.setdefault(tag or "", index)
            before = tag or NONE
        self._check_order("web chat", self.said[session_id], position, "the transcript")

    def _check_order(self, channel: str, messages: list[Said], position: dict[str, int], where: str) -> None:
        """Count a message placed before one sent earlier in its burst. Only pairs sent at least half a burst's gap
        apart, neither retried, count: messages that left at once (the driver's loop held up) or retried may arrive
        in either order, and the service answers in arrival order."""
        for later_index, later in enumerate(messages):
            for earlier in messages[:later_index]:
                if (earlier.burst == later.burst and not earlier.retried and not later.retried
                        and later.sent_at - earlier.sent_at >= BURST_GAP / 2
                        and earlier.tag in position and later.tag in position
                        and position[later.tag] < position[earlier.tag]):
                    self.tally.disorder(channel, f"{later.conversation} [{later.tag}] comes before [{earlier.tag}] "
                                                 f"in {where}, though sent after it")
                    break

    # WhatsApp

    async def whatsapp_customer(self, number: int, phone: str) -> None:
        lines = itertools.cycle(LINES)
        closed = False
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
            while self.going():
                closed = self.rng.random() < self.args.window_closes
                burst = [next(lines) for _ in range(self.burst_size("WhatsApp"))]
                await self._whatsapp_burst(http, phone, f"a{number}", burst, closed)
                await self.think()
            if closed:  # answers are held for the window: the customer writes once more, which releases them
                await self._whatsapp_burst(http, phone, f"a{number}", [next(lines)], closed=False)

    async def _whatsapp_burst(self, http: httpx.AsyncClient, phone: str, prefix: str, lines: list[str],
                              closed: bool) -> None:
        """Write `lines` BURST_GAP apart. With `closed`, WhatsApp's window is closed for the customer when they write
        (the emulator last saw them a day ago) and stays so for the first of them, at least: their answers will fail;
        the rest, if any, reopen it."""
        burst = next(self._burst_ids)
        said = [self.tagged("WhatsApp", phone, prefix, line, burst) for line in lines]
        outside = self.rng.randint(1, len(said)) if closed else 0
        if closed:
            self.whatsapp_events["window closed"] += 1
            self.whatsapp.last_inbound[phone] = datetime.now(timezone.utc) - DAY_AGO
        if self.rng.random() < self.args.send_faults:
            self.whatsapp_events["sends refused"] += 1
            await http.post(f"{self.acs_url}/_emulator/messages/faults", json={"status": 503, "count": 1})
        statuses = self._failed_statuses_again(http, phone)

        async def later(n: int) -> None:
            await asyncio.sleep(n * BURST_GAP)
            await self._whatsapp_message(http, said[n], outside=n < outside)

        since = len(self._phone_outbox(phone))
        await asyncio.gather(*(later(n) for n in range(len(said))), *statuses)
        echoes: list[asyncio.Task[int]] = []
        deadline = time.monotonic() + self.args.patience
        while time.monotonic() < deadline and not self._all_replied(phone, said):
            echoes += self._echo_failures(http, phone, since, echoes)
            await asyncio.sleep(POLL)
        await self._quiet(phone, 1.0)
        await asyncio.gather(*echoes)

    async def _whatsapp_message(self, http: httpx.AsyncClient, said: Said, outside: bool) -> None:
        """The emulator builds the event (and opens the window unless `outside`); we deliver it twice."""
        body: dict[str, Any] = {"from": said.conversation, "text": said.text, "deliver": False}
        if outside:  # written, by the emulator's clock, a day ago: its window stays closed ...
            body["receivedTimestamp"] = (datetime.now(timezone.utc) - DAY_AGO).isoformat()
        built = await http.post(f"{self.acs_url}/_emulator/inbound", json=body)
        built.raise_for_status()
        event = built.json()["event"]
        if outside:  # ... while the event says now, so the app believes its window open
            event["data"]["receivedTimestamp"] = datetime.now(timezone.utc).isoformat()
        self.inbound_at[said.conversation].append(len(self._phone_outbox(said.conversation)))
        self.tally.sent["WhatsApp"] += 1
        said.sent_at = time.monotonic()
        if self.rng.random() < 0.5:  # Event Grid delivers it twice at once ...
            statuses = await asyncio.gather(self._deliver(http, event, said), self._deliver(http, event, said))
        else:  # ... or again after the first was taken
            statuses = [await self._deliver(http, event, said), await self._deliver(http, event, said)]
        if refused := [s for s in statuses if not 200 <= s < 300]:
            self.tally.problems.append(f"error      WhatsApp: {said.conversation} {said.text!r}: deliveries "
                                       f"answered {refused}")

    def _failed_statuses_again(self, http: httpx.AsyncClient, phone: str) -> list[Awaitable[int]]:
        """Two more `failed` statuses for each of the customer's texts that failed since they last wrote (Event
        Grid redelivering, beside their new message), as one burst of distinct events."""
        since = self.inbound_at[phone][-1] if self.inbound_at[phone] else 0
        failed = [m for m in self._phone_outbox(phone)[since:] if m.status == "failed" and m.kind == "text"]
        if failed:
            self.whatsapp_events["failed statuses redelivered"] += 2 * len(failed)
        return [self._post_events(http, [_failed_status(m)]) for m in failed for _ in range(2)]

    def _echo_failures(self, http: httpx.AsyncClient, phone: str, since: int, echoes: list[asyncio.Task[int]]
                       ) -> list[asyncio.Task[int]]:
        """As a text fails (from outbox index `since` on), a second copy of its `failed` status at once, racing the
        emulator's own: the resend it causes must go out once."""
        echoed = {task.get_name() for task in echoes}
        failed = [m for m in self._phone_outbox(phone)[since:]
                  if m.status == "failed" and m.kind == "text" and m.message_id not in echoed]
        self.whatsapp_events["failed statuses redelivered"] += len(failed)
        return [asyncio.create_task(self._post_events(http, [_failed_status(m)]), name=m.message_id) for m in failed]

    async def _post_events(self, http: httpx.AsyncClient, events: list[dict[str, Any]]) -> int:
        try:
            response = await patiently(
                lambda: http.post(self._webhook(), json=events, headers={"aeg-event-type": "Notification"}),
                self.args.patience, self.tally, "Event Grid deliveries")
        except GaveUp:
            return 0
        return response.status_code

    def _webhook(self) -> str:
        return f"{self.stack.url}{EVENTGRID_WEBHOOK}?functionName=whatsapp_events"

    async def _deliver(self, http: httpx.AsyncClient, event: dict[str, Any], said: Said) -> int:
        """One Event Grid delivery of `event`, redelivered with backoff until a 2xx (or a 4xx: dead-lettered)."""
        try:
            response = await patiently(
                lambda: http.post(self._webhook(), json=[event], headers={"aeg-event-type": "Notification"}),
                self.args.patience, self.tally, "Event Grid deliveries", said)
        except GaveUp:
            return 0
        return response.status_code

    def _phone_outbox(self, phone: str) -> list[OutboxMessage]:
        return [m for m in self.outbox if m.to == phone]

    def _all_replied(self, phone: str, said: list[Said]) -> bool:
        """Every message of the burst has a reply naming it in the outbox (failed for the window, maybe)."""
        named = {note.tag for m in self._phone_outbox(phone) if m.content and (note := noted(m.content))}
        return all(s.tag in named for s in said)

    async def _quiet(self, phone: str, seconds: float) -> None:
        count, since = len(self._phone_outbox(phone)), time.monotonic()
        while time.monotonic() - since < seconds:
            await asyncio.sleep(POLL)
            if (now := len(self._phone_outbox(phone))) != count:
                count, since = now, time.monotonic()

    def check_whatsapp(self) -> None:
        """From each phone's outbox: every message answered by exactly one reply the phone showed, no template twice
        without the customer writing in between, and the turns' histories one chain, in the order sent."""
        for conversation, messages in self.said.items():
            if messages and messages[0].channel == "WhatsApp":
                self._check_phone(conversation, messages)

    def _check_phone(self, phone: str, messages: list[Said]) -> None:
        outbox = self._phone_outbox(phone)
        shown = Counter(note.tag for m in outbox if m.status != "failed" and m.content and (note := noted(m.content)))
        for said in messages:
            if shown[said.tag] == 0:
                self.tally.loss("WhatsApp", f"{phone} {said.text!r}: no answer reached the phone")
                continue
            self.tally.answered["WhatsApp"] += 1
            if shown[said.tag] > 1:
                self.tally.duplicate("WhatsApp", f"{phone} {said.text!r} answered {shown[said.tag]} times",
                                     shown[said.tag] - 1)
        self._check_templates(phone, outbox)
        self._check_chain(phone, messages, outbox)

    def _check_templates(self, phone: str, outbox: list[OutboxMessage]) -> None:
        wrote = set(self.inbound_at[phone])
        since_wrote = 0
        for index, message in enumerate(outbox):
            if index in wrote:
                since_wrote = 0
            if message.kind == "template" and message.status != "failed":
                since_wrote += 1
                if since_wrote == 2:
                    self.tally.duplicate("WhatsApp", f"{phone}: a second template with no message in between")

    def _check_chain(self, phone: str, messages: list[Said], outbox: list[OutboxMessage]) -> None:
        """Each turn's history ends on the message before it: the histories form one chain. Two replies naming the
        same last message mean one of their turns missed the other (stale); the chain's order is the order the
        turns ran in, which must be the order sent."""
        after: dict[str, str] = {}
        for message in outbox:
            if message.content and (note := noted(message.content)):
                after.setdefault(note.tag, note.after)
        tags = {s.tag for s in messages}
        claimed: dict[str, list[str]] = defaultdict(list)
        for said in messages:
            if said.tag in after:
                claimed[after[said.tag]].append(said.tag)
        for last, claimants in claimed.items():
            if len(claimants) > 1:
                self.tally.staleness("WhatsApp", f"{phone}: the turns of {', '.join(f'[{t}]' for t in claimants)} all "
                                                 f"saw [{last}] last", len(claimants) - 1)
        self._check_order("WhatsApp", messages, _chain_positions(after, tags), "the order the turns ran")

    # calls

    async def caller(self, phone: str) -> None:
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
            while True:
                await asyncio.sleep(self.rng.uniform(2.0, 8.0))  # calls are a small share: they cost the most CPU
                if not self.going():
                    return
                self.tally.sent["calls"] += 1
                deadline = time.monotonic() + self.args.patience
                outcome = "not placed"
                while time.monotonic() < deadline:
                    outcome = await self._call(http, phone, deadline)
                    if outcome == "answered":
                        self.tally.answered["calls"] += 1
                        break
                    self.tally.retries["calls dialled again"] += 1
                    await asyncio.sleep(1.0)
                else:
                    self.tally.loss("calls", f"{phone} {SPEECH!r}: {outcome}")

    async def _call(self, http: httpx.AsyncClient, phone: str, deadline: float) -> str:
        """One call: placed, answered, the greeting heard out, one line said; 'answered' if reply audio came."""
        placed = await http.post(f"{self.acs_url}/_emulator/calls", json={"from": phone, "deliver": False})
        placed.raise_for_status()
        call_url = f"{self.acs_url}/_emulator/calls/{placed.json()['id']}"
        self.calls["placed"] += 1
        try:
            if not await self._incoming_call_taken(http, call_url, deadline):
                return "IncomingCall never taken"
            call = await self._until(http, call_url, lambda c: c["state"] != "ringing", deadline)
            if call["state"] != "connected":
                return f"call {call['state']}"
            self.calls["answered"] += 1
            call = await self._greeting_over(http, call_url)
            if _dead(call) or call["audio"]["played_ms"] == 0:
                self.calls["cut"] += 1
                return f"call {call['state']}, media {call['media']}, before the greeting was over"
            heard = call["audio"]["received_ms"]
            (await http.post(f"{call_url}/audio", content=self.speech)).raise_for_status()
            call = await self._until(http, call_url, lambda c: c["audio"]["received_ms"] > heard or _dead(c))
            if call["audio"]["received_ms"] > heard:
                return "answered"
            self.calls["cut"] += 1
            return f"call {call['state']}, media {call['media']}, before the reply"
        finally:
            await http.post(f"{call_url}/hangup")

    async def _incoming_call_taken(self, http: httpx.AsyncClient, call_url: str, deadline: float) -> bool:
        """Deliver the IncomingCall event until the host answers it 2xx, backing off as Event Grid does."""
        for tries in itertools.count():
            redelivered = (await http.post(f"{call_url}/redeliver", json={})).json()
            if 200 <= redelivered["status"] < 300:
                return True
            delay = BACKOFF[min(tries, len(BACKOFF) - 1)]
            if time.monotonic() + delay > deadline:
                return False
            self.tally.retries["Event Grid deliveries"] += 1
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _greeting_over(self, http: httpx.AsyncClient, call_url: str) -> dict[str, Any]:
        """The greeting has played out: audio came, then nothing more for a second (or the call went dead)."""
        call = await self._until(http, call_url, lambda c: c["audio"]["played_ms"] > 0 or _dead(c))
        quiet_since, received = time.monotonic(), call["audio"]["received_ms"]
        while not _dead(call) and time.monotonic() - quiet_since < 1.0:
            await asyncio.sleep(POLL)
            call = (await http.get(call_url)).json()
            if call["audio"]["received_ms"] != received or call["audio"]["queued_ms"] > 0:
                quiet_since, received = time.monotonic(), call["audio"]["received_ms"]
        return call

    async def _until(self, http: httpx.AsyncClient, call_url: str, done: Callable[[dict[str, Any]], bool],
                     deadline: float | None = None) -> dict[str, Any]:
        """Poll the call until `done`, or until `deadline` (default: DEAD_AIR from now, when a caller gives up)."""
        deadline = deadline or time.monotonic() + DEAD_AIR
        while True:
            call = (await http.get(call_url)).json()
            if done(call) or time.monotonic() > deadline:
                return call
            await asyncio.sleep(POLL)

    # the end

    async def settle(self) -> None:
        """Let late replies (a redelivery's duplicate, say) reach the outbox: quiet for 3 s, or --grace seconds."""
        deadline = time.monotonic() + self.args.grace
        count, since = len(self.outbox), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < 3.0:
            await asyncio.sleep(0.25)
            if len(self.outbox) != count:
                count, since = len(self.outbox), time.monotonic()


def _phone(index: int, prefix: int) -> str:
    """The demo account holders' numbers first (their records, balances and the web chat customers' account
    number: contention on real records), then numbers nobody knows."""
    return DEMO_PHONES[index] if index < len(DEMO_PHONES) else f"+1555{prefix}{index:04d}"


def _dead(call: dict[str, Any]) -> bool:
    """The caller can no longer hear the agent: the call is over, or its media stream failed or stopped."""
    return call["state"] != "connected" or call["media"] in ("failed", "stopped")


def _tag(line: str) -> str | None:
    return match[1] if (match := TAG.search(line)) else None


def _chain_positions(after: dict[str, str], tags: set[str]) -> dict[str, int]:
    """How many of `tags` precede each tag in its chain of `after` links (the turn whose history ended on it)."""
    positions: dict[str, int] = {}
    for start in after:
        path, tag = [], start
        while tag in tags and tag in after and tag not in positions and tag not in path:
            path.append(tag)
            tag = after[tag]
        base = positions.get(tag, -1) if tag in tags else -1
        for offset, walked in enumerate(reversed(path), start=1):
            positions[walked] = base + offset
    return {tag: position for tag, position in positions.items() if tag in tags}


def _failed_status(message: OutboxMessage) -> dict[str, Any]:
    """Another AdvancedMessageDeliveryStatusUpdated `failed` event for `message` (a distinct event id)."""
    phone = message.to.removeprefix("+")
    data = {"messageId": message.message_id, "status": "Failed", "channelType": "whatsapp", "from": CHANNEL_ID,
            "to": phone, "receivedTimestamp": datetime.now(timezone.utc).isoformat(), "error": dict(REENGAGEMENT)}
    return event_grid_event(DELIVERY_STATUS, f"advancedMessage/sender/{CHANNEL_ID}/recipient/{phone}", data)


def _answers_by_message(turns: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(customer message, the agent texts that follow it before the next one), in transcript order."""
    grouped: list[tuple[str, list[str]]] = []
    for turn in turns:
        if turn["role"] == "customer":
            grouped.append((turn["text"], []))
        elif grouped:
            grouped[-1][1].append(turn["text"])
    return grouped


def load_speech() -> bytes:
    """The caller's line, spoken by piper at the call's 16 kHz (bench/gateway.py's synthesis)."""
    from gateway import synthesize  # piper and onnxruntime: imported only when there are callers

    return synthesize((SPEECH,))[SPEECH]


# Report ----------------------------------------------------------------------------------------------------------


CHANNELS = ("web chat", "WhatsApp", "calls")


def report(soak: Soak, stack: Stack, llm: FakeLlm, wall: float) -> str:
    tally, args = soak.tally, soak.args

    def line(name: str, counts: Counter[str]) -> str:
        detail = ", ".join(f"{channel} {counts[channel]}" for channel in CHANNELS)
        return f"{name:<30}{sum(counts.values()):>7}   ({detail})"

    load = os.getloadavg()
    restarts = "none (--no-restarts)" if args.no_restarts else (
        f"host {stack.restarts[HOST]}, media gateway {stack.restarts[NULL_GATEWAY]} (SIGKILL, every ~"
        f"{args.restart_every:.0f} s each)")
    lines = [
        f"soak: {wall:.0f} s ({args.duration:.0f} s of traffic), seed {args.seed}; {args.web} web chat, "
        f"{args.whatsapp} WhatsApp, {args.calls} calling customers; {os.cpu_count()} cores, load average "
        f"{load[0]:.2f} {load[1]:.2f}",
        "",
        line("turns sent", tally.sent),
        line("turns answered", tally.answered),
        line("duplicates seen by customers", tally.duplicates),
        line("lost turns", tally.lost),
        line("out of order", tally.out_of_order),
        line("stale turns", tally.stale),
        f"{'bursts':<30}{sum(soak.bursts.values()):>7}   (web chat {soak.bursts['web chat']}, WhatsApp "
        f"{soak.bursts['WhatsApp']}; {BURST_SIZES[0]}-{BURST_SIZES[1]} messages {BURST_GAP * 1000:.0f} ms apart)",
        f"{'WhatsApp window closed':<30}{soak.whatsapp_events['window closed']:>7}   (then failed statuses "
        f"redelivered {soak.whatsapp_events['failed statuses redelivered']}; sends refused with 503 "
        f"{soak.whatsapp_events['sends refused']})",
        f"{'restarts':<30}{sum(stack.restarts.values()):>7}   ({restarts})",
        f"{'calls':<30}{soak.calls['placed']:>7}   (placed; {soak.calls['answered']} answered, "
        f"{soak.calls['cut']} cut before the reply)",
        f"{'client retries':<30}{sum(tally.retries.values()):>7}   "
        f"({', '.join(f'{kind} {n}' for kind, n in sorted(tally.retries.items())) or 'none'})",
        f"{'WhatsApp outbox':<30}{len(soak.outbox):>7}   (messages sent, "
        f"{sum(m.status == 'failed' for m in soak.outbox)} failed, "
        f"{sum(m.kind == 'template' and m.status != 'failed' for m in soak.outbox)} templates shown)",
        f"{'model requests':<30}{llm.requests:>7}   (the fake model, answering within {args.llm_delay:.2f} s)",
        "",
        f"{'process':<32}{'incarnations':>13}{'RSS start MB':>14}{'RSS end MB':>12}{'peak MB':>9}",
    ]
    for name in (HOST, GATEWAY, NULL_GATEWAY, DRIVER):
        if incarnations := stack.incarnations.get(name):
            first, last = incarnations[0], incarnations[-1]
            peak = max(i.peak for i in incarnations)
            lines.append(f"{name:<32}{len(incarnations):>13}{first.rss_start:>14.0f}{last.rss_end:>12.0f}{peak:>9.0f}")
    if tally.problems:
        lines += ["", f"problems ({len(tally.problems)}):"]
        lines += [f"  {problem}" for problem in tally.problems[:20]]
    return "\n".join(lines)


# Main ------------------------------------------------------------------------------------------------------------


async def soak(args: argparse.Namespace, workdir: Path) -> tuple[Soak, Stack, FakeLlm, float]:
    host_port = free_port()
    emulator = AcsEmulator(functions_url=f"http://127.0.0.1:{host_port}", modules=[MessagesApi(CHANNEL_ID), CallsApi()])
    acs = EmulatorService(emulator, free_port())
    llm = FakeLlm(args.llm_delay, args.seed)
    await acs.start()
    await llm.start()
    stack = Stack(workdir, acs, llm, host_port, free_port())
    try:
        await asyncio.to_thread(stack.start_host)
        await asyncio.to_thread(stack.start_null)
        stack.incarnations[DRIVER].append(Incarnation(os.getpid()))
        run = Soak(stack, acs, args, random.Random(args.seed))
        if args.calls:
            run.speech = await asyncio.to_thread(load_speech)
        await _warm_up(stack.url)
        stack.sample(at_start=True)
        started = time.monotonic()
        run.until = started + args.duration
        await run.run()
        await run.settle()
        run.check_whatsapp()
        await run.check_transcripts()
        stack.sample(at_start=False)
        return run, stack, llm, time.monotonic() - started
    finally:
        await asyncio.to_thread(stack.stop)
        await llm.stop()
        await acs.stop()


async def _warm_up(url: str) -> None:
    """The first request builds the app's services (scenario, stores, demo customers): before the clock starts."""
    async with httpx.AsyncClient(timeout=60) as http:
        (await http.get(f"{url}/api/ops/queue")).raise_for_status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/soak.py", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic (default 600)")
    parser.add_argument("--seed", type=int, default=7, help="for the customers' choices and the restarts (default 7)")
    parser.add_argument("--web", type=int, default=3, help="concurrent web chat customers (default 3)")
    parser.add_argument("--whatsapp", type=int, default=2, help="concurrent WhatsApp customers (default 2)")
    parser.add_argument("--calls", type=int, default=1, help="concurrent callers (default 1)")
    parser.add_argument("--restart-every", type=float, default=90.0,
                        help="mean seconds between SIGKILLs of the host, and apart of the gateway (default 90)")
    parser.add_argument("--no-restarts", action="store_true", help="kill nothing")
    parser.add_argument("--patience", type=float, default=90.0,
                        help="how long a customer keeps retrying one turn before it counts as lost (default 90)")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="at most this long for the outbox to settle after the traffic (default 30)")
    parser.add_argument("--bursts", type=float, default=0.25,
                        help="share of web chat and WhatsApp turns sent as a burst of 3-5 messages (default 0.25)")
    parser.add_argument("--window-closes", type=float, default=0.15,
                        help="share of WhatsApp turns written with WhatsApp's 24-hour window closed (default 0.15)")
    parser.add_argument("--send-faults", type=float, default=0.05,
                        help="share of WhatsApp turns before which the emulator refuses one send (default 0.05)")
    parser.add_argument("--llm-delay", type=float, default=0.4,
                        help="the fake model answers within this many seconds, at random (default 0.4)")
    parser.add_argument("--logs", type=Path, help="keep the data dir and the processes' logs in this folder")
    args = parser.parse_args(argv)

    print(f"soak: starting the stack, then {args.duration:.0f} s of traffic ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="switchboard-soak-") as tmp:
        workdir = args.logs or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        # The emulator's warnings (an IncomingCall the host did not take, ...) are expected here: to a file.
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                            filename=str(workdir / "acs-emulator.log"))
        try:
            run, stack, llm, wall = asyncio.run(soak(args, workdir))
        except HostFailed as exc:
            print(f"the stack did not start: {exc}", file=sys.stderr)
            return 2
    print(report(run, stack, llm, wall))
    return 1 if run.tally.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
