"""The XiVO event catalogue and the ``{"name": ..., "data": ...}`` JSON codec.

An event type is one small class: its ``name``, the ``exchange`` it goes to (the routing
key is the name, as the spec says for CTI events) and its data fields, validated by
pydantic. No I/O here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

CONTENT_TYPE = "application/json"
CTI_EXCHANGE = "xivo-cti"


class EventError(ValueError):
    """An event that cannot be encoded or decoded; the message names the field and problem."""


class Event(BaseModel):
    """Base class of every event type: subclasses set ``name`` and declare their data."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: ClassVar[str]
    exchange: ClassVar[str] = CTI_EXCHANGE
    exchange_type: ClassVar[str] = "direct"
    description: ClassVar[str] = ""

    @property
    def routing_key(self) -> str:
        return self.name

    @property
    def data(self) -> Any:
        return self.model_dump(mode="json")

    @classmethod
    def from_data(cls, data: Any) -> Event:
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise EventError(_describe(cls.name, error)) from None

    @classmethod
    def data_schema(cls) -> dict:
        return cls.model_json_schema()


# A form value as XiVO's desktop client sends it: text fields, dates and double spin
# boxes as strings, check boxes and radio buttons as booleans, spin boxes as integers.
# The web form sends strings only. Numbers must be finite (JSON has no NaN).
FormValue = StrictStr | StrictBool | StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)]


class CallFormResult(Event):
    """Sent when a CTI client submits a custom call form."""

    name: ClassVar[str] = "call_form_result"
    description: ClassVar[str] = "A CTI client submitted a custom call form."

    user_id: StrictInt
    variables: dict[StrictStr, FormValue]


class CallFormRequest(Event):
    """Asks the CTI server to push a call form (XiVO's "sheet") to a user or to the
    members of a queue, e.g. when a call reaches them."""

    name: ClassVar[str] = "call_form_request"
    description: ClassVar[str] = (
        "Push a call form (a sheet) to the CTI clients and open web pages of a user, or "
        "of the members of a queue: set user_id or queue."
    )

    user_id: StrictInt | None = Field(default=None, description="the user to show it to")
    queue: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="or: every member of this queue"
    )
    form: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="the form's id (default: the first form)"
    )
    channel: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="the call's channel, e.g. SIP/abc-00000001: a later request for the "
        "same channel replaces the form on the desktop client",
    )
    variables: dict[StrictStr, FormValue] = Field(
        default_factory=dict,
        description="the call's variables: each one pre-fills the field of that name and "
        "replaces {name} in the form's texts",
    )

    @property
    def data(self) -> Any:
        return self.model_dump(mode="json", exclude_none=True)

    @model_validator(mode="after")
    def _one_target(self) -> CallFormRequest:
        if (self.user_id is None) == (self.queue is None):
            raise ValueError("give either user_id or queue")
        return self


class GenericEvent:
    """An event whose name the catalogue does not know: kept as it came, never dropped."""

    exchange = CTI_EXCHANGE

    def __init__(self, name: str, data: Any = None):
        self.name = name
        self.data = data

    @property
    def routing_key(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenericEvent) and (self.name, self.data) == (
            other.name,
            other.data,
        )

    def __repr__(self) -> str:
        return f"GenericEvent(name={self.name!r}, data={self.data!r})"


CATALOGUE: dict[str, type[Event]] = {cls.name: cls for cls in (CallFormResult, CallFormRequest)}

AnyEvent = Event | GenericEvent


def make(name: str, data: Any) -> AnyEvent:
    """Build an event from its name and data, validating known events."""
    cls = CATALOGUE.get(name)
    if cls is None:
        return GenericEvent(name, data)
    return cls.from_data(data)


def encode(event: AnyEvent) -> tuple[bytes, dict]:
    """The message body and AMQP properties for an event.

    The body is exactly ``{"name": ..., "data": ...}``; the properties carry
    ``content_type``, the ``timestamp`` property and the headers ``name`` and
    ``timestamp`` (ISO 8601, UTC, to the microsecond, so a consumer can see any delay).
    """
    now = datetime.now(UTC)
    body = json.dumps({"name": event.name, "data": event.data}, ensure_ascii=False)
    properties = {
        "content_type": CONTENT_TYPE,
        "timestamp": now,
        "headers": {"name": event.name, "timestamp": now.isoformat()},
    }
    return body.encode("utf-8"), properties


def decode(body: bytes | str) -> AnyEvent:
    """Parse and validate a message body into an event."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise EventError(f"body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise EventError(f"body must be a JSON object, not {type(document).__name__}")
    if "name" not in document:
        raise EventError("name: field required")
    name = document["name"]
    if not isinstance(name, str):
        raise EventError(f"name: must be a string, not {type(name).__name__}")
    return make(name, document.get("data"))


# pydantic names each member of a union in the error's location; a form value's
# members say one thing together.
_FORM_VALUE_MEMBERS = {"str", "bool", "int", "float"}


def _describe(event_name: str, error: ValidationError) -> str:
    problems: dict[str, str] = {}
    for item in error.errors():
        loc = item["loc"]
        message = item["msg"].lower()
        if loc and loc[-1] in _FORM_VALUE_MEMBERS:
            loc, message = loc[:-1], "input should be a string, a boolean or a finite number"
        where = ".".join(str(part) for part in ("data", *loc))
        problems.setdefault(where, message)
    return f"invalid {event_name} event: " + "; ".join(
        f"{where}: {message}" for where, message in problems.items()
    )


def json_schema(cls: type[Event]) -> dict:
    """The JSON Schema of a whole event message of this type."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": cls.name,
        "description": cls.description,
        "type": "object",
        "properties": {"name": {"const": cls.name}, "data": cls.data_schema()},
        "required": ["name", "data"],
        "additionalProperties": False,
    }


def asyncapi() -> dict:
    """An AsyncAPI 2.6 document describing the bus: exchanges, routing keys, payloads."""
    channels = {}
    for name, cls in CATALOGUE.items():
        channels[name] = {
            "description": cls.description,
            "subscribe": {
                "operationId": f"receive_{name}",
                "message": {
                    "name": name,
                    "contentType": CONTENT_TYPE,
                    "payload": json_schema(cls),
                },
            },
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": cls.exchange,
                        "type": cls.exchange_type,
                        "durable": True,
                        "autoDelete": False,
                        "vhost": "/",
                    },
                }
            },
        }
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "XiVO message bus",
            "version": "1.0.0",
            "description": "Events XiVO publishes on its AMQP 0-9-1 bus, as JSON "
            '{"name": ..., "data": ...}; the routing key is the event name.',
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "url": "amqp://guest:guest@127.0.0.1:5672/%2F",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
            }
        },
        "channels": channels,
    }
