"""XiVO's CTI ``call_form_result`` message, turned into the event XiVO published.

The XiVO client sent, on saving a custom form::

    {"class": "call_form_result", "commandid": 123,
     "infos": {"buttonname": "saveandclose",
               "variables": {"XIVOFORM_firstname": "John", "XIVOFORM_vip": true}}}

and the CTI server kept the variables whose names start with ``XIVOFORM_`` followed by
word characters, kept that run of word characters as the name (``XIVOFORM_first-name``
became ``first``), passed the values through unchanged (booleans and numbers stay so) and
published them with the logged-in user's id. So do we: the ``user_id`` is the
authenticated user's, whatever the message holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from xivo_bus.events import CallFormResult

FORM_PREFIX = "XIVOFORM_"
CLASS = "call_form_result"
# XiVO matched ``XIVOFORM_([\w_]+)`` with Python 2's ``re`` and no UNICODE flag: ASCII.
_FORM_NAME = re.compile(r"XIVOFORM_([A-Za-z0-9_]+)")


class CtiMessageError(ValueError):
    """A CTI message we cannot act on; ``fields`` maps each offending path to its problem."""

    def __init__(self, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.fields = fields or {}


def form_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The ``XIVOFORM_`` variables under the name XiVO gave them; every other one dropped."""
    kept = {}
    for name, value in variables.items():
        match = _FORM_NAME.match(name) if isinstance(name, str) else None
        if match:
            kept[match.group(1)] = value
    return kept


def _is_form_value(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | bool | int)


def call_form_result(message: Any, user_id: int) -> CallFormResult:
    """The event for a CTI ``call_form_result`` message sent by user ``user_id``."""
    if not isinstance(message, Mapping):
        raise CtiMessageError("a CTI message is a JSON object")
    if message.get("class") != CLASS:
        raise CtiMessageError(
            f"unsupported class {message.get('class')!r}; this endpoint takes {CLASS!r}",
            {"class": f"must be {CLASS!r}"},
        )
    infos = message.get("infos", {})  # XiVO: no infos is an empty form, still published
    if not isinstance(infos, Mapping):
        raise CtiMessageError("infos: must be an object", {"infos": "must be an object"})
    variables = infos.get("variables", {})
    if not isinstance(variables, Mapping):
        raise CtiMessageError(
            "infos.variables: must be an object", {"infos.variables": "must be an object"}
        )
    kept = form_variables(variables)
    problems = {
        f"infos.variables.{FORM_PREFIX}{name}": "must be a string, a boolean or a number"
        for name, value in kept.items()
        if not _is_form_value(value)
    }
    if problems:
        raise CtiMessageError("form values must be strings, booleans or numbers", problems)
    return CallFormResult(user_id=int(user_id), variables=kept)
