"""The event catalogue and the {"name", "data"} codec (no network)."""

from __future__ import annotations

import json

import pytest

from xivo_bus import events

SPEC_EXAMPLE = {
    "name": "call_form_result",
    "data": {"user_id": 40, "variables": {"firstname": "John", "lastname": "Doe"}},
}


def test_encode_is_exactly_name_and_data():
    event = events.CallFormResult(user_id=40, variables={"firstname": "John", "lastname": "Doe"})
    body, properties = events.encode(event)
    assert json.loads(body) == SPEC_EXAMPLE
    assert properties["content_type"] == "application/json"
    assert properties["headers"]["name"] == "call_form_result"
    assert properties["headers"]["timestamp"].endswith("+00:00")
    assert event.exchange == "xivo-cti" and event.routing_key == "call_form_result"


def test_decode_round_trip():
    event = events.decode(json.dumps(SPEC_EXAMPLE).encode())
    assert isinstance(event, events.CallFormResult)
    assert event.user_id == 40 and event.variables == {"firstname": "John", "lastname": "Doe"}
    assert events.decode(events.encode(event)[0]) == event


def test_unicode_survives():
    event = events.CallFormResult(user_id=1, variables={"nom": "Élodie 李"})
    assert events.decode(events.encode(event)[0]).variables["nom"] == "Élodie 李"


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{", "body is not valid JSON"),
        (b"\xff\xfe", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object, not list"),
        (b'{"data": {}}', "name: field required"),
        (b'{"name": 7, "data": {}}', "name: must be a string, not int"),
        (
            b'{"name": "call_form_result", "data": {"user_id": "40", "variables": {}}}',
            "data.user_id: input should be a valid integer",
        ),
        (
            b'{"name": "call_form_result", "data": {"variables": {}}}',
            "data.user_id: field required",
        ),
        (
            b'{"name": "call_form_result", "data": {"user_id": 1, "variables": {"a": 2}}}',
            "data.variables.a: input should be a valid string",
        ),
        (
            b'{"name": "call_form_result", "data": {"user_id": 1, "variables": {}, "x": 1}}',
            "data.x: extra inputs are not permitted",
        ),
        (b'{"name": "call_form_result", "data": null}', "invalid call_form_result event"),
    ],
)
def test_bad_events_name_the_field_and_problem(body, message):
    with pytest.raises(events.EventError) as error:
        events.decode(body)
    assert message in str(error.value)


def test_unknown_event_decodes_to_generic_event():
    event = events.decode(b'{"name": "status.user", "data": {"id": 3}}')
    assert isinstance(event, events.GenericEvent)
    assert (event.name, event.data, event.routing_key) == ("status.user", {"id": 3}, "status.user")
    assert events.decode(events.encode(event)[0]) == event


def test_missing_data_is_null():
    event = events.decode(b'{"name": "something_else"}')
    assert event.data is None


def test_json_schema_and_asyncapi_describe_call_form_result():
    schema = events.json_schema(events.CallFormResult)
    assert schema["properties"]["name"] == {"const": "call_form_result"}
    data = schema["properties"]["data"]
    assert data["properties"]["user_id"]["type"] == "integer"
    assert data["properties"]["variables"]["additionalProperties"]["type"] == "string"
    assert set(data["required"]) == {"user_id", "variables"}
    document = events.asyncapi()
    channel = document["channels"]["call_form_result"]
    assert channel["bindings"]["amqp"]["exchange"]["name"] == "xivo-cti"
    assert channel["bindings"]["amqp"]["exchange"]["type"] == "direct"
    assert channel["subscribe"]["message"]["payload"] == schema
