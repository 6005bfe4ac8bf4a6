"""Reading IncomingCall and Call Automation callbacks: what ACS sends parses, anything else names the bad field."""

from __future__ import annotations

import json

import pytest

from functions.api.calls import parse_callbacks
from shared.calls.events import parse_incoming_call, phone_number
from shared.errors import InvalidInput

INCOMING = {
    "to": {"kind": "phoneNumber", "rawId": "4:+18005550100", "phoneNumber": {"value": "+18005550100"}},
    "from": {"kind": "phoneNumber", "rawId": "4:+15555550100", "phoneNumber": {"value": "+15555550100"}},
    "callerDisplayName": "",
    "incomingCallContext": "ctx-token",
    "correlationId": "6c642fd0-059f-4a17-b471-e2bc8a749f9e",
    "serverCallId": "srv",
}


def test_an_incoming_call_from_a_phone() -> None:
    call = parse_incoming_call("evt-1", INCOMING)
    assert (call.event_id, call.caller, call.callee) == ("evt-1", "+15555550100", "+18005550100")
    assert call.incoming_call_context == "ctx-token" and call.correlation_id == INCOMING["correlationId"]


@pytest.mark.parametrize(
    ("identifier", "number"),
    [
        ({"rawId": "4:+15555550111"}, "+15555550111"),  # the raw id alone is enough
        ({"kind": "phoneNumber", "phoneNumber": {"value": "+442071838750"}}, "+442071838750"),
        ({"kind": "communicationUser", "rawId": "8:acs:abc", "communicationUser": {"id": "8:acs:abc"}}, None),
        ({"kind": "unknown", "rawId": "4:anonymous"}, None),  # a withheld number
        ({"rawId": "4:555-0100"}, None),
        (None, None),
        ("4:+15555550100", None),
    ],
)
def test_the_callers_number(identifier, number) -> None:
    assert phone_number(identifier) == number


@pytest.mark.parametrize("missing", ["incomingCallContext", "correlationId"])
def test_an_incoming_call_without_what_answering_needs_is_refused(missing: str) -> None:
    with pytest.raises(InvalidInput, match=missing):
        parse_incoming_call("evt", {k: v for k, v in INCOMING.items() if k != missing})


def test_incoming_call_data_must_be_an_object() -> None:
    with pytest.raises(InvalidInput, match="object"):
        parse_incoming_call("evt", ["not", "an", "object"])


def _callback(**data) -> dict:
    return {
        "id": "cb-1", "source": "calling/callConnections/c1", "type": "Microsoft.Communication.CallConnected",
        "specversion": "1.0", "time": "2026-01-01T00:00:00Z",
        "data": {"callConnectionId": "c1", "correlationId": "corr", **data},
    }


def test_callbacks_parse_into_named_events() -> None:
    failed = _callback(mediaStreamingUpdate={"mediaStreamingStatusDetails": "streamConnectionUnsuccessful"})
    failed.update(id="cb-2", type="Microsoft.Communication.MediaStreamingFailed")
    events = parse_callbacks(json.dumps([_callback(), failed]).encode())
    assert [e.type for e in events] == ["CallConnected", "MediaStreamingFailed"]
    assert events[1].detail == "streamConnectionUnsuccessful" and events[0].correlation_id == "corr"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "non-empty JSON array"),
        (b"42", "non-empty JSON array"),
        (b"[1]", "event 0: must be an object"),
        (json.dumps([{**_callback(), "type": "Microsoft.EventGrid.Other"}]).encode(), "not a Call Automation event"),
        (json.dumps([{**_callback(), "data": "x"}]).encode(), "event 0.data: must be an object"),
        (json.dumps([_callback(correlationId="")]).encode(), "correlationId"),
        (json.dumps([{**_callback(), "id": None}]).encode(), "event 0.id"),
        (b"[" + b" " * 300_000 + b"]", "at most"),
    ],
)
def test_malformed_callbacks_name_the_problem(body: bytes, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_callbacks(body)


def test_a_call_automation_event_the_app_does_not_know_is_read_and_keeps_all_its_data() -> None:
    """ACS adds event types and fields over time: a new one must not turn a batch into a 400 (the service passes
    over types it does not act on), and the data reaches the service as sent."""
    new = _callback(somethingNew={"a": 1})
    new.update(type="Microsoft.Communication.SomethingNew", extension="kept out of our way")
    [event] = parse_callbacks(json.dumps(new).encode())
    assert event.type == "SomethingNew" and event.data["somethingNew"] == {"a": 1}


def test_every_bad_field_of_every_event_is_named_by_its_path() -> None:
    good, bad = _callback(), {**_callback(correlationId="  "), "id": 7}
    with pytest.raises(InvalidInput) as refused:
        parse_callbacks(json.dumps([good, bad]).encode())
    said = str(refused.value)
    assert "event 1.id: Input should be a valid string" in said, said
    assert "event 1.data.correlationId: String should hold something other than whitespace" in said, said
    assert "event 0" not in said, said


def test_the_documented_schema_is_the_one_the_route_checks_with() -> None:
    """The document's CallEvents accepts what the route accepts and refuses what it refuses (issue 18)."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    from functions.openapi import openapi_document

    schema = openapi_document()["components"]["schemas"]["CallEvents"]
    documented = jsonschema_rs.validator_for(schema)
    samples = [[_callback()], [_callback(correlationId="")], [{**_callback(), "type": "Microsoft.EventGrid.X"}],
               [{**_callback(), "id": None}], [{**_callback(), "time": 5}], [], [{**_callback(), "data": []}]]
    for sample in samples:
        try:
            parse_callbacks(json.dumps(sample).encode())
            accepted = True
        except InvalidInput:
            accepted = False
        assert documented.is_valid(sample) == accepted, sample
