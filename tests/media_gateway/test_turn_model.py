"""The end-of-turn model (media_gateway/turn_model.py) on caller speech: a finished question is complete, the same
kind of sentence stopped in the middle is not, whatever the length of the pause (the model hears no pause at all:
it reads the audio up to where the caller stopped). The model is the real Smart Turn v3 file `make` fetches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from media_gateway.audio import pcm16_to_float
from media_gateway.endpoint import EndOfTurn, number_shapes
from media_gateway.turn_model import SmartTurnModel, log_mel
from shared.scenario import load_scenario
from tests.media_gateway.conftest import Speech
from tests.media_gateway.speaking import cut_at_gap, silence

FINISHED = ["What is my balance?", "Is there a power outage at my house?", "My account number is 100200300."]
# Sentences a caller could stop in the middle of, and the gap (between words) where they stop.
MID_SENTENCE = [("I'm calling about my bill, and also about the outage on my street.", 1),
                ("Could you tell me when the power will be back on my street?", 2),
                ("I want to pay my bill and then I need to move my service to a new address.", 1)]


@pytest.fixture(scope="module")
def model() -> SmartTurnModel:
    found = SmartTurnModel()
    assert found.available, f"the end-of-turn model is missing at {found.path}: run `make setup`"
    return found


def turn(*pieces: bytes) -> np.ndarray:
    return pcm16_to_float(silence(200) + b"".join(pieces) + silence(200))


@pytest.mark.parametrize("text", FINISHED)
def test_a_finished_question_or_answer_is_complete(model: SmartTurnModel, speech: Speech, text: str) -> None:
    assert model.complete(turn(speech(text))) >= 0.5


@pytest.mark.parametrize(("text", "gap"), MID_SENTENCE)
def test_a_caller_stopped_mid_sentence_is_not_finished(model: SmartTurnModel, speech: Speech, text: str,
                                                       gap: int) -> None:
    first_half, _ = cut_at_gap(speech(text), gap)
    assert model.complete(turn(first_half)) < 0.5
    assert model.complete(turn(speech(text))) >= 0.5, "the whole sentence is"


def test_the_model_reads_the_end_of_the_turn(model: SmartTurnModel, speech: Speech) -> None:
    # A turn longer than 8 s: only its end counts, so a finished question after a long unfinished stretch is complete,
    # and an unfinished end after a finished question is not.
    text, gap = MID_SENTENCE[0]
    unfinished, _ = cut_at_gap(speech(text), gap)
    long_before = speech(FINISHED[0]) + silence(9000)
    assert model.complete(turn(unfinished + silence(9000), speech(FINISHED[1]))) >= 0.5
    assert model.complete(turn(long_before, unfinished)) < 0.5


def test_the_features_are_whispers_shape_with_the_padding_at_the_floor(speech: Speech) -> None:
    audio = turn(speech(FINISHED[0]))
    features = log_mel(np.concatenate([np.zeros(16000 * 8 - len(audio), np.float32), audio]))
    assert features.shape == (80, 800) and features.dtype == np.float32
    assert not np.ptp(features[:, :100], axis=1).any(), "the zeros before a short turn are the same in every frame"
    assert features[:, -100:].max() > features[:, :100].max(), "the speech at the end stands above it"


async def test_the_judge_asks_the_model_only_when_the_words_read_finished(model: SmartTurnModel,
                                                                          speech: Speech) -> None:
    # Words that stop partway are the verdict on their own: the model, the judge's costly half, is not run. Words
    # that read finished leave it to the model, which still hears a sentence stopped in the middle.
    shapes = number_shapes(load_scenario(str(Path(__file__).resolve().parents[2] / "scenarios" / "utilities")))
    heard: list[np.ndarray] = []

    class Counted(SmartTurnModel):
        def complete(self, audio: np.ndarray) -> float:
            heard.append(audio)
            return model.complete(audio)

    with ThreadPoolExecutor(1) as executor:
        judge = EndOfTurn(Counted(model.path), executor, shapes)

        def said(text: str) -> Callable[[], Awaitable[str]]:
            async def transcript() -> str:
                return text
            return transcript

        first_half, _ = cut_at_gap(speech(MID_SENTENCE[0][0]), MID_SENTENCE[0][1])
        mid_number = await judge.judge(turn(first_half), said("My account number is 100 200"))
        assert not mid_number.finished and mid_number.probability is None and heard == []

        question = await judge.judge(turn(speech(FINISHED[0])), said(FINISHED[0]))
        assert question.finished and len(heard) == 1
        stopped = await judge.judge(turn(first_half), said("I'm calling about my bill"))
        assert not stopped.finished and stopped.probability is not None and stopped.probability < 0.5
