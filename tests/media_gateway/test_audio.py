"""Resampling between the call rates, the VAD's 16 kHz and piper's 22.05 kHz."""

from __future__ import annotations

import numpy as np
import pytest

from media_gateway.audio import Resampler, frame_bytes, resample


def tone(hz: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate).astype(np.float32)


@pytest.mark.parametrize(("src", "dst"), [(22050, 16000), (22050, 24000), (24000, 16000), (16000, 24000)])
def test_a_tone_keeps_its_pitch_and_the_audio_its_length(src: int, dst: int) -> None:
    out = resample(tone(1000, src), src, dst)
    assert len(out) == dst
    expected = tone(1000, dst)
    assert np.abs(out[100:-100] - expected[100:-100]).max() < 0.01


def test_what_the_new_rate_cannot_carry_is_filtered_not_folded_back() -> None:
    aliased = resample(tone(10000, 24000), 24000, 16000)  # 10 kHz is above 16 kHz's Nyquist
    assert np.sqrt(np.mean(aliased[100:-100] ** 2)) < 0.01


def test_streaming_frame_by_frame_gives_the_same_audio() -> None:
    audio = tone(440, 24000) * np.linspace(0, 1, 24000, dtype=np.float32)
    resampler = Resampler(24000, 16000)
    streamed = np.concatenate([resampler.process(audio[i : i + 480]) for i in range(0, len(audio), 480)] + [resampler.flush()])
    assert np.allclose(streamed, resample(audio, 24000, 16000), atol=1e-6)


def test_a_frame_is_20_ms_of_16_bit_mono() -> None:
    assert frame_bytes(16000) == 640 and frame_bytes(24000) == 960


def residual_db(out: np.ndarray, hz: float, rate: int) -> float:
    """What is left after the best-fitting sine at `hz` (any phase) is taken out, relative to it: noise, ripple and
    clicks at frame edges all count."""
    t = np.arange(len(out)) / rate
    basis = np.stack([np.sin(2 * np.pi * hz * t), np.cos(2 * np.pi * hz * t)], axis=1)
    fit, *_ = np.linalg.lstsq(basis, out, rcond=None)
    signal = basis @ fit
    return 10 * np.log10(np.mean((out - signal) ** 2) / np.mean(signal**2))


@pytest.mark.parametrize(("src", "dst"), [(24000, 16000), (16000, 24000), (22050, 16000), (22050, 24000)])
def test_a_tone_streamed_in_20_ms_frames_comes_out_clean(src: int, dst: int) -> None:
    # A caller's voice goes through frame by frame: the filter's state must carry across frames, and a tone near the
    # top of the band (3.4 kHz, the old phone band's edge) must come out with nothing audible beside it.
    resampler = Resampler(src, dst)
    audio = 0.5 * tone(3400, src)
    out = np.concatenate([resampler.process(audio[i : i + src // 50]) for i in range(0, src, src // 50)])
    assert residual_db(out[len(out) // 5 : -len(out) // 5], 3400, dst) < -100


def test_the_vad_hears_no_echo_of_what_the_new_rate_cannot_carry() -> None:
    # 10 kHz at 24 kHz would fold back to 6 kHz at 16 kHz, into the band the VAD and Whisper listen to.
    resampler = Resampler(24000, 16000)
    audio = tone(10000, 24000)
    folded = np.concatenate([resampler.process(audio[i : i + 480]) for i in range(0, 24000, 480)])
    assert 10 * np.log10(np.mean(folded[1000:] ** 2) / np.mean(audio**2)) < -100
