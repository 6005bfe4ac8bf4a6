"""Everything that moves through a call's pipeline is a frame.

Two kinds, as in Pipecat: a `SystemFrame` says something happened (the caller started or stopped speaking, an
interruption) and is handled at once; a `DataFrame` carries content in order (audio, text). Content that belongs to a
reply carries its `ReplyHandle`, so once the reply is interrupted every stage can drop what is left of it, wherever it
is in flight.

Times are `time.monotonic()` seconds, taken when the audio reached the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from media_gateway.reply import Clause, ReplyHandle


@dataclass(frozen=True, slots=True)
class Frame:
    pass


@dataclass(frozen=True, slots=True)
class SystemFrame(Frame):
    pass


@dataclass(frozen=True, slots=True)
class DataFrame(Frame):
    pass


# On the wire (see serializer.py) --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioMetadataFrame(SystemFrame):
    """ACS's first message: the format of every AudioData that follows."""

    sample_rate: int
    channels: int = 1
    encoding: str = "PCM"
    length: int | None = None  # bytes per 20 ms frame, when ACS says
    subscription_id: str = ""


@dataclass(frozen=True, slots=True)
class InputAudioFrame(DataFrame):
    """20 ms of the caller's audio: PCM16 little-endian mono at the call's rate."""

    pcm: bytes
    received_at: float
    silent: bool = False  # ACS marks frames it knows are silence
    participant: str | None = None  # unmixed audio only


@dataclass(frozen=True, slots=True)
class DtmfFrame(DataFrame):
    digits: str


@dataclass(frozen=True, slots=True)
class OutputAudioFrame(DataFrame):
    """Audio for the caller: PCM16 mono at the call's rate (serialized as AudioData)."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class InterruptionFrame(SystemFrame):
    """The caller talked over a reply: stop it everywhere. The serializer turns it into StopAudio."""

    onset_at: float = 0.0  # when the caller's speech began
    reply: ReplyHandle | None = None


# Inside the pipeline -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserStartedSpeakingFrame(SystemFrame):
    onset_at: float  # arrival of the first audio the detector counted as speech


@dataclass(frozen=True, slots=True)
class SpeechAudioFrame(DataFrame):
    """Caller audio around detected speech, 16 kHz PCM16: the only audio speech-to-text receives."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class UserStoppedSpeakingFrame(SystemFrame):
    speech_ended_at: float  # arrival of the last audio that was speech
    detected_at: float  # when the silence had lasted long enough to end the turn


@dataclass(frozen=True, slots=True)
class TranscriptionFrame(DataFrame):
    """What the caller said in one stretch of speech (may be empty: a cough, noise)."""

    text: str
    speech_ended_at: float
    end_of_turn_at: float
    transcribed_at: float
    failed: bool = False  # the engine failed (rather than hearing nothing)


@dataclass(frozen=True, slots=True)
class TextFrame(DataFrame):
    """A piece of reply text as the conversation core produces it."""

    text: str
    agent: str
    reply: ReplyHandle


@dataclass(frozen=True, slots=True)
class ReplyEndFrame(DataFrame):
    """No more text (after the TTS stage: no more audio) will come for this reply."""

    reply: ReplyHandle


@dataclass(frozen=True, slots=True)
class TtsAudioFrame(DataFrame):
    """Synthesized audio of one clause of a reply at the call's rate, a whole number of 20 ms frames."""

    pcm: bytes
    reply: ReplyHandle
    clause: Clause = field(repr=False)
