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
            b'{"name": "call_form_result", "data": {"user_id": 1, "variables": {"a": [2]}}}',
            "data.variables.a: input should be a string, a boolean or a finite number",
        ),
        (
            b'{"name": "call_form_result", "data": {"user_id": 1, "variables": {"a": null}}}',
            "data.variables.a: input should be a string, a boolean or a finite number",
        ),
        (
            b'{"name": "call_form_request", "data": {"form": "contact"}}',
            "data: value error, give either user_id or queue",
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
    # What XiVO's desktop client sends: strings, booleans, integers (and the web form
    # strings only).
    assert data["properties"]["variables"]["additionalProperties"] == {
        "anyOf": [{"type": "string"}, {"type": "boolean"}, {"type": "integer"}, {"type": "number"}]
    }
    assert set(data["required"]) == {"user_id", "variables"}
    document = events.asyncapi()
    channel = document["channels"]["call_form_result"]
    assert channel["bindings"]["amqp"]["exchange"]["name"] == "xivo-cti"
    assert channel["bindings"]["amqp"]["exchange"]["type"] == "direct"
    assert channel["subscribe"]["message"]["payload"] == schema


def test_form_values_keep_their_json_types():
    body = (
        b'{"name": "call_form_result", "data": {"user_id": 40, "variables": '
        b'{"vip": true, "age": 42, "rate": 1.5, "name": "Jo"}}}'
    )
    event = events.decode(body)
    assert event.variables == {"vip": True, "age": 42, "rate": 1.5, "name": "Jo"}
    assert events.encode(event)[0] == body
    with pytest.raises(events.EventError, match="finite number"):
        events.CallFormResult.from_data({"user_id": 1, "variables": {"x": float("nan")}})


def test_call_form_request_targets_a_user_or_a_queue():
    event = events.decode(
        b'{"name": "call_form_request", "data": {"user_id": 40, "variables": {"a": "b"}}}'
    )
    assert (event.user_id, event.queue, event.form, event.channel) == (40, None, None, None)
    assert event.data == {"user_id": 40, "variables": {"a": "b"}}  # no nulls written
    assert event.exchange == "xivo-cti" and event.routing_key == "call_form_request"
    queue = events.make("call_form_request", {"queue": "sales", "channel": "SIP/a-1"})
    assert queue.data == {"queue": "sales", "channel": "SIP/a-1", "variables": {}}
    with pytest.raises(events.EventError, match="give either user_id or queue"):
        events.make("call_form_request", {"user_id": 1, "queue": "sales"})
    schema = events.json_schema(events.CallFormRequest)
    assert set(schema["properties"]["data"]["properties"]) == {
        "user_id",
        "queue",
        "form",
        "channel",
        "variables",
    }
    assert "call_form_request" in events.asyncapi()["channels"]
