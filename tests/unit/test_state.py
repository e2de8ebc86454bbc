"""The connection's state machine, on its own: the table, not a socket."""

import pytest
from pamqp import commands

from xivo_bus.broker.session.state import (
    EXPECTED,
    TRANSITIONS,
    ConnectionState,
    Event,
    InvalidTransition,
    State,
)


def test_handshake_runs_in_amqp_order():
    state = ConnectionState()
    for event, after in (
        (Event.HEADER, State.STARTING),
        (Event.START_OK, State.TUNING),
        (Event.TUNE_OK, State.OPENING),
        (Event.OPEN, State.RUNNING),
        (Event.CLOSE_SENT, State.CLOSING),
        (Event.CLOSED, State.CLOSED),
    ):
        assert state.advance(event) is after
    assert state.closed and state.ending


@pytest.mark.parametrize(
    "events",
    [
        [Event.START_OK],  # start-ok before the protocol header
        [Event.HEADER, Event.TUNE_OK],  # tune-ok before start-ok
        [Event.HEADER, Event.START_OK, Event.OPEN],  # open before tune-ok
        [Event.HEADER, Event.CLOSE_SENT, Event.CLOSE_SENT],  # close sent twice
        [Event.CLOSED, Event.OPEN],
    ],
)
def test_transitions_outside_the_table_are_refused(events):
    state = ConnectionState()
    for event in events[:-1]:
        state.advance(event)
    before = state.state
    with pytest.raises(InvalidTransition):
        state.advance(events[-1])
    assert state.state is before


def test_every_state_can_close_and_only_live_ones_can_send_close():
    for state in State:
        assert TRANSITIONS[state, Event.CLOSED] is State.CLOSED
        closable = (state, Event.CLOSE_SENT) in TRANSITIONS
        assert closable == (state not in (State.CLOSING, State.CLOSED))


def test_each_handshake_state_expects_its_method_only():
    start_ok = commands.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response="\0guest\0guest", locale="en_US"
    )
    tune_ok = commands.Connection.TuneOk(channel_max=0, frame_max=131072, heartbeat=60)
    open_ = commands.Connection.Open(virtual_host="/")
    state = ConnectionState()
    assert state.expects(start_ok) is None  # no header yet
    state.advance(Event.HEADER)
    assert state.expects(start_ok) is Event.START_OK
    assert state.expects(tune_ok) is None and state.expects(open_) is None
    state.advance(Event.START_OK)
    assert state.expects(tune_ok) is Event.TUNE_OK and state.expects(start_ok) is None
    state.advance(Event.TUNE_OK)
    assert state.expects(open_) is Event.OPEN
    state.advance(Event.OPEN)
    assert state.expects(open_) is None


def test_state_names_are_rabbitmqs():
    # RabbitMQ's texts say "unexpected method in connection state tuning"
    assert {state.value for state in EXPECTED} == {"starting", "tuning", "opening"}
