"""The store's writes, in-process on a real SQLite file (no writer thread)."""

from xivo_bus.broker.store import (
    AddEntry,
    MarkDelivered,
    RemoveEntry,
    SaveMessage,
    SaveQueue,
    Store,
    encode_table,
)


def opened(tmp_path) -> Store:
    store = Store(tmp_path)
    store.open()
    return store


def rows(store: Store, sql: str) -> list:
    return store._connection.execute(sql).fetchall()


def test_writes_are_applied_in_one_transaction_with_delivery_watermarks(tmp_path):
    store = opened(tmp_path)
    store._commit(
        [
            SaveQueue("/", "q", False, encode_table({"x-max-length": 5})),
            SaveMessage(1, "", "q", b"", b"body"),
            AddEntry("/", "q", 1, 1, None),
            AddEntry("/", "q", 2, 1, 1234.5),
            MarkDelivered("/", "q", 1),
            MarkDelivered("/", "q", 2),
            RemoveEntry("/", "q", 1, None),
        ]
    )
    assert rows(store, "SELECT name, delivered_upto FROM queues") == [("q", 2)]
    assert rows(store, "SELECT seq, expires_at FROM queue_messages") == [(2, 1234.5)]
    store._commit([RemoveEntry("/", "q", 2, 1)])  # the last reference: the body goes too
    assert rows(store, "SELECT count(*) FROM messages") == [(0,)]
    recovered = Store(tmp_path).open()
    assert [(q.name, q.arguments, q.delivered_upto) for q in recovered.queues] == [
        ("q", {"x-max-length": 5}, 2)
    ]


def test_while_full_removals_go_first_and_cancel_their_own_additions(tmp_path):
    store = opened(tmp_path)
    pending = list(
        enumerate(
            [
                SaveMessage(1, "", "q", b"", b"gone before written"),
                AddEntry("/", "q", 1, 1, None),
                SaveMessage(2, "", "q", b"", b"still to write"),
                AddEntry("/", "q", 2, 2, None),
                RemoveEntry("/", "q", 1, 1),
                MarkDelivered("/", "q", 2),
            ],
            start=1,
        )
    )
    left = store._write_what_frees_space(pending)
    assert [op for _, op in left] == [
        SaveMessage(2, "", "q", b"", b"still to write"),
        AddEntry("/", "q", 2, 2, None),
    ]
