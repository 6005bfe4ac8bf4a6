"""Text-to-speech: the port (base.py) and its engines (piper offline, Azure AI Speech neural voices, a tone)."""

from media_gateway.tts.base import Tts, TtsError

__all__ = ["Tts", "TtsError"]
