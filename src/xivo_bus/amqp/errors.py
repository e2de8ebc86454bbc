"""AMQP 0-9-1 reply codes and the two kinds of protocol error.

Errors are raised where they are detected; the broker connection is the one
place that turns them into ``channel.close`` or ``connection.close``.
"""

from __future__ import annotations

REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311
NO_ROUTE = 312
NO_CONSUMERS = 313
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

REPLY_NAMES = {
    REPLY_SUCCESS: "OK",
    CONTENT_TOO_LARGE: "CONTENT_TOO_LARGE",
    NO_ROUTE: "NO_ROUTE",
    NO_CONSUMERS: "NO_CONSUMERS",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    INVALID_PATH: "INVALID_PATH",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}


class AMQPError(Exception):
    """A protocol error with its reply code, text and the offending method's ids.

    ``reply_text`` is formatted as RabbitMQ does: ``"NOT_FOUND - no queue 'q' in vhost '/'"``.
    """

    def __init__(self, reply_code: int, text: str, class_id: int = 0, method_id: int = 0):
        super().__init__(reply_code, text)
        self.reply_code = reply_code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id

    @property
    def reply_text(self) -> str:
        """The text as RabbitMQ words it; past the 255 bytes a short string holds, cut to
        252 bytes and "..." as RabbitMQ does. A name that was not UTF-8 (kept as
        surrogates) shows with replacement characters."""
        text = f"{REPLY_NAMES[self.reply_code]} - {self.text}"
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raw = text.encode("utf-8")
        if len(raw) <= 255:
            return text
        return raw[:252].decode("utf-8", "ignore") + "..."

    def __str__(self) -> str:
        return f"{self.reply_code} {self.reply_text}"


class ChannelError(AMQPError):
    """An error that closes only the offending channel (``channel.close``)."""


class ConnectionError(AMQPError):  # noqa: A001 - the AMQP name; always used as errors.ConnectionError
    """An error that closes the whole connection (``connection.close``)."""
