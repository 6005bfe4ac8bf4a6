"""Recorded-style caller audio built from piper speech: where the speaker pauses between words, and the same words
with a longer pause put in one of those places (a caller stopping mid-sentence to read on, or to think).

Cut sentences with the `speech` fixture (conftest.py): piper without its sampling noise, so the same text
gives the same audio, pauses and all, every run, and a cut at the third pause is at the same word each time."""

from __future__ import annotations

import numpy as np

from media_gateway.audio import float_to_pcm16, pcm16_to_float

RATE = 16000


def word_gaps(pcm: bytes, rate: int = RATE, min_ms: float = 60.0, floor: float = 0.01) -> list[tuple[float, float]]:
    """(start, end) in seconds of each quiet stretch inside the speech (not before or after it)."""
    audio = pcm16_to_float(pcm)
    window = rate // 50
    level = np.sqrt(np.convolve(audio ** 2, np.ones(window) / window, mode="same"))
    loud = np.flatnonzero(level >= floor)
    quiet = level < floor
    gaps, start = [], None
    for index in range(int(loud[0]), int(loud[-1]) + 1):
        if quiet[index] and start is None:
            start = index
        elif not quiet[index] and start is not None:
            if index - start >= min_ms / 1000 * rate:
                gaps.append((start / rate, index / rate))
            start = None
    return gaps


def cut_at_gap(pcm: bytes, gap: int, rate: int = RATE) -> tuple[bytes, bytes]:
    """The speech up to the start of its `gap`-th word gap, and from the gap's end: the two halves of a sentence
    that a caller could have paused between."""
    start, end = word_gaps(pcm, rate)[gap]
    return pcm[: int(start * rate) * 2], pcm[int(end * rate) * 2:]


def silence(ms: float, rate: int = RATE) -> bytes:
    return float_to_pcm16(np.zeros(int(rate * ms / 1000), np.float32))

