"""The users file: scrypt hashes, ids, errors, re-reading on change, the session secret."""

from __future__ import annotations

import json
import stat

import pytest

from xivo_bus.cti.users import (
    UserError,
    UserStore,
    hash_password,
    session_secret,
    verify_password,
)


def test_hashes_are_salted_scrypt_and_verify():
    first, second = hash_password("pw"), hash_password("pw")
    assert first.startswith("scrypt$") and first != second
    assert verify_password("pw", first) and verify_password("pw", second)
    assert not verify_password("pW", first)
    assert not verify_password("pw", "plain")
    assert not verify_password("pw", "md5$1$2$3$x$y")


def test_add_authenticate_and_file_format(tmp_path):
    store = UserStore(tmp_path)
    alice = store.add("alice", "secret", user_id=40, name="Alice Martin")
    bob = store.add("bob", "hunter2")  # next free id, login as name
    assert (bob.id, bob.name) == (41, "bob")
    assert store.authenticate("alice", "secret") == alice
    assert store.authenticate("alice", "wrong") is None
    assert store.authenticate("nobody", "secret") is None
    path = tmp_path / "users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())["users"]
    assert [(u["id"], u["login"], u["name"]) for u in saved] == [
        (40, "alice", "Alice Martin"),
        (41, "bob", "bob"),
    ]
    assert "secret" not in path.read_text()


@pytest.mark.parametrize(
    ("login", "password", "user_id", "message"),
    [
        ("alice", "x", None, "login 'alice' already exists (id 40)"),
        ("carol", "x", 40, "user id 40 already belongs to 'alice'"),
        ("carol", "", None, "the password must not be empty"),
        ("bad login", "x", None, "login 'bad login': use 1 to 64 letters"),
        ("carol", "x", -1, "user id -1: must be zero or positive"),
    ],
)
def test_bad_users_are_refused(tmp_path, login, password, user_id, message):
    store = UserStore(tmp_path)
    store.add("alice", "secret", user_id=40)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.add(login, password, user_id=user_id)


def test_a_running_store_sees_users_added_and_removed_elsewhere(tmp_path):
    running = UserStore(tmp_path)
    assert running.get("alice") is None
    UserStore(tmp_path).add("alice", "secret", user_id=40)
    assert running.get("alice").id == 40
    UserStore(tmp_path).remove("alice")
    assert running.get("alice") is None
    with pytest.raises(UserError, match="no user 'alice'"):
        running.remove("alice")


def test_a_broken_users_file_is_a_clear_error(tmp_path):
    (tmp_path / "users.json").write_text('{"people": []}')
    with pytest.raises(UserError, match="users.json: not a users file"):
        UserStore(tmp_path).all()


def test_session_secret_is_made_once_and_kept(tmp_path):
    secret = session_secret(tmp_path)
    assert len(secret) == 64
    assert session_secret(tmp_path) == secret
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
