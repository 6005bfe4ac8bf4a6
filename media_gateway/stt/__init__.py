"""Speech-to-text: the port (base.py) and its engines (faster-whisper offline, Azure AI Speech, a scripted one)."""

from media_gateway.stt.base import STT_SAMPLE_RATE, Stt, SttError, SttStream, normalize_transcript

__all__ = ["STT_SAMPLE_RATE", "Stt", "SttError", "SttStream", "normalize_transcript"]
