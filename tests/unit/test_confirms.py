"""Publisher confirm runs: which basic.ack / basic.nack frames a channel sends."""

from xivo_bus.broker.session.confirms import Confirms


def publish(confirms: Confirms, outcomes: str) -> None:
    """``outcomes``: one letter per publish, a(ccepted) or r(efused)."""
    for outcome in outcomes:
        confirms.published(refused=outcome == "r")


def test_nothing_published_nothing_due():
    assert Confirms().due() == []


def test_one_publish_one_single_ack():
    confirms = Confirms()
    publish(confirms, "a")
    assert confirms.due() == [(True, 1, False)]
    assert confirms.due() == []


def test_many_publishes_one_multiple_ack():
    confirms = Confirms()
    publish(confirms, "aaaa")
    assert confirms.due() == [(True, 4, True)]
    publish(confirms, "a")
    assert confirms.due() == [(True, 5, False)]  # 5 alone: not multiple


def test_refused_publishes_split_runs_of_alike_outcomes():
    confirms = Confirms()
    publish(confirms, "aarraraa")
    assert confirms.due() == [
        (True, 2, True),
        (False, 4, True),
        (True, 5, False),
        (False, 6, False),
        (True, 8, True),
    ]
    assert confirms.confirmed == 8
    publish(confirms, "a")
    assert confirms.due() == [(True, 9, False)]  # the refusals were forgotten


def test_runs_start_after_what_was_confirmed():
    confirms = Confirms()
    publish(confirms, "aa")
    confirms.due()
    publish(confirms, "ra")
    assert confirms.due() == [(False, 3, False), (True, 4, False)]
