"""The ACS media-streaming wire format (docs/protocols.md, "Media streaming"), in one place:
JSON text messages <-> frames.

In: `AudioMetadata` then `AudioData` every 20 ms (camelCase; keys are matched case-insensitively, as the service
appears to treat them), plus `DtmfData`, a key the caller pressed (the call was answered with DTMF tones on). Kinds
we do not use (`MarkData`, transcription) are ignored, not errors, so a newer service does not break calls.
An `AudioData` whose `data` is null or missing (the field is documented as nullable) is 20 ms of silence, not an
error. Anything malformed raises `ProtocolError`, which drops the call.

Out: `AudioData` and `StopAudio`, PascalCase as the official samples and the .NET `OutStreamingData` send them. An
`InterruptionFrame` becomes `StopAudio`, which flushes the audio ACS has queued for the caller.

Every call gets 50 AudioData a second, so their path is kept short: orjson parses, and a message spelled the way
ACS spells it (`kind`/`audioData`/`data`, keys tests/media_gateway/test_serializer.py lists) is read without
lower-casing every key; any other spelling takes the general path, with the same checks and the same frame.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

import orjson

from media_gateway.frames import (
    AudioMetadataFrame,
    DtmfFrame,
    Frame,
    InputAudioFrame,
    InterruptionFrame,
    OutputAudioFrame,
)

SAMPLE_RATES = (16000, 24000)
#: No AudioData needs more than a second of audio (ACS sends 20 ms); larger is garbage or abuse.
MAX_AUDIO_BYTES = 24000 * 2
#: ACS sends one key per DtmfData (docs/security.md, "Verifying customers"); a few together are taken, more is abuse.
MAX_KEYS = 16
#: Pre-encoded: StopAudio is always the same message.
STOP_AUDIO = json.dumps({"Kind": "StopAudio", "AudioData": None, "StopAudio": {}})
_AUDIO_PREFIX = '{"Kind": "AudioData", "AudioData": {"Data": "'
_AUDIO_SUFFIX = '"}, "StopAudio": null}'
#: The keys of an AudioData as ACS spells them: a message with only these takes the fast path.
_ACS_MESSAGE_KEYS = frozenset({"kind", "audioData"})
_ACS_AUDIO_KEYS = frozenset({"data", "silent", "timestamp", "participantRawID"})


class ProtocolError(Exception):
    """The peer broke the media-streaming protocol; the call is dropped with `close_code`."""

    def __init__(self, message: str, close_code: int = 1007) -> None:  # 1007: invalid frame payload data
        super().__init__(message)
        self.close_code = close_code


class AcsMediaSerializer:
    #: One 20 ms frame at the call's format (AudioMetadata sets it): what an AudioData without data stands for.
    frame_bytes = 640

    def deserialize(self, message: str | bytes, received_at: float | None = None) -> Frame | None:
        """The frame in one text message, or None for a kind we do not use."""
        try:
            data = orjson.loads(message)
        except orjson.JSONDecodeError:  # nesting past orjson's limit (1024) lands here too, not in a RecursionError
            raise ProtocolError("message is not JSON") from None
        if not isinstance(data, dict):
            raise ProtocolError("message is not a JSON object")
        if data.get("kind") == "AudioData" and data.keys() <= _ACS_MESSAGE_KEYS:
            audio = data.get("audioData")
            if isinstance(audio, dict) and audio.keys() <= _ACS_AUDIO_KEYS:
                return self._audio(audio.get("data"), audio.get("silent"), audio.get("participantRawID"),
                                   time.monotonic() if received_at is None else received_at)
        fields = _lower_keys(data)
        kind = fields.get("kind")
        if not isinstance(kind, str):
            raise ProtocolError("message has no kind")
        match kind.lower():
            case "audiometadata":
                metadata = _metadata(_section(fields, "audiometadata"))
                self.frame_bytes = metadata.sample_rate // 50 * 2  # ACS sends 20 ms a frame
                return metadata
            case "audiodata":
                audio = _section(fields, "audiodata")
                return self._audio(audio.get("data"), audio.get("silent"), audio.get("participantrawid"),
                                   time.monotonic() if received_at is None else received_at)
            case "dtmfdata":
                digits = _section(fields, "dtmfdata").get("data")
                if not isinstance(digits, str):
                    raise ProtocolError("DtmfData has no data")
                if len(digits) > MAX_KEYS:
                    raise ProtocolError("DtmfData carries more keys than a phone sends at once")
                return DtmfFrame(digits)
            case _:
                return None

    def _audio(self, encoded: Any, silent: Any, participant: Any, received_at: float) -> InputAudioFrame:
        if encoded is None:  # nullable in the docs: a frame that carries no audio is silence
            return InputAudioFrame(bytes(self.frame_bytes), received_at, True, _participant(participant))
        if not isinstance(encoded, str):
            raise ProtocolError("AudioData has no data")
        if len(encoded) > MAX_AUDIO_BYTES * 4 // 3 + 4:
            raise ProtocolError("AudioData carries more than a second of audio")
        try:
            pcm = binascii.a2b_base64(encoded, strict_mode=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("AudioData data is not base64") from None
        if len(pcm) % 2:
            raise ProtocolError("AudioData is not 16-bit PCM (odd number of bytes)")
        return InputAudioFrame(pcm, received_at, silent is True, _participant(participant))

    def serialize(self, frame: Frame) -> str | None:
        """The message for a frame the caller's side must get, or None for frames that stay inside the gateway."""
        if isinstance(frame, OutputAudioFrame):
            return _AUDIO_PREFIX + base64.b64encode(frame.pcm).decode("ascii") + _AUDIO_SUFFIX
        if isinstance(frame, InterruptionFrame):
            return STOP_AUDIO
        return None


def _lower_keys(data: dict[str, Any]) -> dict[str, Any]:
    return {str(key).lower(): value for key, value in data.items()}


def _section(fields: dict[str, Any], name: str) -> dict[str, Any]:
    section = fields.get(name)
    if not isinstance(section, dict):
        raise ProtocolError(f"{name} is missing or not an object")
    return _lower_keys(section)


def _metadata(fields: dict[str, Any]) -> AudioMetadataFrame:
    rate, channels = fields.get("samplerate"), fields.get("channels", 1)
    encoding, length = fields.get("encoding", "PCM"), fields.get("length")
    if rate not in SAMPLE_RATES:
        raise ProtocolError(f"AudioMetadata sampleRate must be 16000 or 24000, not {rate!r}")
    if channels != 1:
        raise ProtocolError(f"AudioMetadata channels must be 1 (mono), not {channels!r}")
    if not isinstance(encoding, str) or encoding.upper() != "PCM":
        raise ProtocolError(f"AudioMetadata encoding must be PCM, not {encoding!r}")
    if length is not None and not isinstance(length, int):
        raise ProtocolError(f"AudioMetadata length must be a number, not {length!r}")
    return AudioMetadataFrame(rate, channels, "PCM", length, str(fields.get("subscriptionid") or ""))


def _participant(value: Any) -> str | None:
    return value if isinstance(value, str) else None
