"""Durable storage: durable exchanges, queues and bindings, and persistent messages in
durable queues, in SQLite (WAL mode), written by one thread with group commit.

Every write gets a sequence number; ``committed`` is the highest one that is on disk
(fsync'd). Whoever must not act before a write is durable (a publisher confirm, a
delivery whose "delivered" mark must survive a crash) waits for ``committed`` to pass it
(``Store.after``).

A damaged database is salvaged at start-up: what can be read is kept, the rest is
reported, the damaged file is set aside, and the broker starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import shutil
import sqlite3
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pamqp import encode

from xivo_bus.amqp import fields
from xivo_bus.broker.model.paging import PageFiles
from xivo_bus.paths import private_database, private_dir

log = logging.getLogger("xivo_bus.broker.store")

FILENAME = "broker.sqlite"
PAGES = "pages"  # queue backlogs paged out (``model.paging``): a cache, wiped at start
CLEAN_MARK = "clean-stop"  # left by a stop that wrote everything; taken away at start


def _sync_directory(directory: Path) -> None:
    """Make a file's creation or removal in ``directory`` survive a power loss."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


BATCH_LIMIT = 5000  # writes per transaction at most

SCHEMA = """
CREATE TABLE IF NOT EXISTS exchanges (
    vhost TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
    auto_delete INTEGER NOT NULL, internal INTEGER NOT NULL, arguments BLOB NOT NULL,
    PRIMARY KEY (vhost, name));
CREATE TABLE IF NOT EXISTS queues (
    vhost TEXT NOT NULL, name TEXT NOT NULL, auto_delete INTEGER NOT NULL,
    arguments BLOB NOT NULL, delivered_upto INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (vhost, name));
CREATE TABLE IF NOT EXISTS bindings (
    vhost TEXT NOT NULL, exchange TEXT NOT NULL, kind TEXT NOT NULL, destination TEXT NOT NULL,
    routing_key TEXT NOT NULL, arguments BLOB NOT NULL,
    PRIMARY KEY (vhost, exchange, kind, destination, routing_key, arguments));
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, exchange TEXT NOT NULL, routing_key TEXT NOT NULL,
    properties BLOB NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS vhosts (name TEXT PRIMARY KEY, limits TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, hashing TEXT NOT NULL,
    tags TEXT NOT NULL, permissions TEXT NOT NULL, topic_permissions TEXT NOT NULL,
    limits TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS queue_messages (
    vhost TEXT NOT NULL, queue TEXT NOT NULL, seq INTEGER NOT NULL,
    message_id INTEGER NOT NULL, expires_at REAL,
    PRIMARY KEY (vhost, queue, seq));
"""


class StoreError(Exception):
    """The data directory cannot be used; the message says why."""


def encode_table(table: dict) -> bytes:
    """Arguments as stored: pamqp's encoding (the same bytes as ever, which bindings are
    found by), or, for what pamqp cannot write (a long string that is not UTF-8, a
    decimal or float out of its range), ``fields``' faithful one."""
    try:
        return encode.field_table(table or {})
    except (TypeError, ValueError, OverflowError, struct.error):
        return fields.encode_field_table(table)


def decode_table(raw: bytes) -> dict:
    return fields.decode_table(raw, 4, len(raw)) if raw else {}


@dataclass
class StoredQueue:
    vhost: str
    name: str
    auto_delete: bool
    arguments: dict
    delivered_upto: int
    messages: int = 0  # how many it holds


@dataclass
class Recovered:
    """What start-up read back from disk."""

    exchanges: list[tuple[str, str, str, bool, bool, dict]] = field(default_factory=list)
    queues: list[StoredQueue] = field(default_factory=list)
    # (vhost, exchange, "queue" or "exchange", destination, routing key, arguments)
    bindings: list[tuple[str, str, str, str, str, dict]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    vhosts: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> its limits
    users: list[StoredUser] = field(default_factory=list)
    # a new store (or one from before users were kept): the broker makes the default
    # vhost and user, as RabbitMQ does on its first start
    fresh: bool = False
    # the last run stopped cleanly: what it delivered is on disk. After a crash a message
    # may have gone out before its delivery was written, so every message comes back
    # flagged redelivered ("may have been delivered", which AMQP allows)
    clean: bool = True


@dataclass
class StoredUser:
    name: str
    password_hash: str
    hashing: str
    tags: list[str]
    permissions: dict[str, list[str]]  # vhost -> [configure, write, read]
    topic_permissions: dict[str, dict[str, list[str]]]  # vhost -> exchange -> [write, read]
    limits: dict[str, int]


# -- the writes: each one a statement or a few, applied in order in one transaction ---------


class SaveExchange(NamedTuple):
    vhost: str
    name: str
    type_name: str
    auto_delete: bool
    internal: bool
    arguments: bytes

    def statements(self) -> list[tuple[str, tuple]]:
        return [("INSERT OR REPLACE INTO exchanges VALUES (?, ?, ?, ?, ?, ?)", self)]


class DeleteExchange(NamedTuple):
    vhost: str
    name: str

    def statements(self) -> list[tuple[str, tuple]]:
        return [
            ("DELETE FROM exchanges WHERE vhost = ? AND name = ?", self),
            ("DELETE FROM bindings WHERE vhost = ? AND exchange = ?", self),
            (
                "DELETE FROM bindings WHERE vhost = ? AND kind = 'exchange' AND destination = ?",
                self,
            ),
        ]


class SaveQueue(NamedTuple):
    vhost: str
    name: str
    auto_delete: bool
    arguments: bytes

    def statements(self) -> list[tuple[str, tuple]]:
        return [
            (
                "INSERT OR IGNORE INTO queues (vhost, name, auto_delete, arguments) "
                "VALUES (?, ?, ?, ?)",
                self,
            )
        ]


class DeleteQueue(NamedTuple):
    vhost: str
    name: str

    def statements(self) -> list[tuple[str, tuple]]:
        return [
            ("DELETE FROM queues WHERE vhost = ? AND name = ?", self),
            ("DELETE FROM bindings WHERE vhost = ? AND kind = 'queue' AND destination = ?", self),
            ("DELETE FROM queue_messages WHERE vhost = ? AND queue = ?", self),
            ("DELETE FROM messages WHERE id NOT IN (SELECT message_id FROM queue_messages)", ()),
        ]


class AddBinding(NamedTuple):
    vhost: str
    exchange: str
    kind: str  # the destination's: "queue" or "exchange"
    destination: str
    routing_key: str
    arguments: bytes

    def statements(self) -> list[tuple[str, tuple]]:
        return [("INSERT OR IGNORE INTO bindings VALUES (?, ?, ?, ?, ?, ?)", self)]


class RemoveBinding(AddBinding):
    def statements(self) -> list[tuple[str, tuple]]:
        return [
            (
                "DELETE FROM bindings WHERE vhost = ? AND exchange = ? AND kind = ? "
                "AND destination = ? AND routing_key = ? AND arguments = ?",
                self,
            )
        ]


class SaveMessage(NamedTuple):
    id: int
    exchange: str
    routing_key: str
    properties: bytes
    body: bytes

    def statements(self) -> list[tuple[str, tuple]]:
        return [("INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?)", self)]


class AddEntry(NamedTuple):
    """A message in a queue."""

    vhost: str
    queue: str
    seq: int
    message_id: int
    expires_at: float | None  # seconds since the epoch, when a TTL applies

    def statements(self) -> list[tuple[str, tuple]]:
        return [("INSERT OR REPLACE INTO queue_messages VALUES (?, ?, ?, ?, ?)", self)]


class RemoveEntry(NamedTuple):
    vhost: str
    queue: str
    seq: int
    last_reference_to: int | None  # the message, when no other queue holds it

    def statements(self) -> list[tuple[str, tuple]]:
        statements = [
            (
                "DELETE FROM queue_messages WHERE vhost = ? AND queue = ? AND seq = ?",
                (self.vhost, self.queue, self.seq),
            )
        ]
        if self.last_reference_to is not None:
            statements.append(("DELETE FROM messages WHERE id = ?", (self.last_reference_to,)))
        return statements


class MarkDelivered(NamedTuple):
    """Entries of a queue up to ``seq`` went out: they come back flagged redelivered
    after a crash. Kept as one watermark per queue and transaction."""

    vhost: str
    queue: str
    seq: int


class SaveUser(NamedTuple):
    name: str
    password_hash: str
    hashing: str
    tags: str  # JSON
    permissions: str  # JSON
    topic_permissions: str  # JSON
    limits: str  # JSON

    def statements(self) -> list[tuple[str, tuple]]:
        return [("INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, ?, ?, ?)", self)]


class DeleteUser(NamedTuple):
    name: str

    def statements(self) -> list[tuple[str, tuple]]:
        return [("DELETE FROM users WHERE name = ?", self)]


class SaveVhost(NamedTuple):
    name: str
    limits: str  # JSON

    def statements(self) -> list[tuple[str, tuple]]:
        return [("INSERT OR REPLACE INTO vhosts VALUES (?, ?)", self)]


class DeleteVhost(NamedTuple):
    """A vhost and everything in it."""

    name: str

    def statements(self) -> list[tuple[str, tuple]]:
        return [
            *(
                (f"DELETE FROM {table} WHERE vhost = ?", self)
                for table in ("exchanges", "queues", "bindings", "queue_messages")
            ),
            ("DELETE FROM vhosts WHERE name = ?", self),
            ("DELETE FROM messages WHERE id NOT IN (SELECT message_id FROM queue_messages)", ()),
        ]


# Writes that make the database bigger: held back while the disk is full.
_GROWING = (SaveMessage, AddEntry)
# Builds a write without the NamedTuple's own __new__ (a Python call): the writes of
# messages, entries and delivery marks are made for every persistent message.
_new = tuple.__new__


class Store:
    """SQLite storage with a writer thread; call from the event loop's thread only.

    When a commit fails (disk full, the size limit reached, an I/O error) the writer
    keeps the writes and retries them; ``failed`` says why meanwhile, and nothing waiting
    for those writes is released until they are on disk.
    """

    def __init__(self, directory: Path, size_limit: int | None = None):
        self.directory = Path(directory)
        self.path = self.directory / FILENAME
        self.size_limit = size_limit
        self.committed = 0  # highest write sequence number known to be on disk
        self.failed: str | None = None  # why commits fail now (disk full, ...)
        self._seq = 0
        self._next_message_id = 1
        # to the writer: lists of (write seq, op), or None: stop
        self._ops: queue.SimpleQueue = queue.SimpleQueue()
        self._turn: list[tuple[int, Any]] = []  # this turn's writes, handed over after it
        # bytes of message bodies asked to be written, and of those committed; the writes
        # handed over, as (last write, bytes asked for up to it)
        self._asked_bytes = 0
        self._committed_bytes = 0
        self._handed_over: deque[tuple[int, int]] = deque()
        self._listeners: dict[Any, None] = {}
        self._on_failure: list[Callable[[str | None], Any]] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: sqlite3.Connection | None = None
        self._created_users_table = False
        self.pages = PageFiles(self.directory / PAGES)
        # persistent messages held by more than one durable queue: how many hold each
        # (one that is not here is held by one); the row goes when the last lets go
        self._holders: dict[int, int] = {}

    # -- opening and recovery -----------------------------------------------------------

    def open(self) -> Recovered:
        """Create or read the database; raises ``StoreError`` when the directory is
        unusable. A damaged database is salvaged, never fatal."""
        try:
            private_dir(self.directory)
        except OSError as error:
            raise StoreError(f"cannot create data directory {self.directory}: {error}") from None
        started = time.monotonic()
        fresh = False
        try:
            connection = self._connect()
            fresh = self._created_users_table
            recovered = self._read(connection)
        except sqlite3.DatabaseError as error:
            recovered = self._salvage(error)
            # no user could be saved: start again with the default one, not locked out
            fresh = not recovered.users
        except OSError as error:
            raise StoreError(f"cannot open {self.path}: {error}") from None
        recovered.fresh = fresh
        try:
            self.pages.reset()
        except OSError as error:
            raise StoreError(f"cannot create {self.pages.directory}: {error}") from None
        self._holders = dict(
            self._connection.execute(
                "SELECT message_id, count(*) FROM queue_messages GROUP BY message_id "
                "HAVING count(*) > 1"
            )
        )
        recovered.clean = self._was_stopped_cleanly() and not recovered.skipped
        last_id = self._connection.execute("SELECT max(id) FROM messages").fetchone()[0]
        self._next_message_id = (last_id or 0) + 1
        log.info(
            "store %s: %d exchanges, %d queues, %d bindings, %d messages, read in %.2f s",
            self.path,
            len(recovered.exchanges),
            len(recovered.queues),
            len(recovered.bindings),
            sum(queue.messages for queue in recovered.queues),
            time.monotonic() - started,
        )
        return recovered

    def _was_stopped_cleanly(self) -> bool:
        """Whether the last run left its clean-stop mark; the mark is taken away (and the
        directory synced) before this run delivers anything."""
        marker = self.directory / CLEAN_MARK
        clean = marker.exists() or self._created_users_table  # a new store: nothing to flag
        if marker.exists():
            marker.unlink()
            _sync_directory(self.directory)
        return clean

    def entries(self) -> Iterator[tuple]:
        """The stored messages, queue by queue in order: (vhost, queue, seq, expires_at,
        message id, exchange, routing key, properties, body); read once at start-up."""
        yield from self._connection.execute(
            "SELECT qm.vhost, qm.queue, qm.seq, qm.expires_at, qm.message_id, m.exchange, "
            "m.routing_key, "
            "m.properties, m.body FROM queue_messages qm JOIN messages m "
            "ON m.id = qm.message_id ORDER BY qm.vhost, qm.queue, qm.seq"
        )

    def _connect(self) -> sqlite3.Connection:
        try:
            private_database(self.path)  # messages and password hashes: owner only
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            self._created_users_table = not connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'users'"
            ).fetchone()
            connection.executescript(SCHEMA)
            _upgrade(connection)
            if self.size_limit:
                page_size = connection.execute("PRAGMA page_size").fetchone()[0]
                connection.execute(f"PRAGMA max_page_count={max(1, self.size_limit // page_size)}")
        except sqlite3.OperationalError as error:
            if "unable to open" in str(error) or "readonly" in str(error):
                raise StoreError(f"cannot write {self.path}: {error}") from None
            raise
        self._connection = connection
        return connection

    @staticmethod
    def _read(connection: sqlite3.Connection, skipped: list[str] | None = None) -> Recovered:
        recovered = Recovered(skipped=skipped if skipped is not None else [])
        for name, limits in connection.execute("SELECT name, limits FROM vhosts"):
            try:
                recovered.vhosts[name] = json.loads(limits)
            except ValueError:
                recovered.vhosts[name] = {}
                recovered.skipped.append(f"vhost '{name}': unreadable limits")
        for name, password_hash, hashing, tags, permissions, topic, limits in connection.execute(
            "SELECT name, password_hash, hashing, tags, permissions, topic_permissions, limits "
            "FROM users"
        ):
            try:
                recovered.users.append(
                    StoredUser(
                        name,
                        password_hash,
                        hashing,
                        json.loads(tags),
                        json.loads(permissions),
                        json.loads(topic),
                        json.loads(limits),
                    )
                )
            except ValueError:
                recovered.skipped.append(f"user '{name}': unreadable")
        for vhost, name, type_name, auto_delete, internal, arguments in connection.execute(
            "SELECT vhost, name, type, auto_delete, internal, arguments FROM exchanges"
        ):
            recovered.exchanges.append(
                (vhost, name, type_name, bool(auto_delete), bool(internal), decode_table(arguments))
            )
        queues = {}
        for vhost, name, auto_delete, arguments, delivered_upto in connection.execute(
            "SELECT vhost, name, auto_delete, arguments, delivered_upto FROM queues"
        ):
            stored = StoredQueue(
                vhost, name, bool(auto_delete), decode_table(arguments), delivered_upto
            )
            queues[vhost, name] = stored
            recovered.queues.append(stored)
        for vhost, exchange, kind, destination, routing_key, arguments in connection.execute(
            "SELECT vhost, exchange, kind, destination, routing_key, arguments FROM bindings"
        ):
            recovered.bindings.append(
                (vhost, exchange, kind, destination, routing_key, decode_table(arguments))
            )
        for vhost, queue_name, count, with_body in connection.execute(
            "SELECT qm.vhost, qm.queue, count(*), count(m.id) FROM queue_messages qm "
            "LEFT JOIN messages m ON m.id = qm.message_id GROUP BY qm.vhost, qm.queue"
        ):
            stored = queues.get((vhost, queue_name))
            if stored is None:
                # The queue's row is gone but its messages are not: keep them in a queue
                # of that name (its arguments are lost).
                stored = queues[vhost, queue_name] = StoredQueue(vhost, queue_name, False, {}, 0)
                recovered.queues.append(stored)
                recovered.skipped.append(
                    f"queue '{queue_name}' in vhost '{vhost}': its declaration was lost; "
                    "re-created without arguments"
                )
            stored.messages = with_body
            if with_body < count:
                recovered.skipped.append(
                    f"queue '{queue_name}' in vhost '{vhost}': {count - with_body} messages "
                    "whose bodies were lost"
                )
        return recovered

    def _salvage(self, error: Exception) -> Recovered:
        """Read row by row what a damaged database still gives, set the file aside,
        and write what was read into a fresh database."""
        log.error("store %s is damaged (%s): salvaging what is readable", self.path, error)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        aside = self.path.with_name(f"{FILENAME}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                shutil.move(source, f"{aside}{suffix}")
        skipped: list[str] = [f"damaged database moved to {aside}: {error}"]
        rows: dict[str, tuple[list[str], list[tuple]]] = {}
        try:
            old = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
            for table in (
                "vhosts",
                "users",
                "exchanges",
                "queues",
                "bindings",
                "messages",
                "queue_messages",
            ):
                rows[table] = _readable_rows(old, table, skipped)
            old.close()
        except sqlite3.DatabaseError as failure:
            skipped.append(f"nothing could be read: {failure}")
        connection = self._connect()
        with connection:
            connection.execute("BEGIN")
            for table, (columns, table_rows) in rows.items():
                # an older schema's rows go into the columns both have (the rest default)
                new = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
                keep = [i for i, column in enumerate(columns) if column in new]
                if table_rows and keep:
                    names = ", ".join(columns[i] for i in keep)
                    marks = ",".join("?" * len(keep))
                    connection.executemany(
                        f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})",
                        [[row[i] for i in keep] for row in table_rows],
                    )
        recovered = self._read(connection, skipped)
        for line in recovered.skipped:
            log.error("store: skipped %s", line)
        return recovered

    # -- the writer ---------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._write_loop, name="xivo-bus store", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is pending, then stop the writer; with everything on disk, leave the
        clean-stop mark for the next start."""
        if self._thread is not None:
            self._hand_over()
            self._ops.put(None)
            self._thread.join()
            self._thread = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
            if self.committed >= self._seq and self.failed is None:
                os.close(os.open(self.directory / CLEAN_MARK, os.O_CREAT | os.O_WRONLY, 0o600))
                _sync_directory(self.directory)

    @property
    def last_write(self) -> int:
        """The sequence number of the latest write asked for."""
        return self._seq

    def _submit(self, op: NamedTuple) -> int:
        self._seq += 1
        turn = self._turn
        if not turn:
            if self._loop is None:  # not started: the writer takes it when it starts
                self._ops.put([(self._seq, op)])
                return self._seq
            self._loop.call_soon(self._loop.call_soon, self._hand_over)
        turn.append((self._seq, op))
        return self._seq

    def _hand_over(self) -> None:
        """Give the writer this turn's writes at once, after the turn: woken while the
        loop still works on what caused them, the writer thread would take the
        interpreter from it between two callbacks and delay the deliveries and replies
        of the same turn."""
        if self._turn:
            self._handed_over.append((self._seq, self._asked_bytes))
            self._ops.put(self._turn)
            self._turn = []

    def _write_loop(self) -> None:
        pending: list[tuple[int, Any]] = []
        stopping = False
        failing = False
        while not stopping or pending:
            if not pending:
                writes = self._ops.get()
                if writes is None:
                    break
                pending += writes
            while len(pending) < BATCH_LIMIT and not stopping:
                try:
                    writes = self._ops.get_nowait()
                except queue.Empty:
                    break
                if writes is None:
                    stopping = True
                    break
                pending += writes
            last = pending[-1][0]
            pending = _without_acked(pending)
            try:
                self._commit([op for _, op in pending])
            except sqlite3.Error as error:
                if not failing:
                    failing = True
                    self._loop.call_soon_threadsafe(self._failing, f"{self.path}: {error}")
                if stopping:
                    log.error("store: %d writes lost at shutdown: %s", len(pending), error)
                    break
                pending = self._write_what_frees_space(pending)
                time.sleep(0.2)  # keep the new messages, try again
                continue
            failing = False
            self._loop.call_soon_threadsafe(self._committed, last)
            pending = []

    def _write_what_frees_space(self, pending: list[tuple[int, Any]]) -> list:
        """While new messages cannot be written, still write removals, delivery marks
        and definitions, so consumers can make room; return what is still to write."""
        growing = [item for item in pending if isinstance(item[1], _GROWING)]
        other = [item for item in pending if not isinstance(item[1], _GROWING)]
        if other:
            try:
                self._commit([op for _, op in other])
            except sqlite3.Error:
                return sorted(growing + other)
        return growing

    def _commit(self, ops: list[Any]) -> None:
        connection = self._connection
        watermarks: dict[tuple[str, str], int] = {}
        connection.execute("BEGIN")
        try:
            for op in ops:
                if type(op) is MarkDelivered:
                    key = (op.vhost, op.queue)
                    watermarks[key] = max(watermarks.get(key, 0), op.seq)
                else:
                    for sql, args in op.statements():
                        connection.execute(sql, args)
            for (vhost, name), seq in watermarks.items():
                connection.execute(
                    "UPDATE queues SET delivered_upto = MAX(delivered_upto, ?) "
                    "WHERE vhost = ? AND name = ?",
                    (seq, vhost, name),
                )
            connection.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (a full disk): the error that
            # says why is the one to report, not the ROLLBACK's
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    # -- on the loop: commit results ----------------------------------------------------

    def _committed(self, seq: int) -> None:
        self.committed = seq
        handed_over = self._handed_over
        while handed_over and handed_over[0][0] <= seq:
            self._committed_bytes = handed_over.popleft()[1]
        if self.failed is not None:
            log.warning("store: writes succeed again")
            self._set_failed(None)
        listeners, self._listeners = self._listeners, {}
        for listener in listeners:
            try:
                listener.store_committed()
            except Exception:  # a bug of ours in one connection: the others still hear
                log.exception("store: a connection failed after a commit")

    def _failing(self, reason: str) -> None:
        log.error("store: cannot write %s; retrying, confirms wait meanwhile", reason)
        self._set_failed(reason)

    def _set_failed(self, reason: str | None) -> None:
        self.failed = reason
        for callback in self._on_failure:
            try:
                callback(reason)
            except Exception:  # a bug of ours: the other callbacks still run
                log.exception("store: a callback failed on a change of the store's health")

    def notify(self, listener: Any) -> None:
        """Call ``listener.store_committed()`` (on the loop) after the next commit."""
        self._listeners[listener] = None

    def on_failure_change(self, callback: Callable[[str | None], Any]) -> None:
        """``callback(reason)`` when writes start failing, ``callback(None)`` when they
        succeed again."""
        self._on_failure.append(callback)

    # -- writes -------------------------------------------------------------------------

    def new_message_id(self) -> int:
        message_id = self._next_message_id
        self._next_message_id += 1
        return message_id

    def shared(self, message_id: int) -> bool:
        """Whether more than one durable queue holds this stored message."""
        return message_id in self._holders

    def hold(self, message_id: int) -> None:
        """One more durable queue holds a stored message."""
        self._holders[message_id] = self._holders.get(message_id, 1) + 1

    def release(self, message_id: int) -> bool:
        """One durable queue less holds a stored message; whether that was the last (its
        row can go too)."""
        holders = self._holders.pop(message_id, 1)
        if holders > 2:
            self._holders[message_id] = holders - 1
        return holders == 1

    def save_exchange(self, vhost: str, exchange) -> int:
        return self._submit(
            SaveExchange(
                vhost,
                exchange.name,
                exchange.type_name,
                exchange.auto_delete,
                exchange.internal,
                encode_table(exchange.arguments),
            )
        )

    def delete_exchange(self, vhost: str, name: str) -> int:
        return self._submit(DeleteExchange(vhost, name))

    def save_queue(self, vhost: str, queue_) -> int:
        return self._submit(
            SaveQueue(vhost, queue_.name, queue_.auto_delete, encode_table(queue_.arguments))
        )

    def delete_queue(self, vhost: str, name: str) -> int:
        return self._submit(DeleteQueue(vhost, name))

    def set_binding(
        self,
        present: bool,
        vhost: str,
        exchange: str,
        kind: str,
        destination: str,
        routing_key: str,
        arguments: dict,
    ) -> int:
        """Write a binding (``present``) or its removal; ``kind`` is "queue" or
        "exchange", the destination's kind."""
        op = AddBinding if present else RemoveBinding
        return self._submit(
            op(vhost, exchange, kind, destination, routing_key, encode_table(arguments))
        )

    def save_user(self, user) -> int:
        """A user as ``users.User`` holds it: password hash, tags and permissions."""
        return self._submit(
            SaveUser(
                user.name,
                user.password_hash,
                user.hashing,
                json.dumps(list(user.tags)),
                json.dumps(
                    {vhost: [p.configure, p.write, p.read] for vhost, p in user.permissions.items()}
                ),
                json.dumps(
                    {
                        vhost: {name: [p.write, p.read] for name, p in by_exchange.items()}
                        for vhost, by_exchange in user.topic_permissions.items()
                    }
                ),
                json.dumps(user.limits),
            )
        )

    def delete_user(self, name: str) -> int:
        return self._submit(DeleteUser(name))

    def save_vhost(self, name: str, limits: dict | None = None) -> int:
        return self._submit(SaveVhost(name, json.dumps(limits or {})))

    def delete_vhost(self, name: str) -> int:
        return self._submit(DeleteVhost(name))

    @property
    def uncommitted_bytes(self) -> int:
        """Bytes of message bodies waiting to be written (or skipped, when acked first)."""
        return self._asked_bytes - self._committed_bytes

    def save_message(self, message) -> int:
        self._asked_bytes += len(message.body)
        return self._submit(
            _new(
                SaveMessage,
                (
                    message.store_id,
                    message.exchange,
                    message.routing_key,
                    message.raw_properties,
                    message.body,
                ),
            )
        )

    def add_entry(
        self, vhost: str, queue_name: str, seq: int, message_id: int, expires_at: float | None
    ) -> int:
        """A message in a queue; ``expires_at`` (seconds since the epoch) when a TTL applies,
        so that it keeps its expiry across restarts."""
        return self._submit(_new(AddEntry, (vhost, queue_name, seq, message_id, expires_at)))

    def remove_entry(
        self, vhost: str, queue_name: str, seq: int, last_reference_to: int | None
    ) -> int:
        return self._submit(_new(RemoveEntry, (vhost, queue_name, seq, last_reference_to)))

    def delivered(self, vhost: str, queue_name: str, seq: int) -> int:
        return self._submit(_new(MarkDelivered, (vhost, queue_name, seq)))


def _without_acked(pending: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Writes without those that would only be undone in the same batch: an entry added
    and then removed (a persistent message acked, or dropped, before it was written) is
    not written at all, nor its message when that was the last queue holding it. A
    removal matches the latest addition of its entry before it (a queue deleted and
    declared again numbers its entries anew)."""
    added: dict[tuple[str, str, int], int] = {}  # entry -> index of its addition
    dropped: set[int] = set()
    saved: dict[int, int] = {}  # message id -> index of its SaveMessage
    for index, (_, op) in enumerate(pending):
        kind = type(op)
        if kind is SaveMessage:
            saved[op.id] = index
        elif kind is AddEntry:
            added[(op.vhost, op.queue, op.seq)] = index
        elif kind is RemoveEntry:
            addition = added.pop((op.vhost, op.queue, op.seq), None)
            if addition is None:
                continue
            dropped.add(addition)
            message = op.last_reference_to
            if message is None:
                dropped.add(index)
            elif message in saved:  # the message was never written either
                dropped.add(index)
                dropped.add(saved.pop(message))
            # else its row is on disk from an earlier batch: the removal deletes it
    if not dropped:
        return pending
    return [item for index, item in enumerate(pending) if index not in dropped]


SALVAGE_CHUNK = 256
SALVAGE_GIVE_UP = 64  # unreadable or empty chunks in a row past the last good one


def _upgrade(connection: sqlite3.Connection) -> None:
    """Bring a store written by an earlier version to the current schema."""

    def columns(table: str) -> set[str]:
        return {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}

    for table in ("vhosts", "users"):  # limits came after users and vhosts
        if "limits" not in columns(table):
            connection.execute(
                f"ALTER TABLE {table} ADD COLUMN limits TEXT NOT NULL DEFAULT '{{}}'"
            )
    if "expires_at" not in columns("queue_messages"):
        connection.execute("ALTER TABLE queue_messages ADD COLUMN expires_at REAL")
    if "kind" not in columns("bindings"):  # bindings were to queues only
        connection.executescript(
            """
            ALTER TABLE bindings RENAME TO bindings_old;
            CREATE TABLE bindings (
                vhost TEXT NOT NULL, exchange TEXT NOT NULL, kind TEXT NOT NULL,
                destination TEXT NOT NULL, routing_key TEXT NOT NULL, arguments BLOB NOT NULL,
                PRIMARY KEY (vhost, exchange, kind, destination, routing_key, arguments));
            INSERT INTO bindings SELECT vhost, exchange, 'queue', queue, routing_key, arguments
                FROM bindings_old;
            DROP TABLE bindings_old;
            """
        )


def _readable_rows(
    connection: sqlite3.Connection, table: str, skipped: list[str]
) -> tuple[list[str], list]:
    """The columns of a table and its rows that can still be read: rowid ranges, a
    damaged range read again row by row, so that one bad page loses only its own rows."""
    try:
        columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError as error:
        skipped.append(f"{table}: unreadable ({error})")
        return [], []
    if not columns:
        return [], []  # not in that store (an older one)
    select = f"SELECT {', '.join(columns)} FROM {table} WHERE rowid >= ? AND rowid < ?"
    try:
        last = connection.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
    except sqlite3.DatabaseError:
        last = None  # unknown: read on until nothing comes for a while
    rows: list = []
    unreadable = 0
    start, quiet = 0, 0
    while (last is not None and start <= last) or (last is None and quiet < SALVAGE_GIVE_UP):
        try:
            chunk = connection.execute(select, (start, start + SALVAGE_CHUNK)).fetchall()
        except sqlite3.DatabaseError:
            chunk = []
            for rowid in range(start, start + SALVAGE_CHUNK):
                try:
                    chunk += connection.execute(select, (rowid, rowid + 1)).fetchall()
                except sqlite3.DatabaseError:
                    unreadable += 1
        quiet = 0 if chunk else quiet + 1
        rows += chunk
        start += SALVAGE_CHUNK
    if unreadable:
        skipped.append(f"{table}: damaged; {len(rows)} rows read, the rest could not be")
    return columns, rows
