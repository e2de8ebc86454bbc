"""The CTI protocol's framing, sans-I/O: one JSON object per line, ``\\n``-terminated, both
ways (XiVO's CTI server and desktop client, every version).

``LineBuffer`` cuts received bytes into lines and refuses a line longer than its cap
before it has been received whole, so a peer that never sends ``\\n`` costs at most the
cap in memory. ``decode`` parses one line; ``encode`` serialises a server message with
the ``timenow`` XiVO's server put on every message it sent.
"""

from __future__ import annotations

import json
from typing import Any

MAX_LINE = 1 << 20  # 1 MiB: a call form of many long texts fits many times over


class CtiProtocolError(ValueError):
    """Input that ends the connection (XiVO's server dropped it, and so do we)."""


class LineTooLong(CtiProtocolError):
    pass


class MalformedMessage(CtiProtocolError):
    pass


class LineBuffer:
    """Received bytes in, complete lines out (without their ``\\n``; blank lines skipped)."""

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line kept so far."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The lines ``data`` completes; ``LineTooLong`` once a line exceeds the cap."""
        start = len(self._buffer)  # only the new bytes can hold a new line end
        self._buffer += data
        lines: list[bytes] = []
        begin = 0
        end = self._buffer.find(b"\n", start)
        while end >= 0:
            if end - begin > self.max_line:
                raise LineTooLong(f"a line of {end - begin} bytes (at most {self.max_line})")
            line = bytes(self._buffer[begin:end])
            if line.strip():
                lines.append(line)
            begin = end + 1
            end = self._buffer.find(b"\n", begin)
        del self._buffer[:begin]
        if len(self._buffer) > self.max_line:
            raise LineTooLong(f"more than {self.max_line} bytes without a line end")
        return lines


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(line: bytes) -> dict:
    """One received line as a message: a JSON object with a string ``class``."""
    try:
        message = json.loads(line.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise MalformedMessage(f"not JSON: {error}") from None
    if not isinstance(message, dict):
        raise MalformedMessage(f"not a JSON object but {type(message).__name__}")
    if not isinstance(message.get("class"), str):
        raise MalformedMessage("no class")
    return message


def encode(message: dict, now: float) -> bytes:
    """A server message as its line, with ``timenow`` (Unix time, seconds)."""
    return json.dumps({**message, "timenow": now}, separators=(",", ":")).encode("ascii") + b"\n"
