"""XiVO's CTI call_form_result message: XIVOFORM_ variables kept with the prefix
stripped, every other one dropped, user_id from the logged-in user."""

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


def test_only_the_xivoform_prefix_counts_and_is_stripped_once():
    variables = {
        "XIVOFORM_firstname": "John",
        "XIVOFORM_XIVOFORM_twice": "kept once stripped",
        "firstname": "not a form variable",
        "xivoform_lower": "case matters",
        "XIVO_FORM_x": "no",
        "OTHER_XIVOFORM_x": "prefix only",
        "buttonname": "save",
        "XIVOFORM_": "empty name, as XiVO kept it",
    }
    assert form_variables(variables) == {
        "firstname": "John",
        "XIVOFORM_twice": "kept once stripped",
        "": "empty name, as XiVO kept it",
    }


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


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        ([], {}),
        ({"class": "login_id", "infos": {}}, {"class": "must be 'call_form_result'"}),
        ({"class": "call_form_result"}, {"infos": "must be an object"}),
        (
            {"class": "call_form_result", "infos": {"variables": []}},
            {"infos.variables": "must be an object"},
        ),
        (
            {"class": "call_form_result", "infos": {"variables": {"XIVOFORM_age": 42}}},
            {"infos.variables.XIVOFORM_age": "must be a string"},
        ),
    ],
)
def test_malformed_messages_name_the_field(message, fields):
    with pytest.raises(CtiMessageError) as error:
        call_form_result(message, 40)
    assert error.value.fields == fields
