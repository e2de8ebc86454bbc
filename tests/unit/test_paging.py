"""The page format of queue backlogs (``broker/model/paging.py``): whatever a queue
holds comes back from a page exactly as it went out, and a ``PagedReady`` keeps the
order, counts and byte sums of a deque across pages."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands

from xivo_bus.amqp import properties
from xivo_bus.broker.model.message import Entry, Message
from xivo_bus.broker.model.paging import PAGE_ENTRIES, PagedReady, PageFiles, decode, encode

short_names = st.text(max_size=40).filter(lambda name: len(name.encode()) <= 255)


@st.composite
def entries(draw) -> Entry:
    persistent = draw(st.booleans())
    headers = draw(st.dictionaries(st.text(max_size=8), st.integers(-(2**31), 2**31), max_size=3))
    raw = properties.encode(
        commands.Basic.Properties(delivery_mode=2 if persistent else 1, headers=headers or None)
    )
    message = Message(draw(short_names), draw(short_names), raw, draw(st.binary(max_size=300)))
    message.store_id = draw(st.none() | st.integers(1, 2**62))
    message.ttl = draw(st.none() | st.integers(0, 2**32))
    message.bcc = draw(st.none() | st.lists(st.text(max_size=10), max_size=3))
    entry = Entry(message, draw(st.integers(1, 2**63)), draw(st.booleans()))
    entry.stored = draw(st.booleans())
    entry.expires = draw(st.none() | st.floats(0, 1e9))
    return entry


def facts(entry: Entry) -> tuple:
    message = entry.message
    return (
        entry.seq,
        entry.redelivered,
        entry.stored,
        entry.expires,
        message.exchange,
        message.routing_key,
        message.exchange_ss,
        message.routing_key_ss,
        message.raw_properties,
        message.body,
        message.persistent,
        message.store_id,
        message.ttl,
        message.bcc,
    )


@settings(max_examples=200)
@given(st.lists(entries(), max_size=20))
def test_a_page_gives_back_every_entry_as_it_was(written):
    assert [facts(entry) for entry in decode(encode(written))] == [
        facts(entry) for entry in written
    ]


def test_paged_ready_keeps_order_counts_and_bytes_across_pages(tmp_path):
    files = PageFiles(tmp_path / "pages")
    files.reset()
    ready = PagedReady(files)
    total = 3 * PAGE_ENTRIES + 2048 + 17
    for seq in range(1, total + 1):
        ready.append(Entry(Message("", "q", b"\x00\x00", b"%d" % seq), seq))
    assert len(ready) == total
    assert ready.bytes == sum(len(b"%d" % seq) for seq in range(1, total + 1))
    assert 0 < ready.paged < total
    assert len(list((tmp_path / "pages").iterdir())) == len(ready.pages)
    assert [entry.seq for entry in ready] == list(range(1, total + 1))  # reads, keeps
    taken = [ready.popleft().seq for _ in range(2100)]
    assert taken == list(range(1, 2101))
    back = [Entry(Message("", "q", b"\x00\x00", b"%d" % seq), seq, True) for seq in (5, 9)]
    ready.requeue(back)
    assert ready[0].seq == 5
    rest = [ready.popleft().seq for _ in range(len(ready))]
    assert rest == [5, 9, *range(2101, total + 1)]
    assert ready.bytes == 0 and not ready
    assert list((tmp_path / "pages").iterdir()) == []
