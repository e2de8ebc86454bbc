"""Scenario modules; importing this package registers them all."""

from . import (  # noqa: F401
    access,
    basic,
    channel,
    connection,
    exchange,
    extensions,
    libraries,
    queue,
    routing,
    settle,
    transactions,
)
