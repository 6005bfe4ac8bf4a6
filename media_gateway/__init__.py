"""The media gateway: the always-warm process that runs the live audio loop of every call.

ACS opens a WebSocket per call (server.py), speaking the media-streaming protocol (serializer.py). Each call
(call.py) runs a pipeline of stages, each a `FrameProcessor` (processor.py) passing frames (frames.py):

    vad.py         Silero VAD: the caller's turns, and only the audio around speech goes on
    transcribe.py  speech-to-text (stt/: faster-whisper offline, Azure AI Speech, a scripted one)
    agent.py       the conversation core in shared/ (`Conversation.turn` streams reply text); barge-in
    speak.py       TTS a clause at a time (splitter.py; tts/: piper offline, Azure neural voices, a tone)
    output.py      20 ms frames at real-time pace (pacing.py), an interruption as StopAudio

Each reply is a `ReplyHandle` (reply.py). Speech engines are chosen and loaded once per process (engines.py);
per-turn latencies go to the log and OpenTelemetry (metrics.py); ending a call goes through hooks.py.
Run it with `python -m media_gateway`.
"""
