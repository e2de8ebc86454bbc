"""XiVO's CTI ``call_form_result`` message, turned into the event XiVO published.

The XiVO client sent, on saving a custom form::

    {"class": "call_form_result", "commandid": 123,
     "infos": {"buttonname": "saveandclose",
               "variables": {"XIVOFORM_firstname": "John", "XIVOFORM_lastname": "Doe"}}}

and the CTI server kept the variables whose names start with ``XIVOFORM_``, stripped that
prefix and published them with the logged-in user's id. So do we: the ``user_id`` is the
authenticated user's, whatever the message holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xivo_bus.events import CallFormResult

FORM_PREFIX = "XIVOFORM_"
CLASS = "call_form_result"


class CtiMessageError(ValueError):
    """A CTI message we cannot act on; ``fields`` maps each offending path to its problem."""

    def __init__(self, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.fields = fields or {}


def form_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The ``XIVOFORM_`` variables with the prefix stripped; every other one dropped."""
    return {
        name[len(FORM_PREFIX) :]: value
        for name, value in variables.items()
        if name.startswith(FORM_PREFIX)
    }


def call_form_result(message: Any, user_id: int) -> CallFormResult:
    """The event for a CTI ``call_form_result`` message sent by user ``user_id``."""
    if not isinstance(message, Mapping):
        raise CtiMessageError("a CTI message is a JSON object")
    if message.get("class") != CLASS:
        raise CtiMessageError(
            f"unsupported class {message.get('class')!r}; this endpoint takes {CLASS!r}",
            {"class": f"must be {CLASS!r}"},
        )
    infos = message.get("infos")
    if not isinstance(infos, Mapping):
        raise CtiMessageError("infos: must be an object", {"infos": "must be an object"})
    variables = infos.get("variables", {})
    if not isinstance(variables, Mapping):
        raise CtiMessageError(
            "infos.variables: must be an object", {"infos.variables": "must be an object"}
        )
    kept = form_variables(variables)
    problems = {
        f"infos.variables.{FORM_PREFIX}{name}": "must be a string"
        for name, value in kept.items()
        if not isinstance(value, str)
    }
    if problems:
        raise CtiMessageError("form variables must be strings", problems)
    return CallFormResult(user_id=int(user_id), variables=kept)
