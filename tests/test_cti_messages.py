"""XiVO's CTI call_form_result message: XIVOFORM_ variables kept under XiVO's name for
them, values as sent, every other one dropped, user_id from the logged-in user."""

from __future__ import annotations

import pytest

from xivo_bus import events
from xivo_bus.cti.messages import CtiMessageError, call_form_result, form_variables

XIVO_MESSAGE = {
    "class": "call_form_result",
    "commandid": 123,
    "infos": {
        "buttonname": "saveandclose",
        "variables": {"XIVOFORM_firstname": "John", "XIVOFORM_lastname": "Doe"},
    },
}


def test_the_facts_example_gives_the_spec_event():
    event = call_form_result(XIVO_MESSAGE, 40)
    assert events.encode(event)[0] == (
        b'{"name": "call_form_result", "data": {"user_id": 40, '
        b'"variables": {"firstname": "John", "lastname": "Doe"}}}'
    )


def test_only_xivoform_names_count_and_keep_the_word_characters_after_the_prefix():
    # XiVO matched XIVOFORM_([\w_]+) (ASCII): the name is the run of word characters.
    variables = {
        "XIVOFORM_firstname": "John",
        "XIVOFORM_XIVOFORM_twice": "kept once stripped",
        "XIVOFORM_client-number": "cut at the dash",
        "XIVOFORM_prénom": "cut at the é",
        "firstname": "not a form variable",
        "xivoform_lower": "case matters",
        "XIVO_FORM_x": "no",
        "OTHER_XIVOFORM_x": "prefix only",
        "buttonname": "save",
        "XIVOFORM_": "no name: dropped",
        "XIVOFORM_-x": "no word character: dropped",
    }
    assert form_variables(variables) == {
        "firstname": "John",
        "XIVOFORM_twice": "kept once stripped",
        "client": "cut at the dash",
        "pr": "cut at the é",
    }


def test_values_keep_the_json_types_the_desktop_client_sent():
    message = {
        "class": "call_form_result",
        "infos": {
            "variables": {
                "XIVOFORM_vip": True,
                "XIVOFORM_age": 42,
                "XIVOFORM_rate": 1.5,
                "XIVOFORM_name": "Preston",
                "label_1": "Name:",
            }
        },
    }
    event = call_form_result(message, 40)
    assert event.variables == {"vip": True, "age": 42, "rate": 1.5, "name": "Preston"}


def test_user_id_is_the_callers_never_the_messages():
    message = {
        **XIVO_MESSAGE,
        "user_id": 1,
        "infos": {**XIVO_MESSAGE["infos"], "user_id": 2},
    }
    message["infos"]["variables"] = {**message["infos"]["variables"], "XIVOFORM_user_id": "3"}
    event = call_form_result(message, "40")  # ints as the CTI server forced them
    assert event.user_id == 40
    assert event.variables == {"firstname": "John", "lastname": "Doe", "user_id": "3"}


def test_non_form_variables_are_dropped_even_when_not_strings():
    message = {"class": "call_form_result", "infos": {"variables": {"n": 1, "XIVOFORM_a": "b"}}}
    assert call_form_result(message, 7).variables == {"a": "b"}


def test_no_variables_gives_an_empty_form():
    message = {"class": "call_form_result", "commandid": 1, "infos": {"buttonname": "save"}}
    assert call_form_result(message, 7).variables == {}
    # XiVO published an empty form for a message without infos too.
    assert call_form_result({"class": "call_form_result"}, 7).variables == {}


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        ([], {}),
        ({"class": "login_id", "infos": {}}, {"class": "must be 'call_form_result'"}),
        ({"class": "call_form_result", "infos": "x"}, {"infos": "must be an object"}),
        (
            {"class": "call_form_result", "infos": {"variables": []}},
            {"infos.variables": "must be an object"},
        ),
        (
            {"class": "call_form_result", "infos": {"variables": {"XIVOFORM_age": [42]}}},
            {"infos.variables.XIVOFORM_age": "must be a string, a boolean or a number"},
        ),
        (
            {"class": "call_form_result", "infos": {"variables": {"XIVOFORM_x": None}}},
            {"infos.variables.XIVOFORM_x": "must be a string, a boolean or a number"},
        ),
    ],
)
def test_malformed_messages_name_the_field(message, fields):
    with pytest.raises(CtiMessageError) as error:
        call_form_result(message, 40)
    assert error.value.fields == fields
