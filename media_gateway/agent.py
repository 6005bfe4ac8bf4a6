"""The agent stage: the conversation core (shared/conversation.py) on each caller turn, and barge-in.

It speaks the session's greeting first, then answers each caller turn with `Conversation.turn`, streaming the reply
text downstream as the core produces it. Each reply is a `ReplyHandle`; when the caller starts speaking over one,
the handle is interrupted and an `InterruptionFrame` goes down the pipeline (TTS stops, the output sends StopAudio),
and once the turn is saved the transcript is cut back to what the caller heard.

A caller who pauses mid-sentence and carries on makes two stretches of speech: while they are still talking (or a
transcript is still coming), the stretches are joined into one turn rather than answered one by one.

Keys the caller presses (`DtmfFrame`) stop the reply they are hearing, as talking over it does, and a finished entry
(keypad.py: a whole code while the conversation waits on one, or anything ended with `#`) is their turn, as if they
had said it: a caller may key the code they were sent rather than read it out.

A turn that escalated the caller to a free person (`TurnOutcome.escalation` CONNECTING) is put through once its reply
has played (`CallHooks.transfer`). While the caller is the desk's, the stage follows their escalation between turns:
when a person claims them from the queue they hear who they are being put through to, and when the person does not
take the call (the escalation is back in the queue) they hear so and stay with the AI, keeping their place in line.

A turn that recorded a promise ("we'll text you when it's restored", `TurnOutcome.promised`) has its notification
started once its reply has played: this process has no Durable client, so a task of its own asks the function app
(POST /api/notifications/start, shared/notifications.py `request_start`), and the caller waits on none of it.

A caller who says nothing once the agent has had its say hears the scenario's reprompt after its silence time, and
after a second silence its goodbye, and the call ends as abandoned (silence.py has the timer's rules: it counts only
while the line waits on the caller, not while they wait in the desk queue or a turn is running).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from media_gateway.frames import (
    DtmfFrame,
    Frame,
    InterruptionFrame,
    ReplyEndFrame,
    TextFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from media_gateway.hooks import ABANDONED, VOICEMAIL, CallHooks, CallRef
from media_gateway.keypad import Keypad, keys_in
from media_gateway.metrics import GatewayStats, TurnMetrics
from media_gateway.processor import FrameProcessor, OnFailure
from media_gateway.reply import ReplyHandle
from media_gateway.silence import Silence, SilenceTimer
from media_gateway.voicemail import MACHINE, MESSAGE, Screen
from shared import telemetry
from shared.conversation import DESK_PHRASES, Conversation, OnText, TurnOutcome
from shared.errors import NotFound, SessionClosed, SwitchboardError
from shared.models import ChannelSession, Escalation, EscalationStatus, SessionStatus
from shared.notifications import request_start

log = logging.getLogger(__name__)

#: Notification starts in flight (`request_start` never raises): held so none is collected before it ends.
_STARTS: set[asyncio.Task[None]] = set()

_CHANNEL_NAMES = {"whatsapp": "WhatsApp", "webchat": "web chat"}
#: What a caller hears when the person they were being put through to cannot be reached (the scenario's phrase
#: `escalate_not_connected` words it its own way).
NOT_PUT_THROUGH = "I'm sorry, I couldn't reach {person} just now. You keep your place in line, and I'm still here."
#: How often a caller's escalation is looked at while they wait for a person (one read of a counter each time).
FOLLOW_SECONDS = 1.0


@dataclass(frozen=True)
class Utterance:
    text: str
    last: TranscriptionFrame  # the latest stretch of speech: the turn's timings are its


class AgentProcessor(FrameProcessor):
    def __init__(
        self,
        conversation: Conversation,
        call: CallRef,
        hooks: CallHooks,
        stats: GatewayStats,
        request_end: Callable[[str], None],
        screen: Screen | None = None,
    ) -> None:
        super().__init__()
        self._screen = screen  # a call we placed: who picked up decides the opening (voicemail.py)
        self._conversation = conversation
        self._call = call
        self._hooks = hooks
        self._stats = stats
        self._request_end = request_end
        self._transcripts: asyncio.Queue[TranscriptionFrame] = asyncio.Queue()
        self._caller_speaking = False
        self._untranscribed = 0  # stretches of speech that ended and whose transcript has not arrived
        self._reply: ReplyHandle | None = None
        self._turns = 0
        self._speaking = asyncio.Lock()  # one reply at a time: a caller's turn, or news of their transfer
        self._keypad = Keypad()
        self._following: asyncio.Task[None] | None = None  # the caller's escalation, while they are the desk's
        self._silence_moved = asyncio.Event()
        self._silence = SilenceTimer(conversation.scenario.voice.silence_reprompt_seconds,
                                     on_change=self._silence_moved.set)

    async def start(self, on_failure: OnFailure) -> None:
        await super().start(on_failure)
        self.create_task(self._converse(), "converse")
        self.create_task(self._watch_silence(), "silence")

    async def process_frame(self, frame: Frame) -> None:
        if self._screen is not None and isinstance(
                frame, (UserStartedSpeakingFrame, UserStoppedSpeakingFrame, TranscriptionFrame)):
            self._screen.hear(frame)  # the callee's "hello?" or a machine's greeting: no turn to answer
            return
        if isinstance(frame, UserStartedSpeakingFrame):
            self._caller_speaking = True
            self._silence.heard_caller()
            await self._barge_in(frame.onset_at)
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._caller_speaking = False
            self._untranscribed += 1
        elif isinstance(frame, TranscriptionFrame):
            self._untranscribed -= 1
            self._transcripts.put_nowait(frame)
        elif isinstance(frame, DtmfFrame):
            await self._keyed(keys_in(frame.digits))
        else:
            await self.push_frame(frame)

    async def _barge_in(self, onset_at: float) -> None:
        reply = self._reply
        if reply is not None and reply.interrupt():
            await self.push_frame(InterruptionFrame(onset_at=onset_at, reply=reply))

    async def _keyed(self, keys: str) -> None:
        """Keys pressed: each stops the reply being heard, and a finished entry becomes the caller's turn."""
        for key in keys:
            pressed_at = time.monotonic()
            self._silence.heard_caller()
            await self._barge_in(pressed_at)
            entry = self._keypad.press(key)
            if entry is not None:
                log.info("call %s: the caller keyed an entry of %d digit(s)", self._call.call_id, len(entry))
                self._transcripts.put_nowait(TranscriptionFrame(entry, pressed_at, pressed_at, pressed_at))
            else:  # more keys (or words) may follow: the wait on the caller counts from this key
                self._await_caller()

    def _expect_keys(self, session: ChannelSession) -> None:
        """Whether a code the caller keys is complete at its last digit: it is while the agent waits on one."""
        pending = session.pending_verification or {}
        code = pending.get("method") == "code"
        self._keypad.expect_code(self._conversation.scenario.verification.code_length if code else None)

    # The conversation ---------------------------------------------------------------------------------------------

    async def _converse(self) -> None:
        if self._screen is not None:
            machine = await self._screen.verdict() == MACHINE
            if machine:
                await self._leave_message(self._screen)
                return
            self._screen = None  # a person: from now on they are heard as any caller
        await self._greet()
        self._await_caller()
        while True:
            utterance = await self._next_utterance()
            if utterance is not None:
                with self._silence.held_for("turn"):  # the turn, its tool calls, a put-through: not their silence
                    if await self._answer(utterance):
                        return
            self._await_caller()  # answered, or only a noise: the line is the caller's again

    def _await_caller(self) -> None:
        """The agent has had its say: the caller's silence counts from now, unless they are already talking."""
        if not (self._caller_speaking or self._untranscribed or not self._transcripts.empty()):
            self._silence.listening()

    async def _watch_silence(self) -> None:
        """Sleep until the caller's silence is up; then the reprompt, or (the second time) the goodbye and the end."""
        voice, company = self._conversation.scenario.voice, self._conversation.scenario.company
        while True:
            self._silence_moved.clear()
            deadline = self._silence.deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(self._silence_moved.wait(), timeout)
                continue  # the caller spoke, the agent spoke, a hold began or ended: look again
            except TimeoutError:
                pass
            silence = self._silence.expire()
            if silence is Silence.REPROMPT:
                log.info("call %s: the caller has said nothing for %.0f s: asking if they are there",
                         self._call.call_id, voice.silence_reprompt_seconds)
                await self._tell_caller(voice.reprompt.format(company=company))
                self._await_caller()
            elif silence is Silence.GOODBYE:
                log.info("call %s: the caller said nothing after the reprompt: saying goodbye", self._call.call_id)
                reply = await self._tell_caller(voice.goodbye.format(company=company))
                if not reply.interrupted:  # a caller who speaks over the goodbye is there after all
                    self._request_end(ABANDONED)
                    return

    async def _leave_message(self, screen: Screen) -> None:
        log.info("call %s: an answering machine picked up: leaving a message after its beep", self._call.call_id)
        await screen.recording()
        await self._tell_caller(MESSAGE.format(company=self._conversation.scenario.company))
        self._request_end(VOICEMAIL)

    async def _greet(self) -> None:
        """Speak the session's opening (what `Conversation.open` put there), unless this call already got past it."""
        session = await self._conversation.transcript(self._call.session_id, self._call.customer_id)
        self._expect_keys(session)  # a media stream restarted while a code was awaited still takes its keys
        if any(turn.role == "customer" for turn in session.turns):
            return  # the media stream was restarted mid-call: no second greeting
        reply = self._reply = ReplyHandle()
        for turn in session.turns:
            await self.push_frame(TextFrame(turn.text, turn.agent or "", reply))
        await self.push_frame(ReplyEndFrame(reply))
        await reply.wait_for_playout()
        if reply.interrupted:
            await self._keep_what_was_heard(reply)

    async def _keep_what_was_heard(self, reply: ReplyHandle, *, switch_failed: bool = False) -> None:
        try:
            await self._conversation.interrupted(self._call.session_id, self._call.customer_id, reply.heard(),
                                                 switch_failed=switch_failed)
        except SwitchboardError as exc:  # the full reply stays in the transcript; the call goes on
            log.warning("call %s: could not cut the interrupted reply in the transcript: %s", self._call.call_id, exc)

    async def _next_utterance(self) -> Utterance | None:
        frames = [await self._transcripts.get()]
        while self._caller_speaking or self._untranscribed > 0:
            frames.append(await self._transcripts.get())
        text = " ".join(frame.text for frame in frames if frame.text)
        if not text and not any(frame.failed for frame in frames):
            return None  # noise, a cough: nothing to answer
        return Utterance(text, frames[-1])

    async def _answer(self, utterance: Utterance) -> bool:
        """Answer one caller turn; True when the call is to end."""
        async with self._speaking:
            ending, outcome = await self._answer_turn(utterance)
        if outcome is not None and outcome.promised:
            self._start_notifications()
        if ending or outcome is None:
            return ending
        opened = outcome.escalation
        if opened is not None and opened.status is EscalationStatus.CONNECTING:
            await self._put_through(opened)
        escalation = outcome.customer.open_escalation(self._call.session_id)
        if escalation is not None and escalation.status is not EscalationStatus.WITH_PERSON:
            self._follow(escalation)
        return False

    async def _answer_turn(self, utterance: Utterance) -> tuple[bool, TurnOutcome | None]:
        """Run and speak one turn: whether the call is to end, and the turn's outcome (None if it failed)."""
        self._turns += 1
        last = utterance.last
        metrics = TurnMetrics(
            self._call.call_id, self._turns, last.speech_ended_at, last.end_of_turn_at, last.transcribed_at
        )
        reply = self._reply = ReplyHandle(metrics)
        with telemetry.span("voice.turn", parent=self._call.traceparent, channel="voice", call_id=self._call.call_id,
                            turn=self._turns, session_id=self._call.session_id, customer_id=self._call.customer_id):
            outcome, ending = await self._turn(utterance.text, self._speaker(reply))  # a handoff's trace starts here
        if outcome is not None and (session := outcome.customer.sessions.get(self._call.session_id)) is not None:
            self._expect_keys(session)  # before the reply plays: a caller may key the code while it is asked for
        await self.push_frame(ReplyEndFrame(reply))
        await reply.wait_for_playout()
        self._stats.turn(metrics)
        # A switch that could not start was apologised for after the saved reply: the transcript keeps that too.
        switch_failed = outcome is not None and outcome.switch_to is not None and ending is None
        if (reply.interrupted or switch_failed) and outcome is not None:
            await self._keep_what_was_heard(reply, switch_failed=switch_failed)
        if ending is not None:
            self._request_end(ending)
            return True, outcome
        return False, outcome

    def _speaker(self, reply: ReplyHandle) -> OnText:
        """What the conversation core calls with each piece of reply text."""

        async def say(delta: str, agent: str) -> None:
            if reply.metrics is not None and reply.metrics.first_text_at is None:
                reply.metrics.first_text_at = time.monotonic()
            if not reply.interrupted:
                await self.push_frame(TextFrame(delta, agent, reply))

        return say

    async def _turn(self, text: str, say: OnText) -> tuple[TurnOutcome | None, str | None]:
        """Run the conversation core on what the caller said: the outcome, and why the call ends if it does."""
        scenario = self._conversation.scenario
        if not text:  # speech-to-text failed on what they said
            await say(scenario.phrase("fallback"), scenario.start_agent)
            return None, None
        try:
            outcome = await self._conversation.turn(self._call.session_id, self._call.customer_id, text, on_text=say)
        except (SessionClosed, NotFound) as exc:
            log.info("call %s: the voice session is over (%s)", self._call.call_id, exc)
            return None, "the voice session is closed"
        except SwitchboardError as exc:
            log.warning("call %s: turn %d failed, asking the caller again: %s", self._call.call_id, self._turns, exc)
            await say(scenario.phrase("fallback"), scenario.start_agent)
            return None, None
        if outcome.switch_to:
            return outcome, await self._start_handoff(outcome.switch_to, say)
        status = outcome.customer.sessions[self._call.session_id].status
        return outcome, None if status is SessionStatus.ACTIVE else f"the voice session is {status.value}"

    def _start_notifications(self) -> None:
        """The turn recorded a promise and its reply has played: ask the function app to start its notification
        (this process has no Durable client). A task of its own, not the stage's: the caller's next turn does not
        wait on it, and hanging up (which stops the stage's tasks) does not cancel it."""
        task = asyncio.create_task(request_start(self._call.customer_id), name=f"{self.name}.start notifications")
        _STARTS.add(task)
        task.add_done_callback(_STARTS.discard)

    # A person at the desk ------------------------------------------------------------------------------------------

    async def _put_through(self, escalation: Escalation) -> None:
        """Ask for the transfer to the person the desk routed the caller to."""
        try:
            await self._hooks.transfer(self._call, escalation.escalation_id)
        except Exception:  # the caller was told they are being put through: they must hear that they are not
            log.exception("call %s: could not put the caller through for escalation %s", self._call.call_id,
                          escalation.escalation_id)
            try:  # back in the queue, if the function app has not put it there already
                await self._conversation.desk.not_connected(self._call.customer_id, escalation.escalation_id)
            except SwitchboardError as exc:
                log.warning("call %s: escalation %s stays routed until it expires: %s", self._call.call_id,
                            escalation.escalation_id, exc)
            await self._tell_caller(self._desk_words("escalate_not_connected", escalation.agent_name))

    def _follow(self, escalation: Escalation) -> None:
        if self._following is None or self._following.done():
            self._silence.hold("desk")  # waiting for a person is not the caller's silence
            self._following = self.create_task(self._follow_escalation(escalation.escalation_id), "follow escalation")
            self._following.add_done_callback(lambda _: self._silence.release("desk"))

    async def _follow_escalation(self, escalation_id: str) -> None:
        """While the caller waits for a person or is being put through, say what the desk does: a person claimed
        them (they are put through), or the person did not take the call (back in line). Ends once they are with a
        person (ACS then ends this leg, and the call's end stops this) or no longer waiting."""
        desk, session_id = self._conversation.desk, self._call.session_id
        seen: int | None = None
        status: EscalationStatus | None = None
        person: str | None = None
        while True:
            try:
                version = await desk.session_version(session_id)
                if version != seen:  # the desk changed something on this session: look at the record
                    seen = version
                    customer = await self._conversation.customers.get(self._call.customer_id)
                    current = customer.find_escalation(escalation_id)
                    if current is None or current.status not in (EscalationStatus.WAITING, EscalationStatus.CONNECTING):
                        return
                    if status is EscalationStatus.WAITING and current.status is EscalationStatus.CONNECTING:
                        await self._tell_caller(self._desk_words("escalate_connecting", current.agent_name))
                    elif status is EscalationStatus.CONNECTING and current.status is EscalationStatus.WAITING:
                        await self._tell_caller(self._desk_words("escalate_not_connected", person))
                    status, person = current.status, current.agent_name or person
            except SwitchboardError as exc:  # a store hiccup: the caller hears nothing new for a moment
                log.warning("call %s: could not follow escalation %s: %s", self._call.call_id, escalation_id, exc)
            await asyncio.sleep(FOLLOW_SECONDS)

    def _desk_words(self, key: str, person: str | None) -> str:
        scenario = self._conversation.scenario
        default = NOT_PUT_THROUGH if key == "escalate_not_connected" else DESK_PHRASES[key]
        return scenario.phrases.get(key, default).format(person=person or "the person", company=scenario.company)

    async def _tell_caller(self, text: str) -> ReplyHandle:
        """Speak between the caller's turns (not a reply to one); returns once it has played (or been talked over)."""
        async with self._speaking:
            reply = self._reply = ReplyHandle()
            await self.push_frame(TextFrame(text, self._conversation.scenario.start_agent, reply))
            await self.push_frame(ReplyEndFrame(reply))
            await reply.wait_for_playout()
        return reply

    async def _start_handoff(self, channel: str, say: OnText) -> str | None:
        try:
            await self._hooks.start_handoff(self._call, channel)
        except Exception:  # the caller was promised a message: if it cannot go, tell them and keep them on the line
            log.exception("call %s: starting the handoff to %s failed", self._call.call_id, channel)
            scenario = self._conversation.scenario
            name = _CHANNEL_NAMES.get(channel, channel)
            await say(" " + scenario.phrase("switch_unavailable", channel=name), scenario.start_agent)
            return None
        return f"the caller moved to {channel}"
