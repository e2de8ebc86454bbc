"""The store's writes, in-process on a real SQLite file (no writer thread)."""

import sqlite3

from xivo_bus.broker.store import (
    AddEntry,
    DeleteQueue,
    MarkDelivered,
    RemoveEntry,
    SaveMessage,
    SaveQueue,
    Store,
    _without_acked,
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
    left = store._write_what_frees_space(_without_acked(pending))
    assert [op for _, op in left] == [
        SaveMessage(2, "", "q", b"", b"still to write"),
        AddEntry("/", "q", 2, 2, None),
    ]


def test_a_batch_skips_what_it_would_only_undo():
    """A persistent message acked before its batch is written is never written; a
    removal undoes only the latest addition of its entry, and still deletes a message
    whose row an earlier batch wrote."""
    shared = SaveMessage(7, "", "q", b"", b"in two queues")
    earlier = RemoveEntry("/", "q", 3, 5)  # message 5 was written by an earlier batch
    batch = [
        SaveMessage(1, "", "q", b"", b"acked at once"),
        AddEntry("/", "q", 1, 1, None),
        shared,
        AddEntry("/", "a", 1, 7, None),
        AddEntry("/", "b", 1, 7, None),
        AddEntry("/", "q", 3, 5, None),
        RemoveEntry("/", "q", 1, 1),
        RemoveEntry("/", "a", 1, None),  # b still holds message 7
        MarkDelivered("/", "q", 3),
        earlier,
        DeleteQueue("/", "r"),
        AddEntry("/", "r", 1, 8, None),  # r declared again: its seq 1 anew
        RemoveEntry("/", "r", 1, None),
        AddEntry("/", "r", 1, 9, None),
    ]
    left = [op for _, op in _without_acked(list(enumerate(batch)))]
    assert left == [
        shared,
        AddEntry("/", "b", 1, 7, None),
        MarkDelivered("/", "q", 3),
        RemoveEntry("/", "q", 3, 5),
        DeleteQueue("/", "r"),
        AddEntry("/", "r", 1, 9, None),
    ]


def test_a_store_from_before_users_gets_the_default_user(tmp_path):
    old = sqlite3.connect(tmp_path / "broker.sqlite")
    old.executescript(
        "CREATE TABLE queues (vhost TEXT NOT NULL, name TEXT NOT NULL, "
        "auto_delete INTEGER NOT NULL, arguments BLOB NOT NULL, "
        "delivered_upto INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (vhost, name));"
        "INSERT INTO queues VALUES ('/', 'kept', 0, x'', 0);"
    )
    old.close()
    recovered = Store(tmp_path).open()
    assert recovered.fresh  # the broker makes / and guest, as on a first start
    assert [queue.name for queue in recovered.queues] == ["kept"]


def test_users_and_vhosts_without_limits_are_upgraded_not_salvaged(tmp_path):
    old = sqlite3.connect(tmp_path / "broker.sqlite")
    old.executescript(
        "CREATE TABLE vhosts (name TEXT PRIMARY KEY);"
        "CREATE TABLE users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, "
        "hashing TEXT NOT NULL, tags TEXT NOT NULL, permissions TEXT NOT NULL, "
        "topic_permissions TEXT NOT NULL);"
        "INSERT INTO vhosts VALUES ('/');"
        "INSERT INTO users VALUES ('svc', 'h', 'rabbit_password_hashing_sha256', '[]', "
        '\'{"/": [".*", ".*", ".*"]}\', \'{}\');'
    )
    old.close()
    recovered = Store(tmp_path).open()
    assert not recovered.fresh and not recovered.skipped
    assert recovered.vhosts == {"/": {}}
    [user] = recovered.users
    assert (user.name, user.permissions, user.limits) == ("svc", {"/": [".*", ".*", ".*"]}, {})
