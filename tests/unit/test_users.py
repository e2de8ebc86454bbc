"""Users, password hashes and permission matching, in RabbitMQ's terms."""

import base64

import pytest

from xivo_bus.amqp import errors
from xivo_bus.broker import access as access_module
from xivo_bus.broker.access import Access
from xivo_bus.broker.users import (
    SHA256,
    Permission,
    UserError,
    Users,
    check_password,
    hash_password,
)

# Made by RabbitMQ 3.10.8 (`rabbitmqctl add_user hashprobe pässword`, then
# `export_definitions`): our check must accept its hashes, as definitions carry them.
RABBITMQ_HASH = "pldTxb8sHLt+lg739RtMEJSCs6h/vaNUe68TGJtWnn94xlFy"


def test_rabbitmq_hashes_are_checked_as_rabbitmq_checks_them():
    assert check_password("pässword", RABBITMQ_HASH, SHA256)
    assert not check_password("password", RABBITMQ_HASH, SHA256)
    assert not check_password("pässword", RABBITMQ_HASH, "rabbit_password_hashing_sha512")
    assert not check_password("x", "not base64!", SHA256)
    assert not check_password("", "", SHA256)


def test_our_hashes_have_rabbitmqs_layout_salted_each_time():
    first, second = hash_password("secret"), hash_password("secret")
    assert first != second  # a fresh 4-byte salt each time
    assert check_password("secret", first) and check_password("secret", second)
    assert len(base64.b64decode(first)) == 4 + 32


def test_permissions_match_anywhere_and_empty_matches_nothing():
    permission = Permission("^a-.*", "a-|amq.default", "")
    assert permission.allows("configure", "a-q")
    assert not permission.allows("configure", "b-a-q")  # anchored by the user, not by us
    assert permission.allows("write", "xx-a-yy")  # unanchored: matches anywhere
    assert not permission.allows("read", "anything")  # empty: nothing


def test_user_lifecycle_and_refusals():
    users = Users()
    users.add("alice", "s3cret")
    with pytest.raises(UserError, match='User "alice" already exists'):
        users.add("alice", "x")
    users.set_tags("alice", ["monitoring", "management", "monitoring", ""])
    assert users.user("alice").tags == ("monitoring", "management")
    users.change_password("alice", "n3w")
    assert users.user("alice").check_password("n3w")
    users.clear_password("alice")
    assert not users.user("alice").check_password("")
    with pytest.raises(UserError, match="invalid regular expression"):
        users.set_permissions("alice", "/", "(", ".*", ".*")
    with pytest.raises(UserError, match='User "bob" does not exist'):
        users.delete("bob")


def test_topic_permissions_expand_user_and_vhost():
    users = Users()
    users.add("alice", "x")
    users.set_topic_permissions("alice", "v1", "amq.topic", "^{username}\\.", "^{vhost}\\.")
    alice = users.user("alice")
    assert alice.topic_allows("v1", "amq.topic", "write", "alice.news")
    assert not alice.topic_allows("v1", "amq.topic", "write", "bob.news")
    assert alice.topic_allows("v1", "amq.topic", "read", "v1.x")
    assert alice.topic_allows("v1", "other.topic", "write", "anything")  # none set there
    users.clear_topic_permissions("alice", "v1", "amq.topic")
    assert alice.topic_allows("v1", "amq.topic", "write", "bob.news")


def test_channel_keeps_its_last_twelve_allowed_resources_as_rabbitmq(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(access_module.time, "monotonic", lambda: now[0])
    users = Users()
    users.add("alice", "x")
    users.set_permissions("alice", "v1", ".*", ".*", ".*")
    access = Access(users.user("alice"), "v1")
    access.check("read", "queue", "q0")
    users.clear_permissions("alice", "v1")
    access.check("read", "queue", "q0")  # allowed before, still in the channel's cache
    with pytest.raises(errors.ChannelError) as refused:
        access.check("read", "queue", "q1")
    assert refused.value.reply_text == (
        "ACCESS_REFUSED - access to queue 'q1' in vhost 'v1' refused for user 'alice'"
    )
    now[0] += 1.5  # idle: the channel forgets, as RabbitMQ's hibernating channel
    with pytest.raises(errors.ChannelError):
        access.check("read", "queue", "q0")
    users.set_permissions("alice", "v1", ".*", ".*", ".*")
    for number in range(13):
        access.check("read", "queue", f"q{number}")  # q0 is pushed out by the twelve
    users.clear_permissions("alice", "v1")
    access.check("read", "queue", "q12")
    with pytest.raises(errors.ChannelError):
        access.check("read", "queue", "q0")
    with pytest.raises(errors.ChannelError) as refused:
        access.check_exchange("write", "")
    assert "exchange 'amq.default'" in refused.value.reply_text
