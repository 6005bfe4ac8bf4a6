"""PCM helpers: 16-bit <-> float conversions and a streaming resampler.

Calls run at 16 or 24 kHz, the VAD and Whisper want 16 kHz, and piper speaks at 22.05 kHz, so audio is resampled on
the way in (24 -> 16 kHz, frame by frame) and on the way out (22.05 -> the call's rate, clause by clause). The
resampler is a windowed-sinc polyphase filter: it band-limits before it decimates, so nothing above the new Nyquist
folds back into the speech band as the linear interpolation would let it.
"""

from __future__ import annotations

import math

import numpy as np

FRAME_SECONDS = 0.02


def frame_bytes(sample_rate: int) -> int:
    """Bytes in one 20 ms frame of 16-bit mono audio: 640 at 16 kHz, 960 at 24 kHz."""
    return int(sample_rate * FRAME_SECONDS) * 2


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def duration(pcm: bytes, sample_rate: int) -> float:
    return len(pcm) / 2 / sample_rate


def dbfs(audio: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-inf for digital silence)."""
    if not len(audio):
        return -math.inf
    energy = float(np.dot(audio, audio)) / len(audio)  # a dot product: ~50x cheaper than mean(square()) here
    return 10 * math.log10(energy) if energy > 0 else -math.inf


class Resampler:
    """Converts a stream of float32 mono audio from `src` to `dst` Hz, chunk by chunk, without edge artifacts.

    Output sample n sits at input position n * src / dst; it is the input around that position weighted by a
    Hann-windowed sinc whose cutoff is the lower of the two Nyquist frequencies (with a little margin).
    """

    def __init__(self, src: int, dst: int, half_width: int = 8) -> None:
        g = math.gcd(src, dst)
        self.up, self.down = dst // g, src // g
        self._cutoff = min(1.0, self.up / self.down) * 0.92
        self._half = math.ceil(half_width / self._cutoff)  # input samples on each side of an output
        offsets = np.arange(-self._half + 1, self._half + 1)
        phases = np.arange(self.up)[:, None] / self.up  # fractional position of an output between input samples
        t = phases - offsets[None, :]
        window = 0.5 + 0.5 * np.cos(np.pi * np.clip(t / (self._half + 1), -1, 1))
        self._table = (self._cutoff * np.sinc(self._cutoff * t) * window).astype(np.float32)
        self._offsets = offsets
        self._buffer = np.zeros(self._half, dtype=np.float32)  # zeros stand in for the audio before the start
        self._buffer_start = -self._half  # input index of _buffer[0]
        self._received = 0  # input samples so far
        self._produced = 0  # output samples so far

    def process(self, audio: np.ndarray) -> np.ndarray:
        self._buffer = np.concatenate([self._buffer, audio.astype(np.float32, copy=False)])
        self._received += len(audio)
        return self._run(self._received)

    def flush(self) -> np.ndarray:
        """The output still owed for the input so far (its tail needs the zeros after the end)."""
        self._buffer = np.concatenate([self._buffer, np.zeros(self._half, dtype=np.float32)])
        owed = math.ceil(self._received * self.up / self.down) - self._produced
        return self._run(self._received + self._half)[: max(0, owed)]

    def _run(self, available: int) -> np.ndarray:
        # Output n needs input up to floor(n * down / up) + half; `available` input samples exist.
        end = max(self._produced, math.ceil((available - self._half) * self.up / self.down))
        n = np.arange(self._produced, end)
        if not len(n):
            return np.zeros(0, dtype=np.float32)
        base = n * self.down // self.up
        phase = n * self.down % self.up
        index = base[:, None] + self._offsets[None, :] - self._buffer_start
        out = np.einsum("ij,ij->i", self._buffer[index], self._table[phase])
        self._produced = end
        keep_from = (end * self.down // self.up) - self._half + 1 - self._buffer_start
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._buffer_start += keep_from
        return out.astype(np.float32)


def resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    """All of `audio` from `src` to `dst` Hz."""
    if src == dst:
        return audio.astype(np.float32, copy=False)
    resampler = Resampler(src, dst)
    return np.concatenate([resampler.process(audio), resampler.flush()])
