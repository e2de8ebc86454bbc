"""Queue backlogs paged to disk.

A queue keeps its ready messages in a plain deque while it keeps up. Once it holds more
than its head keeps in memory (``HEAD_ENTRIES`` entries or ``HEAD_BYTES`` bytes) it falls
behind, and with a data directory its ready list becomes a ``PagedReady``, in three parts,
in order: the ``head`` in memory (what goes out next), ``pages`` on disk (files of a
thousand or so entries), and the ``tail`` in memory (the newest, not yet written), which
is written out as a page when it reaches ``PAGE_ENTRIES`` entries or ``PAGE_BYTES``
bytes; when the head runs dry the oldest page is read back into it. Memory per queue
stays bounded however long the backlog, as in RabbitMQ's classic queues (version 2),
transient messages included.

Pages are a cache, not a record: persistent messages in durable queues are in the store
too, and a start wipes the page directory. A page is written with the entry's queue
state (sequence number, redelivered flag, expiry, store id) and the whole message, so
nothing of a paged message stays in memory.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from xivo_bus.broker.model.message import Entry, Message
from xivo_bus.broker.model.ready import requeue_into
from xivo_bus.paths import private_dir

log = logging.getLogger("xivo_bus.broker")

HEAD_ENTRIES = 2048
# 64 large messages (1 MB): paging a backlog of a few of them, which consumers with a
# prefetch of 100 take at once, costs more than it saves
HEAD_BYTES = 64 << 20
HEAD_MIN_ENTRIES = 4  # a head keeps this many, whatever their size
PAGE_ENTRIES = 1024
PAGE_BYTES = 8 << 20

# seq, flags, expires, store id, ttl, properties length, body length, BCC length
_HEADER = struct.Struct("<QBdqqIII")
_REDELIVERED, _STORED, _PERSISTENT, _EXPIRES, _STORE_ID, _TTL = (1 << n for n in range(6))


class Page(NamedTuple):
    path: Path
    count: int
    bytes: int


class PageFiles:
    """The directory of pages: private to the broker's user, emptied at each start."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._names = itertools.count(1)

    def reset(self) -> None:
        """Forget the pages of an earlier run (a cache: the store has what must last)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        private_dir(self.directory)

    def write(self, entries: list[Entry], byte_count: int) -> Page:
        """Write entries to a new page; raises ``OSError`` (disk full, ...)."""
        path = self.directory / f"{next(self._names)}.page"
        data = encode(entries)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
        except BaseException:
            os.close(descriptor)
            path.unlink(missing_ok=True)
            raise
        os.close(descriptor)
        return Page(path, len(entries), byte_count)

    def read(self, page: Page) -> list[Entry]:
        """A page's entries, read back in order."""
        return decode(page.path.read_bytes())

    @staticmethod
    def remove(page: Page) -> None:
        page.path.unlink(missing_ok=True)


class PagedReady:
    """A queue's ready entries, paged to disk past a bound. Offers what a queue uses of
    its ready list: append, popleft, ``[0]``, len, iteration, clear, ``bytes`` (the sum
    of body sizes, for ``x-max-length-bytes``) and requeue."""

    __slots__ = (
        "files",
        "head",
        "pages",
        "tail",
        "count",
        "bytes",
        "head_bytes",
        "tail_bytes",
        "_page_at",
    )

    def __init__(self, files: PageFiles):
        self.files = files
        self.head: deque[Entry] = deque()
        self.pages: deque[Page] = deque()
        self.tail: list[Entry] = []
        self.count = 0
        self.bytes = 0
        self.head_bytes = 0
        self.tail_bytes = 0
        self._page_at = 1  # times the page size: more after a write fails

    @classmethod
    def holding(cls, files: PageFiles, entries: Iterable[Entry]) -> PagedReady:
        """A paged list that starts with ``entries`` (a queue's ready list as it fell
        behind) as its head; a plain deque is taken as it is, not copied."""
        paged = cls(files)
        head = entries if type(entries) is deque else deque(entries)
        paged.head = head
        paged.count = len(head)
        paged.bytes = paged.head_bytes = sum(len(entry.message.body) for entry in head)
        return paged

    @property
    def paged(self) -> int:
        """How many entries are on disk now."""
        return sum(page.count for page in self.pages)

    @property
    def paged_bytes(self) -> int:
        return sum(page.bytes for page in self.pages)

    def append(self, entry: Entry) -> None:
        size = len(entry.message.body)
        self.count += 1
        self.bytes += size
        if (
            not self.tail
            and not self.pages
            and len(self.head) < HEAD_ENTRIES
            and self.head_bytes < HEAD_BYTES
        ):
            self.head.append(entry)
            self.head_bytes += size
            return
        self.tail.append(entry)
        self.tail_bytes += size
        at = self._page_at
        if len(self.tail) >= at * PAGE_ENTRIES or self.tail_bytes >= at * PAGE_BYTES:
            self._page_out()

    def _page_out(self) -> None:
        try:
            page = self.files.write(self.tail, self.tail_bytes)
        except OSError as error:  # the tail stays in memory; tried again as it grows
            log.warning("cannot page %d messages out to disk: %s", len(self.tail), error)
            self._page_at *= 2
            return
        self._page_at = 1
        self.pages.append(page)
        self.tail = []
        self.tail_bytes = 0

    def _refill(self) -> None:
        """The head ran dry: the oldest page comes back (else the tail moves up)."""
        while self.pages:
            page = self.pages.popleft()
            try:
                entries = self.files.read(page)
            except (OSError, ValueError, struct.error) as error:  # a bug, or a hand in the dir
                log.error("lost %d paged messages: %s: %s", page.count, page.path, error)
                self.count -= page.count
                self.bytes -= page.bytes
                continue
            finally:
                self.files.remove(page)
            self.head.extend(entries)
            self.head_bytes += page.bytes
            return
        if self.tail:
            self.head.extend(self.tail)
            self.head_bytes += self.tail_bytes
            self.tail = []
            self.tail_bytes = 0

    def popleft(self) -> Entry:
        head = self.head
        if not head:
            self._refill()
        entry = head.popleft()  # IndexError when empty, as a deque
        size = len(entry.message.body)
        self.head_bytes -= size
        self.bytes -= size
        self.count -= 1
        return entry

    def __getitem__(self, index: int) -> Entry:
        if index != 0:
            raise IndexError("only the head of a paged queue can be read")
        if not self.head:
            self._refill()
        return self.head[0]

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[Entry]:
        """Every entry in order, the paged ones read back (for a purge or a deletion)."""
        yield from self.head
        for page in list(self.pages):
            try:
                yield from self.files.read(page)
            except (OSError, ValueError, struct.error) as error:
                log.error("cannot read paged messages back: %s: %s", page.path, error)
        yield from self.tail

    def clear(self) -> None:
        for page in self.pages:
            self.files.remove(page)
        self.pages.clear()
        self.head.clear()
        self.tail = []
        self.count = self.bytes = self.head_bytes = self.tail_bytes = 0

    def requeue(self, entries: list[Entry]) -> None:
        """Put back entries (sorted by seq) that were handed out: they went out from the
        head, so they go back there, in sequence order."""
        size = sum(len(entry.message.body) for entry in entries)
        self.count += len(entries)
        self.bytes += size
        self.head_bytes += size
        requeue_into(self.head, entries)


# -- the page format: one record per entry --------------------------------------------


def encode(entries: list[Entry]) -> bytes:
    parts: list[bytes] = []
    add = parts.append
    pack = _HEADER.pack
    for entry in entries:
        message = entry.message
        flags = (
            (_REDELIVERED if entry.redelivered else 0)
            | (_STORED if entry.stored else 0)
            | (_PERSISTENT if message.persistent else 0)
        )
        expires = entry.expires
        if expires is not None:
            flags |= _EXPIRES
        store_id = message.store_id
        if store_id is not None:
            flags |= _STORE_ID
        ttl = message.ttl
        if ttl is not None:
            flags |= _TTL
        bcc = b"" if message.bcc is None else json.dumps(message.bcc).encode()
        properties = message.raw_properties
        body = message.body
        add(
            pack(
                entry.seq,
                flags,
                expires or 0.0,
                store_id or 0,
                ttl or 0,
                len(properties),
                len(body),
                len(bcc),
            )
        )
        add(message.exchange_ss)
        add(message.routing_key_ss)
        add(properties)
        add(body)
        if bcc:
            add(bcc)
    return b"".join(parts)


def decode(data: bytes) -> list[Entry]:
    entries = []
    add = entries.append
    names: dict[bytes, str] = {}
    unpack = _HEADER.unpack_from
    header = _HEADER.size
    new = object.__new__
    offset = 0
    end = len(data)
    while offset < end:
        seq, flags, expires, store_id, ttl, properties_length, body_length, bcc_length = unpack(
            data, offset
        )
        offset += header
        exchange_ss = data[offset : offset + 1 + data[offset]]
        offset += len(exchange_ss)
        routing_key_ss = data[offset : offset + 1 + data[offset]]
        offset += len(routing_key_ss)
        properties = data[offset : offset + properties_length]
        offset += properties_length
        body = data[offset : offset + body_length]
        offset += body_length
        if len(body) != body_length:
            raise ValueError("page cut short")
        # built field by field: a page holds a thousand of them, read back on the loop
        message = new(Message)
        exchange = names.get(exchange_ss)
        message.exchange = exchange if exchange is not None else _name(names, exchange_ss)
        routing_key = names.get(routing_key_ss)
        message.routing_key = (
            routing_key if routing_key is not None else _name(names, routing_key_ss)
        )
        message.exchange_ss = exchange_ss
        message.routing_key_ss = routing_key_ss
        message.raw_properties = properties
        message.body = body
        message.persistent = bool(flags & _PERSISTENT)
        message.store_id = store_id if flags & _STORE_ID else None
        message.ttl = ttl if flags & _TTL else None
        message._properties = None
        message.pending_confirm = None
        if bcc_length:
            message.bcc = json.loads(data[offset : offset + bcc_length])
            offset += bcc_length
        else:
            message.bcc = None
        entry = new(Entry)
        entry.message = message
        entry.seq = seq
        entry.redelivered = bool(flags & _REDELIVERED)
        entry.stored = bool(flags & _STORED)
        entry.expires = expires if flags & _EXPIRES else None
        add(entry)
    return entries


def _name(names: dict[bytes, str], short_string: bytes) -> str:
    """A short string's text, decoded once a page (``names`` did not have it)."""
    name = names[short_string] = short_string[1:].decode("utf-8")
    return name
