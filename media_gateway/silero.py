"""Silero VAD in numpy, run for many calls at once: one matrix product per layer for every call's next window.

The model is the Silero VAD v6 that faster-whisper ships as ONNX (MIT-licensed): a short-time Fourier transform,
four small convolutions, one LSTM step and a sigmoid, on 512 samples at 16 kHz led by 64 samples of the window
before. onnxruntime runs it at ~55 us a window whatever the batch, because its convolutions loop over the batch;
here each layer is one product over every row, which costs ~20 us a row from about 30 rows on (docs/cost.md,
"Media gateway CPU"). The arithmetic is the model's own, so probabilities agree with onnxruntime's to ~1e-6
(tests/media_gateway/test_silero.py checks it on speech).

Rows are independent streams: `encode` runs the feed-forward part on any set of windows (several of one call's
included), `step` advances the recurrent state of one window per stream. The weights are read from the ONNX file
with the few lines of protobuf reading below, so the gateway needs no ONNX package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
WINDOW = 512  # samples a model step hears (32 ms)
CONTEXT = 64  # samples of the window before, prepended to each row
ROW = CONTEXT + WINDOW
HIDDEN = 128
_FFT = 256  # the transform's frame: 256 samples every 128, over the row padded by 128 on each side
_HOP = 128
_BINS = _FFT // 2 + 1


#: The Silero VAD file faster-whisper ships in its assets folder (its own VAD loads it by this name).
SILERO_FILE = "silero_vad_v6.onnx"


def model_path() -> Path:
    """The Silero VAD ONNX file inside the faster-whisper wheel, found through `faster_whisper.utils.get_assets_path`.

    The file's name is faster-whisper's choice, not an API: the lock pins the version, and a release that renames or
    drops it fails here by name (and tests/media_gateway/test_silero.py checks our arithmetic against the file)."""
    from faster_whisper.utils import get_assets_path

    path = Path(get_assets_path()) / SILERO_FILE
    if not path.is_file():
        from faster_whisper import __version__

        raise FileNotFoundError(f"faster-whisper {__version__} has no {SILERO_FILE} in {path.parent}: the VAD needs it "
                                "(requirements lock faster-whisper; see media_gateway/silero.py)")
    return path


@dataclass(frozen=True)
class SileroWeights:
    basis: np.ndarray  # (256, 258): the transform, real parts then imaginary
    convs: tuple[tuple[np.ndarray, np.ndarray, int], ...]  # (weights as (3 x in, out), bias, stride) per layer
    w_input: np.ndarray  # (128, 512) LSTM input weights, gates i, o, f, c
    w_hidden: np.ndarray  # (128, 512)
    b_gates: np.ndarray  # (512,)
    w_out: np.ndarray  # (128,)
    b_out: float

    @classmethod
    def load(cls, path: Path | None = None) -> SileroWeights:
        tensors = read_onnx_initializers((path or model_path()).read_bytes())
        try:
            def conv(index: int, stride: int) -> tuple[np.ndarray, np.ndarray, int]:
                w = tensors[f"encoder.conv_layers.{index}.weight"]  # (out, in, 3)
                return (np.ascontiguousarray(w.transpose(2, 1, 0).reshape(-1, w.shape[0])),
                        tensors[f"encoder.conv_layers.{index}.bias"], stride)

            bias = tensors["onnx::LSTM_211"][0]
            return cls(
                basis=np.ascontiguousarray(tensors["encoder.feature_extractor.forward_basis_buffer"][:, 0, :].T),
                convs=(conv(0, 1), conv(1, 2), conv(2, 2), conv(3, 1)),
                w_input=np.ascontiguousarray(tensors["onnx::LSTM_209"][0].T),
                w_hidden=np.ascontiguousarray(tensors["onnx::LSTM_210"][0].T),
                b_gates=(bias[: 4 * HIDDEN] + bias[4 * HIDDEN :]).astype(np.float32),
                w_out=np.ascontiguousarray(tensors["decoder.conv1d.weight"][0, :, 0]),
                b_out=float(tensors["decoder.conv1d.bias"][0]),
            )
        except KeyError as exc:
            raise RuntimeError(f"faster-whisper's Silero VAD file is not the v6 model this reads ({exc})") from None


class SileroBatch:
    """The model's arithmetic on a batch of rows. Stateless: callers keep each stream's (h, c)."""

    def __init__(self, weights: SileroWeights) -> None:
        self._w = weights

    def encode(self, rows: np.ndarray) -> np.ndarray:
        """Rows (n, 576) float32 in [-1, 1] -> the LSTM's input projection (n, 512), gate bias included."""
        n = len(rows)
        padded = np.pad(rows, ((0, 0), (_HOP, _HOP)), mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, _FFT, axis=1)[:, _HOP : _HOP * 5 : _HOP]
        spectrum = frames.reshape(n * 4, _FFT) @ self._w.basis
        real, imaginary = spectrum[:, :_BINS], spectrum[:, _BINS:]
        x = np.sqrt(real * real + imaginary * imaginary).reshape(n, 4, _BINS)  # (rows, time, channels)
        for weights, bias, stride in self._w.convs:
            x = _conv3(x, weights, bias, stride)
        return x[:, 0, :] @ self._w.w_input + self._w.b_gates

    def step(self, projected: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One LSTM step per row from its encoded window and state: (speech probability, h, c)."""
        gates = projected + h @ self._w.w_hidden
        i, o, f = (_sigmoid(gates[:, k * HIDDEN : (k + 1) * HIDDEN]) for k in range(3))
        c = f * c + i * np.tanh(gates[:, 3 * HIDDEN :])
        h = o * np.tanh(c)
        probability = _sigmoid(np.maximum(h, 0.0) @ self._w.w_out + self._w.b_out)
        return probability, h, c


def _conv3(x: np.ndarray, weights: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """A kernel-3, padding-1 convolution with ReLU on (rows, time, channels), as one product."""
    rows, time, channels = x.shape
    padded = np.zeros((rows, time + 2, channels), np.float32)
    padded[:, 1:-1] = x
    out_time = (time - 1) // stride + 1
    span = stride * (out_time - 1) + 1
    columns = np.concatenate([padded[:, k : k + span : stride] for k in range(3)], axis=2)
    y = columns.reshape(rows * out_time, 3 * channels) @ weights + bias
    return np.maximum(y, 0.0, out=y).reshape(rows, out_time, -1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# The ONNX file is a protobuf: ModelProto.graph (7) -> GraphProto.initializer (5) -> TensorProto with dims (1),
# data_type (2), name (8) and raw_data (9). Only float32 tensors stored raw are read; the rest are skipped.


def read_onnx_initializers(data: bytes) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for field, graph in _fields(data):
        if field != 7:
            continue
        for field, tensor in _fields(graph):
            if field == 5 and (parsed := _tensor(tensor)) is not None:
                tensors[parsed[0]] = parsed[1]
    return tensors


def _tensor(data: bytes) -> tuple[str, np.ndarray] | None:
    dims: list[int] = []
    name, raw, kind = "", b"", 0
    for field, value in _fields(data):
        if field == 1:
            dims.extend([value] if isinstance(value, int) else _packed_varints(value))
        elif field == 2:
            kind = value
        elif field == 8:
            name = value.decode()
        elif field == 9:
            raw = value
    if kind != 1 or len(raw) != 4 * math.prod(dims):  # 1: FLOAT
        return None
    return name, np.frombuffer(raw, "<f4").reshape(dims).copy()


def _fields(data: bytes):
    """(field number, value) of each field: an int for varints, bytes for length-delimited; fixed widths skipped."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
            yield field, value
        elif wire == 2:
            length, position = _varint(data, position)
            yield field, data[position : position + length]
            position += length
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def _packed_varints(data: bytes) -> list[int]:
    values, position = [], 0
    while position < len(data):
        value, position = _varint(data, position)
        values.append(value)
    return values
