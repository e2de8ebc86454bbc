"""Declaration rules: argument validation, redeclare equivalence, RabbitMQ's wording."""

import pytest

from xivo_bus.amqp import errors
from xivo_bus.broker.model import wording
from xivo_bus.broker.model.arguments import (
    QUEUE_ARGUMENTS,
    QUEUE_EQUIVALENCE,
    QueueSettings,
    check_equivalent,
    check_queue_declare,
    consumer_priority,
    parse_expiration,
)


def refusal(call, *args) -> str:
    with pytest.raises(errors.ChannelError) as raised:
        call(*args)
    assert raised.value.reply_code == errors.PRECONDITION_FAILED
    return raised.value.text


def declare(arguments: dict, durable=False, exclusive=False, auto_delete=False) -> str:
    return refusal(check_queue_declare, "q", "/", arguments, durable, exclusive, auto_delete)


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ({"x-expires": 0}, "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"),
        (
            {"x-message-ttl": "x"},
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': "
            '"expected integer, got longstr"',
        ),
        (
            {"x-dead-letter-exchange": 5},
            "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'",
        ),
        (
            {"x-dead-letter-routing-key": "k"},
            "invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': "
            "routing_key_but_no_dlx_defined",
        ),
        (
            {"x-max-priority": 256},
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,256}",
        ),
        (
            {"x-overflow": "nope"},
            "invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow",
        ),
        (
            {"x-delivery-limit": 3},
            "invalid arg 'x-delivery-limit' for queue 'q' in vhost '/' of queue type "
            "rabbit_classic_queue",
        ),
        (
            {"x-queue-type": "quorum"},
            "invalid property 'non-durable' for queue 'q' in vhost '/'",
        ),
    ],
)
def test_refused_declarations(arguments, text):
    assert declare(arguments) == text


def test_quorum_queue_is_refused_as_an_unknown_type_once_its_checks_pass():
    assert declare({"x-queue-type": "quorum"}, durable=True) == (
        "invalid arg 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'quorum'\""
    )


def test_valid_classic_declaration_passes_and_settles():
    arguments = {
        "x-message-ttl": 5000,
        "x-max-length": 10,
        "x-overflow": "reject-publish",
        "x-dead-letter-exchange": "dlx",
        "x-single-active-consumer": True,
    }
    check_queue_declare("q", "/", arguments, True, False, False)
    settings = QueueSettings(arguments)
    assert settings.message_ttl == 5000 and settings.limited
    assert settings.overflow == "reject-publish"
    assert settings.dead_letter_exchange == "dlx" and settings.single_active_consumer


def test_one_table_of_queue_arguments():
    names = [name for name, _, _ in QUEUE_ARGUMENTS]
    assert len(names) == len(set(names))
    assert "x-queue-version" not in QUEUE_EQUIVALENCE  # validated, not compared
    assert "x-queue-master-locator" in QUEUE_EQUIVALENCE  # compared, not validated


@pytest.mark.parametrize(
    ("received", "current", "text"),
    [
        (
            {"x-max-length": 5},
            {"x-max-length": 6},
            "inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received '5' but "
            "current is '6'",
        ),
        (
            {"x-max-length": 5},
            {},
            "inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received the value "
            "'5' of type 'signedint' but current is none",
        ),
        (
            {},
            {"x-message-ttl": 2**40},
            "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received none but "
            "current is the value '1099511627776' of type 'long'",
        ),
    ],
)
def test_inequivalent_queue_arguments(received, current, text):
    same = {"durable": True}
    assert refusal(check_equivalent, "queue", "q", "/", same, same, (received, current)) == text


def test_unchecked_arguments_may_differ_and_properties_come_first():
    same = {"durable": True}
    check_equivalent("queue", "q", "/", same, same, ({"x-custom": 1}, {"x-custom": 2}))
    assert refusal(
        check_equivalent,
        "exchange",
        "e",
        "/",
        {"type": "topic", "durable": False},
        {"type": "direct", "durable": True},
        ({"alternate-exchange": "a"}, {}),
    ) == (
        "inequivalent arg 'type' for exchange 'e' in vhost '/': received 'topic' but current "
        "is 'direct'"
    )


@pytest.mark.parametrize(
    ("value", "ttl", "text"),
    [
        ("1000", 1000, None),
        (b"0", 0, None),
        ("abc", None, "invalid expiration 'abc': no_integer"),
        ("10s", None, "invalid expiration '10s': {leftover_string,\"s\"}"),
        ("-1", None, "invalid expiration '-1': {value_negative,-1}"),
    ],
)
def test_expiration_property(value, ttl, text):
    if text is None:
        assert parse_expiration(value) == ttl
    else:
        assert refusal(parse_expiration, value) == text


def test_consumer_priority():
    assert consumer_priority("q", "/", None) == 0
    assert consumer_priority("q", "/", {"x-priority": 7}) == 7
    assert refusal(consumer_priority, "q", "/", {"x-priority": "high"}) == (
        "invalid arg 'x-priority' for queue 'q' in vhost '/': \"expected integer, got longstr\""
    )


def test_erlang_layout_breaks_long_tuples_under_their_first_element():
    prefix = "invalid arg 'x' for queue '" + "n" * 60 + "': "
    laid_out = wording.pretty(prefix, ("value_too_large", 10**15))
    first, second = laid_out.split("\n")
    assert first == prefix + "{value_too_large,"
    assert second == " " * (len(prefix) + 1) + f"{10**15}}}"
    assert wording.pretty("short: ", ("a", 1)) == "short: {a,1}"


def test_long_reply_texts_are_cut_as_rabbitmq_cuts_them():
    text = wording.not_found("queue", "q" * 300, "/").reply_text
    assert len(text.encode()) == 255 and text.endswith("...")
