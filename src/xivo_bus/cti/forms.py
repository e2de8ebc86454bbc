"""Call form definitions and the validation of what an agent submits.

Forms are read from ``forms.json`` in the data directory, or from the contact form that
ships with the package when there is none. A field's ``name`` becomes the variable name
of the ``call_form_result`` event (XiVO's ``XIVOFORM_firstname`` is ``firstname`` here).
Every value is a string, as XiVO's forms sent them: checkboxes give ``"true"`` or
``"false"``, an empty optional field gives ``""``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FORMS_FILE = "forms.json"
FieldType = Literal["text", "textarea", "select", "checkbox", "date", "number"]
NAME_PATTERN = r"^[A-Za-z0-9_]{1,64}$"
TEXT_LIMIT = {"text": 200, "textarea": 5000}


class FormsError(ValueError):
    """A forms file that cannot be used; the message names the file and the problem."""


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str
    label: str = ""

    @property
    def text(self) -> str:
        return self.label or self.value


class FieldDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    label: str
    type: FieldType = "text"
    required: bool = False
    options: tuple[Option, ...] = ()
    help: str = ""
    pattern: str | None = None  # text: a regular expression the whole value must match
    max_length: int | None = Field(default=None, gt=0)
    min: float | None = None  # number
    max: float | None = None
    autocomplete: str | None = None

    @field_validator("options", mode="before")
    @classmethod
    def _plain_options(cls, value):
        """Options may be given as plain strings."""
        if isinstance(value, list | tuple):
            return [{"value": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FieldDef:
        if self.type == "select" and not self.options:
            raise ValueError(f"field {self.name!r}: a select needs options")
        if self.type != "select" and self.options:
            raise ValueError(f"field {self.name!r}: only a select has options")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"field {self.name!r}: bad pattern: {error}") from None
        return self

    @property
    def limit(self) -> int:
        return self.max_length or TEXT_LIMIT.get(self.type, 200)

    def validate_value(self, raw: object) -> tuple[str, str | None]:
        """The value as the event carries it, and an error message or ``None``."""
        if self.type == "checkbox":
            value, error = _checkbox(raw)
            if not error and self.required and value == "false":
                error = "This box must be checked."
            return value, error
        if raw is None:
            raw = ""
        if not isinstance(raw, str):
            return "", "must be a string"
        if self.type == "textarea":  # browsers send CRLF line ends; keep lines, not CRs
            value = raw.replace("\r\n", "\n").strip("\n")
        else:
            value = raw.strip()
        if not value.strip():
            return "", "This field is required." if self.required else None
        if len(value) > self.limit:
            return value, f"At most {self.limit} characters."
        return value, self._check(value)

    def _check(self, value: str) -> str | None:
        if self.type == "select" and value not in {option.value for option in self.options}:
            return "Choose one of the options."
        if self.type == "date":
            try:
                if len(value) != 10:
                    raise ValueError
                date.fromisoformat(value)
            except ValueError:
                return "Enter a date as YYYY-MM-DD."
        if self.type == "number":
            return self._check_number(value)
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return f"Not a valid {self.label.lower()}."
        return None

    def _check_number(self, value: str) -> str | None:
        try:
            number = float(value)
        except ValueError:
            return "Enter a number."
        if not math.isfinite(number):
            return "Enter a number."
        if self.min is not None and number < self.min:
            return f"At least {self.min:g}."
        if self.max is not None and number > self.max:
            return f"At most {self.max:g}."
        return None


def _checkbox(raw: object) -> tuple[str, str | None]:
    if raw in (None, "", False, "false", "0", "off"):
        return "false", None
    if raw in (True, "true", "1", "on"):
        return "true", None
    return "false", "must be true or false"


class FormDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=NAME_PATTERN)
    title: str
    description: str = ""
    fields: tuple[FieldDef, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> FormDef:
        names = [field.name for field in self.fields]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"form {self.id!r}: duplicate field names {duplicates}")
        return self

    def validate_submission(self, submitted: Mapping[str, object]) -> tuple[dict, dict]:
        """``(variables, errors)``: every field's value as a string, and a message per
        invalid field (empty when the submission is valid). Unknown names are errors."""
        variables: dict[str, str] = {}
        errors: dict[str, str] = {}
        for field in self.fields:
            value, error = field.validate_value(submitted.get(field.name))
            variables[field.name] = value
            if error:
                errors[field.name] = error
        for name in submitted:
            if name not in variables:
                errors[name] = "Not a field of this form."
        return variables, errors


class FormsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    forms: tuple[FormDef, ...] = Field(min_length=1)


def parse_forms(text: str, source: str) -> dict[str, FormDef]:
    """The forms of a forms file's text, by id; ``FormsError`` names every problem."""
    try:
        document = FormsFile.model_validate(json.loads(text))
    except ValueError as error:
        raise FormsError(f"{source}: {_describe(error)}") from None
    forms: dict[str, FormDef] = {}
    for form in document.forms:
        if form.id in forms:
            raise FormsError(f"{source}: two forms have the id {form.id!r}")
        forms[form.id] = form
    return forms


def _describe(error: ValueError) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(
            ".".join(str(part) for part in item["loc"]) + f": {item['msg']}"
            for item in error.errors()
        )
    return f"not valid JSON: {error}"


def default_forms_text() -> str:
    return resources.files(__package__).joinpath("default_forms.json").read_text("utf-8")


def load_forms(data_dir: Path) -> tuple[dict[str, FormDef], str]:
    """The forms of ``data_dir/forms.json``, else the shipped ones; and where they came from."""
    path = Path(data_dir) / FORMS_FILE
    try:
        return parse_forms(path.read_text(encoding="utf-8"), str(path)), str(path)
    except FileNotFoundError:
        return parse_forms(default_forms_text(), "default forms"), "the default contact form"
