"""A text-to-speech engine that hums: a soft tone as long as the text would take to say.

For benchmarks and tests that measure the gateway rather than a voice. It does the port's work honestly (audio of
a plausible length at the requested rate) and says what it is. It is cheap, as a stand-in for an engine that runs
elsewhere should be: one second of tone is made once per rate and repeated, a second at a time.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import numpy as np

from media_gateway.audio import float_to_pcm16
from media_gateway.tts.base import Tts

#: About how long a character takes to say at a conversational pace (~15 characters a second).
SECONDS_PER_CHAR = 0.065
FREQUENCY = 200.0  # a whole number of periods fits in a second, so seconds join without a click
LEVEL = 0.1


@functools.cache
def _second(sample_rate: int) -> bytes:
    t = np.arange(sample_rate) / sample_rate
    return float_to_pcm16(LEVEL * np.sin(2 * np.pi * FREQUENCY * t))


class ToneTts(Tts):
    name = "tone"

    async def _synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        second = _second(sample_rate)
        remaining = int(len(text) * SECONDS_PER_CHAR * sample_rate) * 2
        while remaining > 0:
            yield second[:remaining]
            remaining -= len(second)
