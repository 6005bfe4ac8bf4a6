"""The media gateway: the always-warm container that runs the live audio loop of a call.

ACS streams the caller's audio here over a WebSocket; a per-call pipeline (voice activity detection, speech-to-text,
the conversation core in shared/, text-to-speech, barge-in) answers in real time. It arrives with the voice issue;
the conversation core it will call is `shared.conversation.Conversation.turn(..., on_text=...)`, which already
streams reply text so speech can start before the reply is finished.
"""
