"""Resampler benchmark: the gateway's former windowed-sinc polyphase filter against soxr, frame by frame.

Run it from the repository root:

    .venv/bin/python bench/resample.py              # 10 s of audio per pair, best of 5 runs
    .venv/bin/python bench/resample.py --seconds 30 --runs 9

The gateway resamples a call's audio as it streams, one 20 ms frame at a time (24 -> 16 kHz for the VAD and
Whisper, 16 <-> 24 kHz, 8 -> 16 kHz), and piper's 22.05 kHz speech to the call's rate. For each rate pair every
resampler gets the same audio in 20 ms frames, through one stream object each (state kept across frames), and the
benchmark prints (libswresample through PyAV too, for comparison):

    per frame   microseconds of CPU per 20 ms frame (best of the runs: the least disturbed by other processes)
    SNR         the worst signal-to-noise ratio over tones across the pass band (100 Hz up to 85% of the lower
                Nyquist frequency), each streamed frame by frame: the residual after the best-fitting sine at
                that frequency is taken out, so a click at a frame edge or ripple counts as noise, a delay does not
    alias       going down: what is left of a tone the new rate cannot carry (midway between the two Nyquist
                frequencies: it would fold into the speech band), relative to the tone; going up: the energy of the
                image above the input's Nyquist frequency, relative to the tone. Lower is better.
    lag         how far the audio handed out trails the audio fed, after each frame (mean / max): what the
                stream adds before the VAD hears a caller's frame

The polyphase filter is kept here, as it was in media_gateway/audio.py, so the comparison can be run again.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from media_gateway.audio import FRAME_SECONDS, Resampler  # noqa: E402

PAIRS = ((24000, 16000), (16000, 24000), (8000, 16000), (22050, 16000), (22050, 24000))


class Polyphase:
    """media_gateway/audio.py's resampler before soxr: a Hann-windowed sinc, evaluated per output sample."""

    def __init__(self, src: int, dst: int, half_width: int = 8) -> None:
        g = math.gcd(src, dst)
        self.up, self.down = dst // g, src // g
        cutoff = min(1.0, self.up / self.down) * 0.92
        self._half = math.ceil(half_width / cutoff)
        offsets = np.arange(-self._half + 1, self._half + 1)
        t = np.arange(self.up)[:, None] / self.up - offsets[None, :]
        window = 0.5 + 0.5 * np.cos(np.pi * np.clip(t / (self._half + 1), -1, 1))
        self._table = (cutoff * np.sinc(cutoff * t) * window).astype(np.float32)
        self._offsets = offsets
        self._buffer = np.zeros(self._half, dtype=np.float32)
        self._buffer_start = -self._half
        self._received = 0
        self._produced = 0

    def process(self, audio: np.ndarray) -> np.ndarray:
        self._buffer = np.concatenate([self._buffer, audio.astype(np.float32, copy=False)])
        self._received += len(audio)
        return self._run(self._received)

    def flush(self) -> np.ndarray:
        self._buffer = np.concatenate([self._buffer, np.zeros(self._half, dtype=np.float32)])
        owed = math.ceil(self._received * self.up / self.down) - self._produced
        return self._run(self._received + self._half)[: max(0, owed)]

    def _run(self, available: int) -> np.ndarray:
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


class Swresample:
    """libswresample through PyAV (faster-whisper's dependency), for comparison: it hands out each frame's audio at
    once, where soxr's stream hands it out in blocks."""

    def __init__(self, src: int, dst: int) -> None:
        import av

        self._src, self._pts = src, 0
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=dst)

    def process(self, audio: np.ndarray) -> np.ndarray:
        import av

        frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate, frame.pts = self._src, self._pts
        self._pts += len(audio)
        return self._joined(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        return self._joined(self._resampler.resample(None))

    @staticmethod
    def _joined(frames: list) -> np.ndarray:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]) if frames else np.zeros(0, np.float32)


Factory = Callable[[int, int], "Polyphase | Resampler | Swresample"]
CANDIDATES: dict[str, Factory] = {
    "polyphase (before)": Polyphase, "soxr HQ (now)": Resampler, "PyAV swresample": Swresample,
}


def tone(hz: float, rate: int, seconds: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def stream(make: Factory, audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    """`audio` through one resampler, 20 ms at a time, as the gateway feeds it."""
    resampler, step = make(src, dst), int(src * FRAME_SECONDS)
    parts = [resampler.process(audio[i : i + step]) for i in range(0, len(audio), step)]
    return np.concatenate([*parts, resampler.flush()])


def per_frame_us(make: Factory, src: int, dst: int, seconds: float, runs: int) -> float:
    audio = np.random.default_rng(1).uniform(-0.5, 0.5, int(src * seconds)).astype(np.float32)
    step = int(src * FRAME_SECONDS)
    frames = [audio[i : i + step] for i in range(0, len(audio), step)]
    best = math.inf
    for _ in range(runs):
        resampler = make(src, dst)
        started = time.process_time()
        for frame in frames:
            resampler.process(frame)
        best = min(best, (time.process_time() - started) / len(frames))
    return best * 1e6


def lag_ms(make: Factory, src: int, dst: int, seconds: float = 2.0) -> tuple[float, float]:
    """How far the output handed out lags the input fed, after each frame: mean and max in ms (after the first
    tenth of a second, which every filter needs to fill)."""
    resampler, step = make(src, dst), int(src * FRAME_SECONDS)
    fed = produced = 0
    lags = []
    for i in range(0, int(src * seconds), step):
        produced += len(resampler.process(np.zeros(step, dtype=np.float32)))
        fed += step
        if fed >= src // 10:
            lags.append((fed / src - produced / dst) * 1000)
    return float(np.mean(lags)), float(np.max(lags))


def snr_db(out: np.ndarray, hz: float, rate: int) -> float:
    """Signal over everything else, after the best-fitting sine at `hz` (any phase, so any delay) is removed."""
    middle = out[len(out) // 10 : -len(out) // 10]  # away from the stream's start and end
    t = (np.arange(len(middle)) + len(out) // 10) / rate
    basis = np.stack([np.sin(2 * np.pi * hz * t), np.cos(2 * np.pi * hz * t)], axis=1)
    fit, *_ = np.linalg.lstsq(basis, middle, rcond=None)
    signal = basis @ fit
    return 10 * math.log10(np.mean(signal**2) / max(np.mean((middle - signal) ** 2), 1e-20))


def worst_snr_db(make: Factory, src: int, dst: int) -> float:
    top = 0.85 * min(src, dst) / 2
    tones = [100.0, 440.0, 1000.0, 2500.0, top * 0.6, top]
    return min(snr_db(stream(make, tone(hz, src, 1.0), src, dst), hz, dst) for hz in tones)


def alias_db(make: Factory, src: int, dst: int) -> float:
    if dst < src:  # going down: a tone above the new Nyquist must be gone, not folded back
        hz = (src / 2 + dst / 2) / 2  # midway between the two Nyquist frequencies: it would fold into speech
        out = stream(make, tone(hz, src, 1.0), src, dst)
        middle = out[len(out) // 10 : -len(out) // 10]
        return 10 * math.log10(max(np.mean(middle**2), 1e-20) / 0.125)  # 0.125: the tone's power (0.5 amplitude)
    hz = 0.4 * src  # going up: the image of a tone high in the input band, above the input's Nyquist
    out = stream(make, tone(hz, src, 1.0), src, dst)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out)))) ** 2
    freqs = np.fft.rfftfreq(len(out), 1 / dst)
    return 10 * math.log10(max(spectrum[freqs > src / 2 + 200].sum(), 1e-20) / spectrum.sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per rate pair for the timing")
    parser.add_argument("--runs", type=int, default=5, help="timing runs per pair (the best is printed)")
    args = parser.parse_args()
    print(f"resampling 20 ms frames, {args.seconds:g} s of audio per pair, best of {args.runs} runs")
    print(f"  {'rates':<16}{'resampler':<22}{'per frame':>12}{'worst SNR':>12}{'alias':>10}{'lag mean/max':>18}")
    for src, dst in PAIRS:
        for name, make in CANDIDATES.items():
            cost = per_frame_us(make, src, dst, args.seconds, args.runs)
            mean_lag, max_lag = lag_ms(make, src, dst)
            print(f"  {f'{src} -> {dst}':<16}{name:<22}{cost:>9.1f} us{worst_snr_db(make, src, dst):>9.1f} dB"
                  f"{alias_db(make, src, dst):>7.1f} dB{mean_lag:>9.1f} /{max_lag:>5.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
