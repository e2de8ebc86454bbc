"""The store's writes, in-process on a real SQLite file (no writer thread)."""

import sqlite3

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
