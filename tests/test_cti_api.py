"""The call forms' HTTP API and CTI endpoint, on a real ``xivo-bus cti`` process publishing
to a real broker; what lands on the bus is read by a consumer written like the spec's."""

from __future__ import annotations

import httpx
import pytest
from cti_support import SpecConsumer, add_agent, contact, expected, start_cti


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("cti-api")
    return data_dir, add_agent(data_dir, "alice", 40), add_agent(data_dir, "bob", 7)


@pytest.fixture(scope="module")
def cti(broker, agents):
    process = start_cti(broker.url, agents[0])
    yield process
    assert process.stop() == 0


@pytest.fixture
def alice(cti, agents):
    agent = agents[1]
    with httpx.Client(base_url=cti.url, auth=(agent.login, agent.password)) as http:
        yield http


@pytest.fixture
def consumer(broker):
    spec_consumer = SpecConsumer(broker.host, broker.port)
    yield spec_consumer
    spec_consumer.close()


def submit(http: httpx.Client, variables: dict, form: str = "contact") -> httpx.Response:
    return http.post(f"/api/forms/{form}/results", json={"variables": variables})


def test_me_is_the_authenticated_user(alice):
    assert alice.get("/api/me").json() == {"id": 40, "login": "alice", "name": "Alice Martin"}


@pytest.mark.parametrize("auth", [None, ("alice", "wrong"), ("nobody", "x")])
def test_api_needs_valid_credentials(cti, auth):
    response = httpx.post(cti.url + "api/forms/contact/results", json={"variables": {}}, auth=auth)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="xivo-bus"'
    assert set(response.json()) == {"error", "fields"}


def test_forms_are_listed_with_their_fields(alice):
    forms = alice.get("/api/forms").json()
    assert [form["id"] for form in forms] == ["contact"]
    assert [field["name"] for field in forms[0]["fields"]] == [
        "firstname",
        "lastname",
        "phone",
        "comment",
    ]
    assert alice.get("/api/forms/contact").json() == forms[0]
    missing = alice.get("/api/forms/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no form 'nope'", "fields": {}, "known": ["contact"]}


def test_submitted_form_lands_on_the_bus_as_the_spec_says(alice, consumer):
    response = submit(alice, {"firstname": "John", "lastname": "Doe"})
    assert response.status_code == 201
    event = expected(40, **contact("John", "Doe"))
    assert response.json() == {"status": "published", "message": "Sent to the bus.", "event": event}
    assert consumer.next() == event


def test_invalid_form_is_422_with_fields_and_publishes_nothing(alice, consumer):
    response = submit(alice, {"firstname": " ", "phone": "call me", "user_id": "1"})
    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid contact form",
        "fields": {
            "firstname": "This field is required.",
            "lastname": "This field is required.",
            "phone": "Not a valid phone.",
            "user_id": "Not a field of this form.",
        },
    }
    bad_shape = alice.post("/api/forms/contact/results", json={"variables": "John"})
    assert bad_shape.status_code == 422
    assert bad_shape.json()["fields"] == {"variables": "Input should be a valid dictionary"}
    # Published after the invalid ones through the same service: it comes first.
    assert submit(alice, contact("Sentinel", "Form")).status_code == 201
    assert consumer.next() == expected(40, **contact("Sentinel", "Form"))


def test_each_user_publishes_under_their_own_id(cti, agents, consumer):
    bob = agents[2]
    with httpx.Client(base_url=cti.url, auth=(bob.login, bob.password)) as http:
        assert submit(http, contact("Ann", "Lee")).status_code == 201
    assert consumer.next() == expected(7, **contact("Ann", "Lee"))


def test_cti_message_is_answered_as_xivo_published_it(alice, consumer):
    message = {
        "class": "call_form_result",
        "commandid": 123,
        "user_id": 1,
        "infos": {
            "buttonname": "saveandclose",
            "variables": {
                "XIVOFORM_firstname": "John",
                "XIVOFORM_lastname": "Doe",
                "firstname": "dropped",
                "XIVO_USERID": "dropped",
            },
        },
    }
    response = alice.post("/api/cti", json=message)
    assert response.status_code == 201
    event = expected(40, firstname="John", lastname="Doe")
    assert response.json() == {
        "class": "call_form_result",
        "commandid": 123,
        "status": "published",
        "message": "Sent to the bus.",
        "event": event,
    }
    assert consumer.next() == event


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        ({"class": "login_id", "infos": {}}, {"class": "Input should be 'call_form_result'"}),
        ({"class": "call_form_result"}, {"infos": "Field required"}),
        (
            {"class": "call_form_result", "infos": {"variables": ["XIVOFORM_a"]}},
            {"infos.variables": "Input should be a valid dictionary"},
        ),
    ],
)
def test_malformed_cti_messages_are_422_with_fields(alice, message, fields):
    response = alice.post("/api/cti", json=message)
    assert response.status_code == 422
    assert response.json() == {"error": "invalid request", "fields": fields}


def test_cti_form_values_keep_their_json_types(alice, consumer):
    message = {
        "class": "call_form_result",
        "commandid": 9,
        "infos": {"variables": {"XIVOFORM_age": 42, "XIVOFORM_vip": True, "XIVOFORM_n": "Jo"}},
    }
    assert alice.post("/api/cti", json=message).status_code == 201
    assert consumer.next() == {
        "name": "call_form_result",
        "data": {"user_id": 40, "variables": {"age": 42, "vip": True, "n": "Jo"}},
    }


def test_cti_form_values_must_be_json_scalars_and_nothing_is_published(alice, consumer):
    message = {
        "class": "call_form_result",
        "commandid": 9,
        "infos": {"variables": {"XIVOFORM_age": {"years": 42}, "XIVOFORM_name": "Jo"}},
    }
    response = alice.post("/api/cti", json=message)
    assert response.status_code == 422
    assert response.json() == {
        "class": "call_form_result",
        "commandid": 9,
        "error": "form values must be strings, booleans or numbers",
        "fields": {"infos.variables.XIVOFORM_age": "must be a string, a boolean or a number"},
    }
    sentinel = {"class": "call_form_result", "infos": {"variables": {"XIVOFORM_s": "1"}}}
    assert alice.post("/api/cti", json=sentinel).status_code == 201
    assert consumer.next() == expected(40, s="1")


def test_openapi_document_describes_the_api(cti):
    document = httpx.get(cti.url + "api/openapi.json").json()
    assert document["info"]["title"] == "xivo-bus call forms"
    assert {"/api/forms", "/api/forms/{form_id}/results", "/api/cti", "/bus/events"} <= set(
        document["paths"]
    )
    submit_doc = document["paths"]["/api/forms/{form_id}/results"]["post"]
    assert {"201", "202", "401", "404", "422"} <= set(submit_doc["responses"])
    assert "/login" not in document["paths"]  # pages are not API


def test_live_stream_filters_by_name(alice):
    submit(alice, contact("Live", "Stream"))
    with alice.stream("GET", "/bus/events", params={"name": "call_form_result"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: ") and '"Live"' in line:
                break
    other = alice.get("/bus/events", params={"name": "bad name!"})
    assert other.status_code == 422
    assert other.json()["fields"] == {"name": "'bad name!' is not an event name"}
