"""Calls reach people: `python -m local` (Functions host + ACS emulator), the real callautomation SDK on the app's
side, a scripted media gateway peer, and a person's phone registered on the emulator (`/_emulator/phones/...`).

The voice turns run here, through the conversation core on the host's own stores (the same SQLite files), as the
media gateway runs them; the gateway's side of a transfer is the route it calls, `POST /api/calls/{id}/transfer`
with `{"escalation_id"}` and the call's control token. The desk's people are set with shared.desk.Desk on the same
state (the host's SQLite state file), or signed in over HTTP with the local host's dev sign-in where the test is
about the desk's own route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from shared.bootstrap import Services, build_services
from shared.calls.service import CallService
from shared.desk import AVAILABLE, AWAY, DeskAgent
from shared.errors import Conflict
from shared.models import Escalation, EscalationStatus, new_id
from shared.settings import Settings
from tests.desk.people import Person
from tests.e2e.test_calls import ACCESS_KEY, SECRET, System, _bearer, control_token, eventually, media_token
from tests.voice_rig import gateway_peer_system

DANA_PHONE = "+15555550142"
SAM_ACS_USER = "8:acs:6b2d6f2e-0000-4000-8000-00000000ac50_0000001a-2b3c-4d5e-6f70-8192a3b4c5d6"


@pytest.fixture(scope="module")
async def system(local_host_factory, tmp_path_factory) -> AsyncIterator[System]:
    async with gateway_peer_system(local_host_factory, tmp_path_factory.mktemp("calls-desk-data")) as system:
        yield system


@pytest.fixture(scope="module")
async def services(system: System) -> AsyncIterator[Services]:
    """The app's services on the host's stores and emulator, as the gateway and the desk's routes build them."""
    built = await build_services(Settings.from_env({
        "SWITCHBOARD_DATA_DIR": str(system.data_dir), "SWITCHBOARD_TOKEN_SECRET": SECRET.decode(),
        "ACS_ENDPOINT": system.host.acs_url, "ACS_ACCESS_KEY": ACCESS_KEY, "SWITCHBOARD_POLICY": "offline",
    }))
    yield built
    await built.close()


@pytest.fixture(autouse=True)
async def hang_up_what_the_test_left(system: System) -> AsyncIterator[None]:
    """Each test's calls end with it: a call left up streams audio to the gateway peer all module long."""
    yield
    for call in (await system.acs.get("/_emulator/calls")).json()["calls"]:
        if call["state"] == "connected":
            await system.acs.post(f"/_emulator/calls/{call['id']}/hangup")


@pytest.fixture
async def people(services: Services) -> AsyncIterator[list[DeskAgent]]:
    """People the test puts on duty (each with an agent id of their own); they go away after it."""
    on_duty: list[DeskAgent] = []
    yield on_duty
    for agent in on_duty:
        await services.desk.set_presence(agent, AWAY)


async def on_duty(services: Services, people: list[DeskAgent], name: str, **reach: str) -> DeskAgent:
    agent = DeskAgent(new_id("agent"), name)
    people.append(agent)
    await services.desk.set_presence(agent, AVAILABLE, **reach)
    return agent


class Phone:
    """A person's phone registered on the emulator: it hears transfers ring, with their custom context."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.messages.put_nowait(json.loads(message.data))

    async def next(self, kind: str, timeout: float = 15) -> dict[str, Any]:
        while True:
            message = await asyncio.wait_for(self.messages.get(), timeout)
            if message["kind"] == kind:
                return message

    async def send(self, kind: str, transfer_id: str) -> None:
        await self.ws.send_json({"kind": kind, "transfer_id": transfer_id})


@contextlib.asynccontextmanager
async def phone(system: System, target: str) -> AsyncIterator[Phone]:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{system.host.acs_url}/_emulator/phones/{quote(target, safe='')}")
        registered = Phone(ws)
        assert (await registered.next("registered"))["target"] == target
        try:
            yield registered
        finally:
            await ws.close()


async def ask_for_a_person(system: System, services: Services) -> tuple[dict[str, Any], Any]:
    """A caller on the line asks for a person, as the gateway runs their turn; returns the call and the outcome."""
    call = await system.connected()
    claims = system.tokens.verify(control_token(call), "call-control")
    outcome = await services.conversation.turn(claims["sid"], claims["cid"], "can I talk to a real person please")
    assert outcome.escalation is not None, [r.text for r in outcome.replies]
    return call, outcome


async def transfer(system: System, call: dict[str, Any], escalation_id: str) -> Any:
    return await system.app.post(f"/api/calls/{call['id']}/transfer", json={"escalation_id": escalation_id},
                                 headers=_bearer(control_token(call)))


async def escalation_of(services: Services, call: dict[str, Any], escalation_id: str) -> Escalation | None:
    customer = await services.customers.get(services.tokens.verify(media_token(call), "media")["cid"])
    return customer.find_escalation(escalation_id)


async def status_is(
    services: Services, call: dict[str, Any], escalation_id: str, status: EscalationStatus
) -> Escalation | None:
    escalation = await escalation_of(services, call, escalation_id)
    return escalation if escalation is not None and escalation.status is status else None


# --- put through ----------------------------------------------------------------------------------------------


async def test_a_caller_routed_to_a_free_person_rings_their_phone_with_the_escalation_and_they_take_it(
    system: System, services: Services, people: list[DeskAgent]
) -> None:
    dana = await on_duty(services, people, "Dana", phone=DANA_PHONE)
    async with phone(system, DANA_PHONE) as dana_phone:
        call, outcome = await ask_for_a_person(system, services)
        escalation = outcome.escalation
        assert (escalation.status, escalation.agent_id) == (EscalationStatus.CONNECTING, dana.agent_id)
        assert "putting you through to Dana" in outcome.replies[-1].text

        response = await transfer(system, call, escalation.escalation_id)
        assert response.status_code == 202, response.text
        assert response.json() == {"call_id": call["id"], "action": "transfer", "target": DANA_PHONE,
                                   "escalation_id": escalation.escalation_id}

        ringing = await dana_phone.next("ringing")
        # What Dana's phone gets with the call: the escalation id, so the desk opens this customer's context.
        assert ringing["customContext"] == {
            "sipHeaders": {"X-MS-Custom-Switchboard-Escalation": escalation.escalation_id}, "voipHeaders": {}}
        assert ringing["from"] == "+15555550100" and ringing["call_id"] == call["id"]
        emulated = await system.call(call["id"])
        asked = next(a for a in emulated["actions"] if a["op"] == "transferToParticipant")["body"]
        assert asked["targetParticipant"]["rawId"] == f"4:{DANA_PHONE}"
        assert asked["operationContext"] == f"escalate:{escalation.escalation_id}"

        again = await transfer(system, call, escalation.escalation_id)  # the gateway retrying a lost answer
        assert again.status_code == 202 and again.json()["target"] == DANA_PHONE
        await dana_phone.send("answer", ringing["transfer_id"])

        taken = await eventually(
            lambda: status_is(services, call, escalation.escalation_id, EscalationStatus.WITH_PERSON),
            what="Dana to have the caller")
    assert taken.agent_name == "Dana" and taken.claimed_at
    emulated = await system.call(call["id"])
    assert [a["op"] for a in emulated["actions"]].count("transferToParticipant") == 1
    assert emulated["state"] == "transferred"
    view = await eventually(lambda: _when(system, call, "transferred"), what="the app to see the transfer")
    assert view["session_status"] == "transferred" and view["escalation_id"] == escalation.escalation_id
    assert [e["escalation_id"] for e in await services.desk.claimed_by(dana.agent_id)] == [escalation.escalation_id]


async def test_an_acs_user_gets_the_escalation_in_voip_headers(
    system: System, services: Services, people: list[DeskAgent]
) -> None:
    await on_duty(services, people, "Sam", acs_user=SAM_ACS_USER)
    async with phone(system, SAM_ACS_USER) as sam_app:
        call, outcome = await ask_for_a_person(system, services)
        assert (await transfer(system, call, outcome.escalation.escalation_id)).status_code == 202
        ringing = await sam_app.next("ringing")
        assert ringing["customContext"] == {
            "sipHeaders": {}, "voipHeaders": {"switchboard-escalation": outcome.escalation.escalation_id}}
        asked = next(a for a in (await system.call(call["id"]))["actions"] if a["op"] == "transferToParticipant")
        assert asked["body"]["targetParticipant"]["communicationUser"] == {"id": SAM_ACS_USER}
        await sam_app.send("answer", ringing["transfer_id"])
        await eventually(lambda: status_is(services, call, outcome.escalation.escalation_id,
                                           EscalationStatus.WITH_PERSON), what="Sam to have the caller")


async def test_a_person_who_declines_puts_the_caller_back_in_the_queue_with_the_ai_for_the_next_person(
    system: System, services: Services, people: list[DeskAgent]
) -> None:
    await on_duty(services, people, "Dana", phone=DANA_PHONE)
    async with phone(system, DANA_PHONE) as dana_phone:
        call, outcome = await ask_for_a_person(system, services)
        escalation_id = outcome.escalation.escalation_id
        assert (await transfer(system, call, escalation_id)).status_code == 202
        await dana_phone.send("decline", (await dana_phone.next("ringing"))["transfer_id"])
        back = await eventually(lambda: status_is(services, call, escalation_id, EscalationStatus.WAITING),
                                what="the caller back in the queue")
    assert back.agent_id is None
    assert escalation_id in [e["escalation_id"] for e in await services.desk.waiting()]
    emulated = await system.call(call["id"])
    assert emulated["state"] == "connected" and "CallTransferFailed" in [c["type"] for c in emulated["callbacks"]]
    view = await system.app_state(call)
    assert (view["state"], view["session_status"], view["transfer"]) == ("connected", "active", "failed")

    # Someone else takes the caller from the queue: their phone rings this time.
    lee = await on_duty(services, people, "Lee", phone="+15555550143")
    async with phone(system, "+15555550143") as lee_phone:
        await CallService(services).claim_call(escalation_id, lee)
        ringing = await lee_phone.next("ringing")
        assert ringing["customContext"]["sipHeaders"] == {"X-MS-Custom-Switchboard-Escalation": escalation_id}
        await lee_phone.send("answer", ringing["transfer_id"])
        taken = await eventually(lambda: status_is(services, call, escalation_id, EscalationStatus.WITH_PERSON),
                                 what="Lee to have the caller")
    assert taken.agent_name == "Lee"


async def test_a_caller_who_hangs_up_while_it_rings_has_left_and_the_phone_stops_ringing(
    system: System, services: Services, people: list[DeskAgent]
) -> None:
    await on_duty(services, people, "Dana", phone=DANA_PHONE)
    async with phone(system, DANA_PHONE) as dana_phone:
        call, outcome = await ask_for_a_person(system, services)
        escalation_id = outcome.escalation.escalation_id
        assert (await transfer(system, call, escalation_id)).status_code == 202
        ringing = await dana_phone.next("ringing")
        await system.acs.post(f"/_emulator/calls/{call['id']}/hangup")
        assert (await dana_phone.next("cancelled"))["transfer_id"] == ringing["transfer_id"]
        await eventually(lambda: status_is(services, call, escalation_id, EscalationStatus.ABANDONED),
                         what="the caller counted as having left")
    assert (await services.desk.metrics())["abandoned_last_hour"] >= 1


async def test_a_caller_who_hangs_up_while_waiting_has_left_the_queue(
    system: System, services: Services
) -> None:
    call, outcome = await ask_for_a_person(system, services)  # nobody on duty: they wait
    escalation_id = outcome.escalation.escalation_id
    assert outcome.escalation.status is EscalationStatus.WAITING
    assert escalation_id in [e["escalation_id"] for e in await services.desk.waiting()]
    await system.acs.post(f"/_emulator/calls/{call['id']}/hangup")
    await eventually(lambda: status_is(services, call, escalation_id, EscalationStatus.ABANDONED),
                     what="the caller counted as having left")
    assert escalation_id not in [e["escalation_id"] for e in await services.desk.waiting()]


# --- the desk claims a waiting caller -------------------------------------------------------------------------


async def test_of_two_people_claiming_a_waiting_caller_one_gets_the_call(
    system: System, services: Services, people: list[DeskAgent]
) -> None:
    call, outcome = await ask_for_a_person(system, services)  # nobody on duty yet: the caller waits
    escalation_id = outcome.escalation.escalation_id
    dana = await on_duty(services, people, "Dana", phone=DANA_PHONE)
    lee = await on_duty(services, people, "Lee", phone="+15555550143")
    async with phone(system, DANA_PHONE) as dana_phone, phone(system, "+15555550143") as lee_phone:
        calls = CallService(services)
        results = await asyncio.gather(calls.claim_call(escalation_id, dana), calls.claim_call(escalation_id, lee),
                                       return_exceptions=True)
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1 and len(lost) == 1, results
        assert isinstance(lost[0], Conflict) and str(lost[0]) == f"taken: {won[0].agent_name} has this customer"
        winner = dana_phone if won[0].agent_id == dana.agent_id else lee_phone
        ringing = await winner.next("ringing")
        assert ringing["customContext"]["sipHeaders"] == {"X-MS-Custom-Switchboard-Escalation": escalation_id}
        await winner.send("answer", ringing["transfer_id"])
        taken = await eventually(lambda: status_is(services, call, escalation_id, EscalationStatus.WITH_PERSON),
                                 what="the winner to have the caller")
    assert taken.agent_id == won[0].agent_id


async def test_a_person_without_a_phone_cannot_claim_a_caller_and_is_told_why(
    system: System, services: Services, people: list[DeskAgent]
) -> None:
    call, outcome = await ask_for_a_person(system, services)
    kim = await on_duty(services, people, "Kim")
    with pytest.raises(Conflict, match="set a phone number or an ACS user at the desk"):
        await CallService(services).claim_call(outcome.escalation.escalation_id, kim)
    assert (await escalation_of(services, call, outcome.escalation.escalation_id)).status is EscalationStatus.WAITING


async def test_a_person_claims_a_waiting_caller_on_the_desk_and_their_phone_rings(
    system: System, services: Services
) -> None:
    call, outcome = await ask_for_a_person(system, services)  # nobody on duty: the caller waits
    escalation_id = outcome.escalation.escalation_id
    kim = await Person.signed_in(system.host.url, "Kim Tran")
    lee = await Person.signed_in(system.host.url, "Lee Park")
    try:
        await kim.ok("POST", "/api/desk/presence", json={"status": "available"})  # no phone: she cannot take calls
        refused = await kim.claim(escalation_id)
        assert refused.status_code == 409 and "set a phone number" in refused.json()["error"], refused.text

        await lee.ok("POST", "/api/desk/presence", json={"status": "available", "phone": "+15555550144"})
        async with phone(system, "+15555550144") as lee_phone:
            claimed = await lee.claim(escalation_id)
            assert claimed.status_code == 200, claimed.text
            assert claimed.json()["escalation"]["status"] == "connecting"
            ringing = await lee_phone.next("ringing")
            assert ringing["customContext"]["sipHeaders"] == {"X-MS-Custom-Switchboard-Escalation": escalation_id}
            await lee_phone.send("answer", ringing["transfer_id"])
            await eventually(lambda: status_is(services, call, escalation_id, EscalationStatus.WITH_PERSON),
                             what="Lee to have the caller")
        mine = (await lee.queue())["mine"]
        assert [(e["escalation_id"], e["status"]) for e in mine] == [(escalation_id, "with_person")]
    finally:
        for person in (kim, lee):
            await person.ok("POST", "/api/desk/presence", json={"status": "away"})
            await person.close()


# --- the route's input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"escalation_id": 5}, 400, "escalation_id"),
        ({"escalation_id": ""}, 400, "escalation_id"),
        ({"escalation": "esc_1"}, 400, "unknown field"),
        ({"escalation_id": "esc_nobody_has"}, 404, "no escalation"),
    ],
)
async def test_a_transfer_request_that_names_no_escalation_of_this_caller_changes_nothing(
    system: System, body: dict, status: int, says: str
) -> None:
    call = await system.connected()
    response = await system.app.post(f"/api/calls/{call['id']}/transfer", json=body,
                                     headers=_bearer(control_token(call)))
    assert response.status_code == status and says in response.json()["error"], response.text
    assert (await system.call(call["id"]))["state"] == "connected"


async def test_a_waiting_escalation_is_not_transferred(system: System, services: Services) -> None:
    call, outcome = await ask_for_a_person(system, services)  # nobody on duty
    response = await transfer(system, call, outcome.escalation.escalation_id)
    assert response.status_code == 409 and "not being put through" in response.json()["error"]
    assert not [a for a in (await system.call(call["id"]))["actions"] if a["op"] == "transferToParticipant"]


async def _when(system: System, call: dict[str, Any], state: str) -> dict[str, Any] | None:
    view = await system.app_state(call)
    return view if view["state"] == state else None
