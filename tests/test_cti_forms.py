"""Call form definitions and validation: values as strings, field errors, the default
contact form, forms files."""

from __future__ import annotations

import json

import pytest

from xivo_bus.cti.forms import FormDef, FormsError, load_forms, parse_forms

ALL_TYPES = FormDef.model_validate(
    {
        "id": "all",
        "title": "All types",
        "fields": [
            {"name": "name", "label": "Name", "required": True, "max_length": 5},
            {"name": "notes", "label": "Notes", "type": "textarea"},
            {"name": "reason", "label": "Reason", "type": "select", "options": ["sale", "support"]},
            {"name": "callback", "label": "Call back", "type": "checkbox"},
            {"name": "consent", "label": "Consent", "type": "checkbox", "required": True},
            {"name": "when", "label": "When", "type": "date"},
            {"name": "age", "label": "Age", "type": "number", "min": 0, "max": 130},
            {"name": "code", "label": "Code", "pattern": "[A-Z]{3}"},
        ],
    }
)


def test_valid_submission_gives_every_field_as_a_string():
    variables, errors = ALL_TYPES.validate_submission(
        {
            "name": "  John ",
            "notes": "line 1\r\nline 2\r\n",
            "reason": "support",
            "callback": "true",
            "consent": "on",
            "when": "2024-02-29",
            "age": "42",
            "code": "ABC",
        }
    )
    assert errors == {}
    assert variables == {
        "name": "John",
        "notes": "line 1\nline 2",
        "reason": "support",
        "callback": "true",
        "consent": "true",
        "when": "2024-02-29",
        "age": "42",
        "code": "ABC",
    }


def test_missing_optional_fields_are_empty_strings_and_unchecked_boxes_false():
    variables, errors = ALL_TYPES.validate_submission({"name": "Jo", "consent": True})
    assert errors == {}
    assert variables == {
        "name": "Jo",
        "notes": "",
        "reason": "",
        "callback": "false",
        "consent": "true",
        "when": "",
        "age": "",
        "code": "",
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "   ", "This field is required."),
        ("name", "toolong", "At most 5 characters."),
        ("name", 12, "must be a string"),
        ("reason", "other", "Choose one of the options."),
        ("callback", "maybe", "must be true or false"),
        ("consent", "false", "This box must be checked."),
        ("when", "2023-02-29", "Enter a date as YYYY-MM-DD."),
        ("when", "29/02/2024", "Enter a date as YYYY-MM-DD."),
        ("age", "forty", "Enter a number."),
        ("age", "nan", "Enter a number."),
        ("age", "-1", "At least 0."),
        ("age", "131", "At most 130."),
        ("code", "AB1", "Not a valid code."),
    ],
)
def test_each_invalid_value_is_named_with_its_problem(field, value, message):
    submitted = {"name": "Jo", "consent": "true", field: value}
    _, errors = ALL_TYPES.validate_submission(submitted)
    assert errors == {field: message}


def test_unknown_names_are_errors():
    _, errors = ALL_TYPES.validate_submission({"name": "Jo", "consent": "1", "user_id": "7"})
    assert errors == {"user_id": "Not a field of this form."}


def test_default_contact_form_ships_with_the_package(tmp_path):
    forms, source = load_forms(tmp_path)
    assert source == "the default contact form"
    contact = forms["contact"]
    assert [(f.name, f.type, f.required) for f in contact.fields] == [
        ("firstname", "text", True),
        ("lastname", "text", True),
        ("phone", "text", False),
        ("comment", "textarea", False),
    ]
    assert contact.validate_submission({"firstname": "John", "lastname": "Doe"}) == (
        {"firstname": "John", "lastname": "Doe", "phone": "", "comment": ""},
        {},
    )
    _, errors = contact.validate_submission(
        {"firstname": "John", "lastname": "Doe", "phone": "call me"}
    )
    assert errors == {"phone": "Not a valid phone."}


def test_forms_file_in_the_data_dir_replaces_the_default(tmp_path):
    document = {
        "forms": [{"id": "survey", "title": "Survey", "fields": [{"name": "q", "label": "Q"}]}]
    }
    (tmp_path / "forms.json").write_text(json.dumps(document))
    forms, source = load_forms(tmp_path)
    assert list(forms) == ["survey"]
    assert source == str(tmp_path / "forms.json")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("{", "not valid JSON"),
        ({"forms": []}, "forms: Tuple should have at least 1 item"),
        (
            {"forms": [{"id": "a b", "title": "T", "fields": [{"name": "x", "label": "X"}]}]},
            "forms.0.id",
        ),
        (
            {
                "forms": [
                    {
                        "id": "a",
                        "title": "T",
                        "fields": [{"name": "x", "label": "X", "type": "radio"}],
                    }
                ]
            },
            "type",
        ),
        (
            {
                "forms": [
                    {
                        "id": "a",
                        "title": "T",
                        "fields": [{"name": "x", "label": "X", "type": "select"}],
                    }
                ]
            },
            "a select needs options",
        ),
        (
            {
                "forms": [
                    {
                        "id": "a",
                        "title": "T",
                        "fields": [{"name": "x", "label": "X"}, {"name": "x", "label": "Y"}],
                    }
                ]
            },
            "duplicate field names ['x']",
        ),
        (
            {
                "forms": [
                    {
                        "id": "a",
                        "title": "T",
                        "fields": [{"name": "x", "label": "X", "pattern": "("}],
                    }
                ]
            },
            "bad pattern",
        ),
        (
            {"forms": [{"id": "a", "title": "T", "fields": [{"name": "x", "label": "X"}]}] * 2},
            "two forms have the id 'a'",
        ),
    ],
)
def test_bad_forms_files_are_clear_errors(document, problem):
    text = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(FormsError) as error:
        parse_forms(text, "forms.json")
    assert str(error.value).startswith("forms.json: ")
    assert problem in str(error.value)
