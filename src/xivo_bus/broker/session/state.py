"""The connection's state machine. Everything that decides which state a connection is
in, and which connection method it expects there, lives here: states, events and the
table of transitions (as h11's ``_state.py``).

    HEADER --protocol header--> STARTING --start-ok--> TUNING --tune-ok--> OPENING
      --open--> RUNNING;  any of those --close sent--> CLOSING;  any --closed--> CLOSED

In STARTING, TUNING and OPENING the connection expects one method (``EXPECTED``);
channel methods are served only while RUNNING; CLOSING waits for close-ok.
"""

from __future__ import annotations

import enum

from pamqp import commands


class State(enum.Enum):
    # the values are RabbitMQ's names, as its error texts show them
    HEADER = "header"  # waiting for the protocol header
    STARTING = "starting"  # connection.start sent
    TUNING = "tuning"  # connection.tune sent
    OPENING = "opening"  # waiting for connection.open
    RUNNING = "running"
    CLOSING = "closing"  # connection.close sent, waiting for close-ok
    CLOSED = "closed"


class Event(enum.Enum):
    HEADER = "protocol header"
    START_OK = "start-ok"
    TUNE_OK = "tune-ok"
    OPEN = "open"
    CLOSE_SENT = "close sent"
    CLOSED = "closed"


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.HEADER, Event.HEADER): State.STARTING,
    (State.STARTING, Event.START_OK): State.TUNING,
    (State.TUNING, Event.TUNE_OK): State.OPENING,
    (State.OPENING, Event.OPEN): State.RUNNING,
    **{
        (state, Event.CLOSE_SENT): State.CLOSING
        for state in (State.HEADER, State.STARTING, State.TUNING, State.OPENING, State.RUNNING)
    },
    **{(state, Event.CLOSED): State.CLOSED for state in State},
}

# The handshake method each state waits for, and the event it makes.
EXPECTED: dict[State, tuple[type, Event]] = {
    State.STARTING: (commands.Connection.StartOk, Event.START_OK),
    State.TUNING: (commands.Connection.TuneOk, Event.TUNE_OK),
    State.OPENING: (commands.Connection.Open, Event.OPEN),
}


class InvalidTransition(Exception):
    """A transition the table does not have: a bug in the connection, not the client's
    doing."""


class ConnectionState:
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = State.HEADER

    def advance(self, event: Event) -> State:
        try:
            self.state = TRANSITIONS[self.state, event]
        except KeyError:
            raise InvalidTransition(f"{event.value} in state {self.state.value}") from None
        return self.state

    def expects(self, method: object) -> Event | None:
        """The event ``method`` makes if it is the handshake method awaited now."""
        expected = EXPECTED.get(self.state)
        if expected is not None and isinstance(method, expected[0]):
            return expected[1]
        return None

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def ending(self) -> bool:
        """Closing or closed: nothing more is served."""
        return self.state is State.CLOSING or self.state is State.CLOSED
