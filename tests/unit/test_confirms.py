"""Publisher confirm runs: which basic.ack / basic.nack frames a channel sends."""

from xivo_bus.broker.session.confirms import Confirms


def publish(confirms: Confirms, outcomes: str) -> None:
    """``outcomes``: one letter per publish, a(ccepted) or r(efused)."""
    for outcome in outcomes:
        confirms.published(refused=outcome == "r")


def test_nothing_published_nothing_due():
    assert Confirms().due(0) == []


def test_one_publish_one_single_ack():
    confirms = Confirms()
    publish(confirms, "a")
    assert confirms.due(0) == [(True, 1, False)]
    assert confirms.due(0) == []


def test_many_publishes_one_multiple_ack():
    confirms = Confirms()
    publish(confirms, "aaaa")
    assert confirms.due(0) == [(True, 4, True)]
    publish(confirms, "a")
    assert confirms.due(0) == [(True, 5, False)]  # 5 alone: not multiple


def test_refused_publishes_split_runs_of_alike_outcomes():
    confirms = Confirms()
    publish(confirms, "aarraraa")
    assert confirms.due(0) == [
        (True, 2, True),
        (False, 4, True),
        (True, 5, False),
        (False, 6, False),
        (True, 8, True),
    ]
    assert confirms.confirmed == 8
    publish(confirms, "a")
    assert confirms.due(0) == [(True, 9, False)]  # the refusals were forgotten


def test_runs_start_after_what_was_confirmed():
    confirms = Confirms()
    publish(confirms, "aa")
    confirms.due(0)
    publish(confirms, "ra")
    assert confirms.due(0) == [(False, 3, False), (True, 4, False)]


def test_a_publish_waiting_for_the_disk_holds_back_those_after_it():
    confirms = Confirms()
    confirms.published(False, write=10, copies=1)
    publish(confirms, "aa")
    assert confirms.due(committed=9) == []
    assert confirms.waiting
    assert confirms.due(committed=10) == [(True, 3, True)]
    assert not confirms.waiting


def test_a_publish_every_queue_is_done_with_is_acked_before_its_write():
    early = []
    confirms = Confirms(on_early=lambda: early.append(True))
    first = confirms.published(False, write=10, copies=1)
    second = confirms.published(False, write=11, copies=2)
    publish(confirms, "a")
    second.copy_settled()
    assert early == []  # one of its two queues still holds it
    second.copy_settled()
    assert early == [True]
    assert confirms.due(committed=0) == [(True, 2, False)]  # out of order, alone
    first.copy_settled()
    # the first is settled too: one multiple ack covers everything up to the last
    assert confirms.due(committed=0) == [(True, 3, True)]
    assert confirms.due(committed=100) == []


def test_a_late_settlement_changes_nothing():
    early = []
    confirms = Confirms(on_early=lambda: early.append(True))
    pending = confirms.published(False, write=5, copies=1)
    assert confirms.due(committed=5) == [(True, 1, False)]
    pending.copy_settled()  # acked after its write was on disk and confirmed
    assert early == []
    assert confirms.due(committed=5) == []


def two_waiting() -> tuple[Confirms, object, object]:
    confirms = Confirms()
    first = confirms.published(False, write=5, copies=1)
    return confirms, first, confirms.published(False, write=6, copies=1)


def test_a_run_of_publishes_all_acked_early_is_not_acked_again():
    confirms, first, second = two_waiting()
    second.copy_settled()
    assert confirms.due(committed=0) == [(True, 2, False)]
    first.copy_settled()
    assert confirms.due(committed=0) == [(True, 1, False)]  # not a multiple ack of 2
    assert confirms.confirmed == 2
    assert confirms.due(committed=10) == []


def test_settled_before_anything_was_sent_one_multiple_ack():
    confirms, first, second = two_waiting()
    first.copy_settled()
    second.copy_settled()
    assert confirms.due(committed=0) == [(True, 2, True)]
