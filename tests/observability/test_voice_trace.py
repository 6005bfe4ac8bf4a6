"""A phone call that moves to WhatsApp is one trace, from IncomingCall to the first WhatsApp reply.

Every real piece runs, as in tests/e2e/test_calls_audio.py: the phone simulator's code places the call on the ACS
emulator, the Functions host answers it, the media gateway (a separate process) hears piper-spoken words with
faster-whisper, and the caller accepts WhatsApp on a busy line. Both processes export to one JSON-lines file. Slow by
nature (the call runs in real time).
"""

from __future__ import annotations

import asyncio
import re
from functools import partial

import httpx

from local.phone import Engines, Line, converse
from tests.e2e.test_calls_audio import _args, wait_warm
from tests.observability.telemetry_file import Exported
from tests.peers import free_port
from tests.waiting import eventually as wait_until

eventually = partial(wait_until, timeout=30)
JORDAN = "+15555550100"


async def test_a_call_that_moves_to_whatsapp_is_one_trace_and_the_summary_counts_it(local_host_factory, tmp_path):
    exported = Exported(tmp_path / "telemetry.jsonl")
    gateway_port = free_port()
    host = local_host_factory(
        GATEWAY_PORT=str(gateway_port), GATEWAY_PRELOAD_MODELS="true", SWITCHBOARD_TELEMETRY=str(exported.path),
        SWITCHBOARD_SUMMARY_SECONDS="1", OTEL_METRIC_EXPORT_INTERVAL="500", HANDOFF_REMIND_AFTER_SECONDS="60", HANDOFF_EXPIRE_AFTER_SECONDS="60",
    )
    engines = Engines(transcribe=True)
    engines.load(need_voice=True)
    wait_warm(f"http://127.0.0.1:{gateway_port}")
    async with httpx.AsyncClient(timeout=60) as client:
        (await client.post(f"{host.url}/api/ops/queue", json={"set": {"waiting": 70, "estimated_wait_seconds": 480}})
         ).raise_for_status()
        lines = (Line("say", "there is no power on my street"), Line("say", "yes, send it to WhatsApp"))
        dialogue = await asyncio.wait_for(converse(_args(host.acs_url, *lines), engines), timeout=180)
        assert dialogue.ended and dialogue.ended != "you hung up", dialogue.lines

        async def invited() -> bool:
            sent = (await client.get(f"{host.acs_url}/_emulator/messages", params={"to": JORDAN})).json()
            return any(m.get("template") == "switchboard_handoff_invite" for m in sent)

        for _ in range(150):
            if await invited():
                break
            await asyncio.sleep(0.2)
        inbound = await client.post(f"{host.acs_url}/_emulator/inbound", json={"from": JORDAN, "text": "hi"})
        assert inbound.status_code == 200, inbound.text

    turn = eventually(lambda: exported.spans("whatsapp.turn", continues_handoff=True))[0]
    trace = [s for s in exported.spans() if s["trace_id"] == turn["trace_id"]]
    by_id = {s["span_id"]: s for s in trace}

    def ancestry(span: dict) -> list[str]:
        names = [span["name"]]
        while span["parent_id"] in by_id:
            span = by_id[span["parent_id"]]
            names.append(span["name"])
        return names

    # The WhatsApp turn descends, through the handoff and the gateway's turn, from the call's IncomingCall.
    assert ancestry(turn) == ["whatsapp.turn", "handoff.start", "handoffs_start", "voice.turn", "incoming_call"]
    (call,) = [s for s in trace if s["name"] == "incoming_call"]
    assert call["parent_id"] is None and call["kind"] == "CONSUMER"
    voice_turns = [s for s in trace if s["name"] == "voice.turn"]
    assert len(voice_turns) == 2 and {s["service"] for s in voice_turns} == {"switchboard-media-gateway"}
    assert all(s["parent_id"] == call["span_id"] for s in voice_turns)
    steps = {s["name"] for s in trace if s["name"].startswith("handoff.")}
    assert {"handoff.start", "handoff.summarise", "handoff.save_context", "handoff.invite"} <= steps

    # The gateway exports its per-turn latency breakdown, and the live summary counts the call.
    # Speech-to-text can take no time after the end of the turn: a pause's transcript is reused when nothing followed
    # it (docs/voice.md), so its figure may be 0; the others always take some.
    for name in ("gateway.turn.stt", "gateway.turn.policy_first_text", "gateway.turn.end_of_speech_to_first_audio"):
        point = eventually(lambda: (p := exported.metric(name)) and p["count"] == 2 and p)
        assert point["unit"] == "ms" and (point["min"] >= 0 if name == "gateway.turn.stt" else point["min"] > 0), name

    def voice_in_summary() -> tuple[int, int] | None:
        found = re.findall(r"voice (?:(\d+) calls?)?(?:, )?(?:(\d+) turns? p50 [\d.]+ m?s)?", host.stdout())
        totals = sum(int(c or 0) for c, _ in found), sum(int(t or 0) for _, t in found)
        return totals if totals == (1, 2) else None

    assert eventually(voice_in_summary), host.stdout()
