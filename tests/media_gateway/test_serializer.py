"""The ACS media-streaming wire format, both ways (docs/protocols.md, "Media streaming")."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import aiohttp
import pytest

from media_gateway.frames import (
    AudioMetadataFrame,
    DtmfFrame,
    InputAudioFrame,
    InterruptionFrame,
    OutputAudioFrame,
    UserStartedSpeakingFrame,
)
from local.acs.media import CallAudio, MediaLeg
from media_gateway.serializer import AcsMediaSerializer, ProtocolError
from tests.media_gateway.conftest import RunningGateway

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


def test_audio_data_without_data_is_a_silent_frame_of_the_calls_format() -> None:
    # The docs give AudioData's data as nullable: a frame with none is 20 ms of silence at the call's rate.
    wire = AcsMediaSerializer()
    wire.deserialize(acs("AudioMetadata", {"encoding": "PCM", "sampleRate": 24000, "channels": 1}))
    for body in ({"timestamp": "2025-01-01T00:00:00.000Z", "data": None, "silent": True}, {"silent": False}):
        frame = wire.deserialize(acs("AudioData", body), received_at=3.0)
        assert frame == InputAudioFrame(pcm=bytes(960), received_at=3.0, silent=True, participant=None)


async def test_a_call_whose_emulated_acs_sends_silence_without_data_goes_on_through_the_gateway(
    gateway: RunningGateway, speech
) -> None:
    """The ACS emulator's own media leg (local/acs/media.py), here sending every other silent frame without data,
    against the real gateway: the caller hears the greeting, is answered, and the stream is never dropped."""
    call = await gateway.open_call()
    audio = CallAudio(sample_rate=16000)
    happened: list[str] = []

    async def listener(what: str, detail: object) -> None:
        happened.append(what)

    async with aiohttp.ClientSession() as http:
        leg = MediaLeg(http, call.url.replace("http://", "ws://"), audio, listener, subscription_id=call.call_id,
                       null_silence_every=2)
        assert await leg.start()
        greeting = await _heard(audio, since=0)
        audio.queue_caller_audio(speech("is there a power outage on my street?"))
        answer = await _heard(audio, since=greeting)
        state, null_frames = leg.state, audio.null_frames
        await leg.stop()

    assert greeting > 16000 and answer > greeting + 16000  # half a second and more of each
    assert state == "streaming" and "failed" not in happened, happened
    assert null_frames >= 20 and audio.bad_messages == 0
    assert gateway.ended == [] or all(call_id != call.call_id for call_id, _ in gateway.ended)


async def _heard(audio: CallAudio, since: int, timeout: float = 60.0) -> int:
    """Wait until the gateway has sent audio after byte `since` of what it sent, then been quiet for a second;
    returns how many bytes it has sent in all."""
    deadline = time.monotonic() + timeout
    last, quiet_since = len(audio.received), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if len(audio.received) != last:
            last, quiet_since = len(audio.received), time.monotonic()
        elif last > since and time.monotonic() - quiet_since > 1.0 and not audio.playout:
            return last
    raise AssertionError(f"the gateway sent no audio after byte {since} within {timeout:.0f} s")


def _recased(value: object, case) -> object:
    if isinstance(value, dict):
        return {case(key): _recased(item, case) for key, item in value.items()}
    return value


@pytest.mark.parametrize(
    "body",
    [
        {"data": base64.b64encode(PCM).decode(), "silent": False},
        {"timestamp": "2025-01-01T00:00:00.000Z", "participantRawID": "4:+15550001",
         "data": base64.b64encode(PCM).decode(), "silent": True},
        {"data": base64.b64encode(bytes(960)).decode()},
        {"data": None, "silent": True},
        {"data": base64.b64encode(PCM).decode(), "silent": False, "newField": 1},  # a key ACS may add one day
    ],
)
def test_audio_decodes_to_the_same_frame_however_its_keys_are_spelled(body: dict) -> None:
    """ACS's own spelling takes the short path, any other the general one: the frame is the same, and it is what the
    standard library's JSON and base64 make of the message."""
    message = {"kind": "AudioData", "audioData": body}
    frames = [serializer.deserialize(json.dumps(_recased(message, case)), received_at=7.0)
              for case in (str, str.lower, str.upper, lambda key: key[:1].upper() + key[1:])]
    assert frames[1:] == frames[:1] * 3
    data = body.get("data")
    expected_pcm = base64.b64decode(data, validate=True) if data is not None else bytes(serializer.frame_bytes)
    assert frames[0] == InputAudioFrame(pcm=expected_pcm, received_at=7.0, silent=body.get("silent") is True
                                        or data is None, participant=body.get("participantRawID"))


@pytest.mark.parametrize("data", ["***", "AA==", "A" * 80000, 5, ["AAAA"]])
def test_the_short_path_refuses_what_the_general_one_refuses(data: object) -> None:
    errors = []
    for key in ("audioData", "AudioData"):
        with pytest.raises(ProtocolError) as error:
            serializer.deserialize(json.dumps({"kind": "AudioData", key: {"data": data}}))
        errors.append((str(error.value), error.value.close_code))
    assert errors[0] == errors[1]
