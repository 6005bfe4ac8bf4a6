"""The VAD model in numpy, batched across calls, hears what faster-whisper's ONNX model hears.

The reference is the Silero ONNX file run by onnxruntime the way faster-whisper runs it (consecutive windows of one
stream, state carried row to row); the audio is piper speaking over line noise.
"""

from __future__ import annotations

import numpy as np
import pytest

from media_gateway.audio import FRAME_SECONDS, frame_bytes, pcm16_to_float
from media_gateway.frames import InputAudioFrame, UserStartedSpeakingFrame, UserStoppedSpeakingFrame
from media_gateway.metrics import CallMeter, GatewayStats
from media_gateway.silero import CONTEXT, HIDDEN, WINDOW, SileroBatch, SileroWeights, model_path
from media_gateway.vad import VadParams, VadProcessor
from tests.media_gateway.test_vad import Sink, silence


def onnx_probabilities(audio: np.ndarray) -> np.ndarray:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"], sess_options=options)
    windows = audio[: len(audio) // WINDOW * WINDOW].reshape(-1, WINDOW)
    contexts = np.concatenate([np.zeros((1, CONTEXT), np.float32), windows[:-1, -CONTEXT:]])
    rows = np.concatenate([contexts, windows], axis=1).astype(np.float32)
    state = np.zeros((1, 1, HIDDEN), np.float32)
    out, _, _ = session.run(None, {"input": rows, "h": state, "c": state})
    return np.asarray(out).reshape(-1)


def rows_of(audio: np.ndarray) -> np.ndarray:
    windows = audio[: len(audio) // WINDOW * WINDOW].reshape(-1, WINDOW)
    contexts = np.concatenate([np.zeros((1, CONTEXT), np.float32), windows[:-1, -CONTEXT:]])
    return np.concatenate([contexts, windows], axis=1).astype(np.float32)


def caller(speech, text: str, seed: int) -> np.ndarray:
    audio = np.concatenate([np.zeros(8000, np.float32), pcm16_to_float(speech(text)), np.zeros(8000, np.float32)])
    return audio + np.random.default_rng(seed).normal(0, 0.003, len(audio)).astype(np.float32)  # -50 dBFS line noise


def test_the_numpy_model_gives_the_onnx_models_probabilities_on_speech(speech) -> None:
    audio = caller(speech, "my account number is 100200300", seed=1)
    model = SileroBatch(SileroWeights.load())
    projected = model.encode(rows_of(audio))
    h = c = np.zeros((1, HIDDEN), np.float32)
    ours = []
    for row in projected:
        probability, h, c = model.step(row[None, :], h, c)
        ours.append(float(probability[0]))
    reference = onnx_probabilities(audio)
    assert np.abs(np.array(ours) - reference).max() < 1e-4
    assert reference.max() > 0.9 and reference.min() < 0.1  # it heard speech and silence: the check means something


def test_calls_batched_together_each_get_what_they_would_alone(speech) -> None:
    model = SileroBatch(SileroWeights.load())
    calls = [caller(speech, text, seed) for seed, text in enumerate(("what is my balance", "is there an outage",
                                                                     "thanks, that's all"))]
    length = min(len(a) for a in calls) // WINDOW
    rows = [rows_of(a)[:length] for a in calls]
    h = c = np.zeros((len(calls), HIDDEN), np.float32)
    together = []
    for step in range(length):  # every call's step-th window in one product
        probability, h, c = model.step(model.encode(np.stack([r[step] for r in rows])), h, c)
        together.append(probability)
    together = np.array(together).T
    for audio, batched in zip(calls, together):
        assert np.abs(batched - onnx_probabilities(audio)[:length]).max() < 1e-4


@pytest.mark.parametrize("rate", [16000, 24000])
async def test_calls_speaking_at_once_share_model_runs_and_each_hears_its_own_turns(
    offline_engines, speech, rate
) -> None:
    """Three calls fed frame by frame, interleaved as a gateway receives them: the model runs for several calls at
    once, and each call's turns are the ones its own caller spoke (one, two and one turn)."""
    lines = [silence(0.5, rate) + speech("what is my balance", rate) + silence(1.0, rate),
             silence(0.2, rate) + speech("my account", rate) + silence(1.2, rate) + speech("is 100200300", rate)
             + silence(1.0, rate),
             silence(1.5, rate) + speech("thanks, that's all", rate) + silence(1.0, rate)]
    batcher = offline_engines.vad.batcher(VadParams().floor_dbfs)
    runs_before, windows_before = batcher.runs, batcher.windows
    stages, sinks = [], []
    for _ in lines:
        vad, sink = VadProcessor(offline_engines.vad, offline_engines.vad_executor, rate,
                                 CallMeter(GatewayStats())), Sink()
        vad.link(sink)
        stages.append(vad)
        sinks.append(sink)
    size = frame_bytes(rate)
    for i in range(max(len(pcm) for pcm in lines) // size):
        for vad, pcm in zip(stages, lines):
            if (i + 1) * size <= len(pcm):
                frame = InputAudioFrame(pcm[i * size : (i + 1) * size], received_at=(i + 1) * FRAME_SECONDS)
                await vad.process_frame(frame)
    for vad in stages:
        await vad.flush()
    turns = [(len(s.of(UserStartedSpeakingFrame)), len(s.of(UserStoppedSpeakingFrame))) for s in sinks]
    assert turns == [(1, 1), (2, 2), (1, 1)]
    assert batcher.windows - windows_before > 3 * (batcher.runs - runs_before)  # runs were shared, not one a window
