"""The words half of the end-of-turn judge (media_gateway/endpoint.py): does a partial transcript read finished? With
the utilities scenario's numbers: nine-digit account numbers, ten-digit phone numbers, six-digit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from media_gateway.endpoint import number_shapes, unfinished
from shared.scenario import load_scenario

SHAPES = number_shapes(load_scenario(str(Path(__file__).resolve().parents[2] / "scenarios" / "utilities")))


@pytest.mark.parametrize("text", [
    "My account number is 100 200",  # two of an account number's three groups
    "My count number is 100, 200.",  # as Whisper writes it at the pause, full stop and all
    "8, 5, 6.",  # a code said digit by digit, half of it
    "my phone number is 555 555",
    "I'm calling about the",  # a connecting word
    "so um",
    "62701,",  # the recogniser heard the voice carry on (the last name comes next)
    "Sorry.",  # an opener alone: what they are sorry about comes next ("Sorry, ... I'm at 12 Lakeview Dr")
    "Well, actually",
    "Hold on.",
])
def test_words_that_stop_partway_are_unfinished(text: str) -> None:
    assert unfinished(text, SHAPES)


@pytest.mark.parametrize("text", [
    "What is my balance?",
    "My account number is 100200300.",
    "my phone number is 555 555 0100",
    "8, 5, 6, 9, 5, 6.",  # a whole code, digit by digit
    "856956",
    "yes",
    "No.",  # a whole answer, however short
    "Sorry?",  # asking us to say it again
    "Sorry, I'm at 12 Lakeview Drive",
    "I live at 12 Main Street",
    "",  # no words (an engine that gives no partial): the sound decides alone
])
def test_words_that_read_finished_are_not(text: str) -> None:
    assert not unfinished(text, SHAPES)
