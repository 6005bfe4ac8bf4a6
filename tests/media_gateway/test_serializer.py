"""The ACS media-streaming wire format, both ways (PROTOCOLS.md B.4)."""

from __future__ import annotations

import base64
import json

import pytest

from media_gateway.frames import (
    AudioMetadataFrame,
    DtmfFrame,
    InputAudioFrame,
    InterruptionFrame,
    OutputAudioFrame,
    UserStartedSpeakingFrame,
)
from media_gateway.serializer import AcsMediaSerializer, ProtocolError

serializer = AcsMediaSerializer()
PCM = bytes(range(256)) * 2 + bytes(128)  # 640 bytes: 20 ms at 16 kHz


def acs(kind: str, body: dict) -> str:
    section = kind[0].lower() + kind[1:]
    return json.dumps({"kind": kind, section: body})


def test_audio_metadata_comes_in_as_the_call_format() -> None:
    frame = serializer.deserialize(acs("AudioMetadata", {
        "subscriptionId": "sub-1", "encoding": "PCM", "sampleRate": 24000, "channels": 1, "length": 960}))
    assert frame == AudioMetadataFrame(sample_rate=24000, channels=1, encoding="PCM", length=960, subscription_id="sub-1")


def test_audio_data_comes_in_as_pcm() -> None:
    frame = serializer.deserialize(acs("AudioData", {
        "timestamp": "2025-01-01T00:00:00.000Z", "participantRawID": "4:+15550001",
        "data": base64.b64encode(PCM).decode(), "silent": False}), received_at=12.5)
    assert frame == InputAudioFrame(pcm=PCM, received_at=12.5, silent=False, participant="4:+15550001")


def test_keys_are_matched_whatever_their_case() -> None:
    message = json.dumps({"Kind": "AudioData", "AudioData": {"Data": base64.b64encode(PCM).decode(), "Silent": True}})
    frame = serializer.deserialize(message)
    assert isinstance(frame, InputAudioFrame) and frame.pcm == PCM and frame.silent and frame.participant is None


def test_dtmf_comes_in_and_kinds_we_do_not_use_are_ignored() -> None:
    assert serializer.deserialize(acs("DtmfData", {"data": "5"})) == DtmfFrame("5")
    assert serializer.deserialize(acs("MarkData", {"id": "m1", "status": "completed"})) is None
    assert serializer.deserialize(json.dumps({"kind": "TranscriptionData", "transcriptionData": {}})) is None


def test_audio_goes_out_as_pascal_case_audio_data() -> None:
    message = json.loads(serializer.serialize(OutputAudioFrame(PCM)))
    assert message == {"Kind": "AudioData", "AudioData": {"Data": base64.b64encode(PCM).decode()}, "StopAudio": None}


def test_an_interruption_goes_out_as_stop_audio() -> None:
    assert json.loads(serializer.serialize(InterruptionFrame())) == {"Kind": "StopAudio", "AudioData": None, "StopAudio": {}}


def test_frames_that_stay_inside_the_gateway_are_not_serialized() -> None:
    assert serializer.serialize(UserStartedSpeakingFrame(onset_at=1.0)) is None


def test_what_goes_out_is_what_an_acs_parser_reads_back() -> None:
    sent = json.loads(serializer.serialize(OutputAudioFrame(PCM)))
    echoed = acs("AudioData", {"data": sent["AudioData"]["Data"]})  # ACS-style message carrying the same audio
    frame = serializer.deserialize(echoed)
    assert isinstance(frame, InputAudioFrame) and frame.pcm == PCM


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"audioData": {}}', "no kind"),
        ('{"kind": "AudioData"}', "audiodata is missing"),
        ('{"kind": "AudioData", "audioData": {"data": 5}}', "no data"),
        ('{"kind": "AudioData", "audioData": {"data": "***"}}', "not base64"),
        ('{"kind": "AudioData", "audioData": {"data": "AA=="}}', "odd number of bytes"),
        ('{"kind": "AudioData", "audioData": {"data": "' + "A" * 80000 + '"}}', "more than a second"),
        ('{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": 8000, "channels": 1}}', "16000 or 24000"),
        ('{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": 16000, "channels": 2}}', "mono"),
        ('{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": 16000, "encoding": "opus"}}', "PCM"),
        ('{"kind": "DtmfData", "dtmfData": {}}', "DtmfData has no data"),
    ],
)
def test_garbage_is_a_protocol_error_that_says_what_is_wrong(message: str, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem) as error:
        serializer.deserialize(message)
    assert error.value.close_code == 1007
