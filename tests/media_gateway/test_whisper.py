"""The Whisper fast path (media_gateway/stt/whisper.py) against faster-whisper's own transcription.

The fast path reads WhisperModel attributes faster-whisper does not document; the lock pins the version. These tests
are what fails, by name, when an upgrade changes them: the fast path must still run, and read what the public
`WhisperModel.transcribe` reads.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from media_gateway.audio import pcm16_to_float
from media_gateway.stt.whisper import WhisperStt

LINES = ["there is no power on my street", "my account number is 100200300", "can we do this on WhatsApp instead",
         "I have a question about my bill"]


def words(text: str) -> str:
    text = re.sub(r"(\w)'s\b", r"\1 is", text.lower())  # "there's" and "there is" are the same words here
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text).split())


@pytest.fixture(scope="module")
def whisper(offline_engines) -> WhisperStt:
    stt = offline_engines.stt
    assert isinstance(stt, WhisperStt), type(stt)
    return stt


def test_the_fast_path_reads_what_faster_whispers_own_transcription_reads(whisper: WhisperStt, speech) -> None:
    model = whisper.model()
    for text in LINES:
        audio = pcm16_to_float(speech(text))
        try:
            fast = whisper._short(model, audio)  # noqa: SLF001 - the path under test
        except (AttributeError, TypeError, ValueError) as exc:
            import faster_whisper

            pytest.fail(f"the Whisper fast path no longer fits faster-whisper {faster_whisper.__version__} "
                        f"({type(exc).__name__}: {exc}): update media_gateway/stt/whisper.py or the lock")
        assert words(fast) == words(WhisperStt.full(model, audio)), text


def test_when_the_fast_path_breaks_transcripts_go_on_through_the_public_path(whisper: WhisperStt, speech,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A faster-whisper whose internals moved (simulated: the fast path raises as a missing attribute would)."""
    audio = pcm16_to_float(speech(LINES[0]))
    expected = whisper.transcribe(audio)

    def moved(model, audio: np.ndarray, prompt: str = "") -> str:
        raise AttributeError("'WhisperModel' object has no attribute 'hf_tokenizer'")

    monkeypatch.setattr(whisper, "_short", moved)
    monkeypatch.setattr(whisper, "fast_path", True)
    assert words(whisper.transcribe(audio)) == words(expected)
    assert whisper.fast_path is False and "fast path does not fit" in caplog.text
    assert words(whisper.transcribe(audio)) == words(expected)  # and from then on, without trying again


async def test_the_scenarios_vocabulary_makes_whisper_spell_its_streets(whisper: WhisperStt, speech) -> None:
    """Without it, Whisper tiny hears "Lakeview Drive" as "late you drive", and the caller's address is lost."""
    from shared.scenario import load_scenario

    vocabulary = load_scenario("utilities").voice.vocabulary
    said = speech("sorry, not Oak Street: I'm at 12 Lakeview Drive, Shelbyville")
    plain, biased = whisper.stream(), whisper.stream(vocabulary)
    for stream in (plain, biased):
        await stream.push(said)
    assert "lakeview drive" not in words(await plain.finish())  # what the test guards against
    assert "12 lakeview drive" in words(await biased.finish())
    quiet = whisper.stream(vocabulary)
    await quiet.push(bytes(32000))  # a second of silence: the prompt's words are not made up from nothing
    assert await quiet.finish() == ""
