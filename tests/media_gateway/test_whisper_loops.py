"""The Whisper fast path must not hand the conversation a transcript that repeats itself.

Greedy decoding with the scenario's vocabulary as prompt fell into loops on short questions: a caller who said
"what's my balance?" once was heard as "What's my balance? What's my balance? What's my balance? ... What's my"
(seen on calls through the gateway). The fast path now spots that and transcribes the utterance in full, as
faster-whisper's own transcription (with its temperature fallback) does.
"""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from media_gateway.audio import pcm16_to_float
from media_gateway.stt.whisper import WhisperStt, looping
from shared.scenario import load_scenario

#: A caller's "what's my balance?" (piper's voice) as the gateway handed it to Whisper on a local call, 16 kHz: the
#: fast path's greedy decode with the utilities vocabulary as prompt looped on exactly this audio.
RECORDED = Path(__file__).parent / "audio" / "whats_my_balance_as_the_gateway_heard_it.wav"
SHORT_QUESTIONS = ["what's my balance?", "what's my balance", "is my power back?", "when is my bill due?",
                   "how much do I owe?", "can I pay my bill?"]


@pytest.mark.parametrize("text, loops", [
    ("What's my balance? What's my balance? What's my balance? What's my balance? What's my", True),
    ("What's my balance? What's my balance?", True),
    ("What's my balance?", False),
    ("Hello? Hello?", False),  # a caller may say that: short sentences are left alone
    ("I want to pay. I want to pay my bill.", False),
    ("555 555 0100", False),
])
def test_a_transcript_that_is_one_sentence_over_and_over_is_a_loop(text: str, loops: bool) -> None:
    assert looping(text) is loops


async def test_the_recorded_question_that_looped_is_heard_once(offline_engines) -> None:
    whisper = offline_engines.stt
    assert isinstance(whisper, WhisperStt), type(whisper)
    with wave.open(str(RECORDED)) as recording:
        assert recording.getframerate() == 16000
        pcm = recording.readframes(recording.getnframes())
    stream = whisper.stream(load_scenario("utilities").voice.vocabulary)
    await stream.push(pcm)
    assert (await stream.finish()).lower().rstrip(".") == "what's my balance?"


async def test_short_questions_are_heard_once_with_the_scenarios_vocabulary(offline_engines, speech) -> None:
    whisper = offline_engines.stt
    assert isinstance(whisper, WhisperStt), type(whisper)
    vocabulary = load_scenario("utilities").voice.vocabulary
    for text in SHORT_QUESTIONS:
        for gain in (1.0, 3.0):  # and loud, as a caller close to the handset (the gateway heard 0.99 peaks)
            audio = pcm16_to_float(speech(text))
            stream = whisper.stream(vocabulary)
            await stream.push((audio * gain).clip(-1, 1).__mul__(32767).astype("<i2").tobytes())
            heard = await stream.finish()
            assert not looping(heard) and heard.lower().count("what's my") <= 1, (text, gain, heard)
