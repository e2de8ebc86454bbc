"""A channel's unacked deliveries: which an ack, nack or reject settles."""

import pytest

from xivo_bus.amqp import errors
from xivo_bus.broker.session.unacked import Unacked


def tracked(count: int) -> Unacked:
    unacked = Unacked()
    for tag in range(1, count + 1):
        assert unacked.add(f"delivery {tag}") == tag
    return unacked


def test_tags_count_up_from_one_and_no_ack_deliveries_are_not_kept():
    unacked = Unacked()
    assert [unacked.add(None) for _ in range(3)] == [1, 2, 3]
    assert unacked.last_tag == 3 and not unacked
    assert unacked.add("kept") == 4 and len(unacked) == 1


def test_single_tag():
    unacked = tracked(3)
    assert unacked.take(2, False) == ["delivery 2"]
    assert len(unacked) == 2 and unacked.oldest_tag() == 1


def test_multiple_takes_every_tag_up_to_it():
    unacked = tracked(5)
    unacked.take(2, False)
    assert unacked.take(4, True) == ["delivery 1", "delivery 3", "delivery 4"]
    assert unacked.oldest_tag() == 5


def test_multiple_zero_takes_everything():
    unacked = tracked(3)
    assert unacked.take(0, True) == ["delivery 1", "delivery 2", "delivery 3"]
    assert unacked.oldest_tag() is None


@pytest.mark.parametrize(("tag", "multiple"), [(9, False), (9, True), (0, False)])
def test_unknown_tag_is_406(tag, multiple):
    unacked = tracked(3)
    with pytest.raises(errors.ChannelError) as raised:
        unacked.take(tag, multiple)
    assert raised.value.reply_code == errors.PRECONDITION_FAILED
    assert raised.value.reply_text == f"PRECONDITION_FAILED - unknown delivery tag {tag}"
    assert len(unacked) == 3  # nothing taken
    with pytest.raises(errors.ChannelError):
        unacked.check_known(tag, multiple)


def test_a_tag_settles_once():
    unacked = tracked(2)
    unacked.take(1, False)
    with pytest.raises(errors.ChannelError):
        unacked.take(1, False)
    unacked.check_known(0, True)  # multiple 0 is always known
