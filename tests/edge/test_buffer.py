"""Tests for the edge agent's store-and-forward buffer."""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path

import pytest

from kernos.edge.buffer import (
    BufferedEvent,
    BufferFileError,
    BufferFull,
    ForwardBuffer,
    PendingEvent,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "buffer.db"


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_peek_returns_events_in_append_order(path: Path) -> None:
    with ForwardBuffer(path) as buf:
        seqs = [buf.append("temp", {"c": i}) for i in range(5)]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 5
        events = buf.peek(10)
        assert [e.seq for e in events] == seqs
        assert [e.payload for e in events] == [{"c": i} for i in range(5)]
        assert [e.seq for e in buf.peek(2)] == seqs[:2]
        assert len(buf) == 5


def test_event_fields_round_trip(path: Path) -> None:
    clock = FakeClock(1_700_000_000.5)
    with ForwardBuffer(path, clock=clock) as buf:
        payload = {"nested": {"b": [1, 2.5, None, True], "a": "é☃"}, "n": -3}
        seq = buf.append("sensor/door", payload, event_id="ev-1")
        [event] = buf.peek(1)
    assert event == BufferedEvent(
        seq=seq, topic="sensor/door", payload=payload, event_id="ev-1", appended_at=clock.now
    )


def test_ack_removes_events_up_to_seq(path: Path) -> None:
    with ForwardBuffer(path) as buf:
        seqs = [buf.append("t", {"i": i}) for i in range(4)]
        assert buf.ack(seqs[1]) == 2
        assert [e.seq for e in buf.peek(10)] == seqs[2:]
        assert buf.ack(seqs[1]) == 0
        assert buf.ack(0) == 0
        assert len(buf) == 2
        assert buf.ack(seqs[3]) == 2
        assert len(buf) == 0
        assert buf.peek(10) == []


def test_space_is_given_back_once_everything_is_acked(path: Path) -> None:
    with ForwardBuffer(path) as buf:
        buf.append_many([PendingEvent(topic="t", payload={"blob": "x" * 1000}) for _ in range(500)])
    full_size = path.stat().st_size
    with ForwardBuffer(path) as buf:
        buf.ack(buf.stats().newest_seq or 0)
    assert path.stat().st_size < full_size / 10


def test_sequence_numbers_are_not_reused_after_everything_is_acked(path: Path) -> None:
    with ForwardBuffer(path) as buf:
        first = buf.append("t", {})
        buf.ack(first)
    with ForwardBuffer(path) as buf:
        assert buf.append("t", {}) > first


def test_events_and_acks_survive_close_and_reopen(path: Path) -> None:
    with ForwardBuffer(path) as buf:
        seqs = [buf.append("t", {"i": i}, event_id=f"id-{i}") for i in range(3)]
        buf.ack(seqs[0])
    with ForwardBuffer(path) as buf:
        events = buf.peek(10)
        assert [(e.seq, e.payload, e.event_id) for e in events] == [
            (seqs[1], {"i": 1}, "id-1"),
            (seqs[2], {"i": 2}, "id-2"),
        ]
        # The duplicate index survives too.
        assert buf.append("t", {"i": 99}, event_id="id-2") == seqs[2]
        assert len(buf) == 2


def test_duplicate_event_id_returns_existing_seq_and_stores_nothing(path: Path) -> None:
    with ForwardBuffer(path) as buf:
        seq = buf.append("t", {"v": 1}, event_id="abc")
        assert buf.append("t", {"v": 2}, event_id="abc") == seq
        assert len(buf) == 1
        assert buf.peek(10)[0].payload == {"v": 1}
        # Events without ids are never deduplicated.
        assert buf.append("t", {"v": 1}) != buf.append("t", {"v": 1})
        # Once acked, the id is no longer buffered and may be used again.
        buf.ack(buf.stats().newest_seq or 0)
        assert buf.append("t", {"v": 3}, event_id="abc") > seq


def test_append_many_is_one_transaction(path: Path) -> None:
    with ForwardBuffer(path) as buf:
        seqs = buf.append_many(
            [
                PendingEvent(topic="a", payload={"i": 1}, event_id="x"),
                PendingEvent(topic="b", payload={"i": 2}),
                PendingEvent(topic="c", payload={"i": 3}, event_id="x"),
            ]
        )
        assert seqs[0] == seqs[2]
        assert seqs[1] > seqs[0]
        assert [e.topic for e in buf.peek(10)] == ["a", "b"]
        assert buf.append_many([]) == []

        with pytest.raises(ValueError, match="not JSON-serialisable"):
            buf.append_many(
                [
                    PendingEvent(topic="ok", payload={"i": 4}),
                    PendingEvent(topic="bad", payload={"s": {1, 2}}),
                ]
            )
        assert len(buf) == 2


def test_bound_raises_buffer_full_and_keeps_what_was_accepted(path: Path) -> None:
    with ForwardBuffer(path, max_events=2) as buf:
        first = buf.append("t", {"i": 1}, event_id="one")
        second = buf.append("t", {"i": 2})
        with pytest.raises(BufferFull, match=r"2 of 2 events buffered") as info:
            buf.append("t", {"i": 3})
        assert info.value.max_events == 2
        assert info.value.buffered == 2
        # A duplicate stores nothing, so it is not refused.
        assert buf.append("t", {"i": 1}, event_id="one") == first
        assert [e.seq for e in buf.peek(10)] == [first, second]

        buf.ack(first)
        with pytest.raises(BufferFull):
            buf.append_many([PendingEvent(topic="t", payload={"i": n}) for n in (4, 5)])
        assert [e.seq for e in buf.peek(10)] == [second]
        assert buf.append("t", {"i": 6}) > second
    with ForwardBuffer(path, max_events=2) as buf:
        assert [e.payload for e in buf.peek(10)] == [{"i": 2}, {"i": 6}]


@pytest.mark.parametrize(
    ("topic", "payload", "event_id", "message"),
    [
        ("", {}, None, "topic must be a non-empty string"),
        ("   ", {}, None, "topic must be a non-empty string"),
        ("t", {"x": object()}, None, "not JSON-serialisable"),
        ("t", {"x": math.nan}, None, "not JSON-serialisable"),
        ("t", {1: "a", "b": 2}, None, "not JSON-serialisable"),
        ("t", [1, 2], None, "must be a JSON object"),
        ("t", "text", None, "must be a JSON object"),
        ("t", {}, "", "event_id must be a non-empty string"),
        ("t\udcff", {}, None, "not valid Unicode"),
    ],
)
def test_bad_input_raises_value_error_and_stores_nothing(
    path: Path, topic: object, payload: object, event_id: object, message: str
) -> None:
    with ForwardBuffer(path) as buf:
        with pytest.raises(ValueError, match=message):
            buf.append(topic, payload, event_id=event_id)  # type: ignore[arg-type]
        assert len(buf) == 0


def test_bad_arguments_raise_value_error(path: Path) -> None:
    with pytest.raises(ValueError, match="max_events"):
        ForwardBuffer(path, max_events=0)
    with ForwardBuffer(path) as buf:
        with pytest.raises(ValueError, match="limit"):
            buf.peek(0)
        with pytest.raises(ValueError, match="up_to_seq"):
            buf.ack(-1)


def test_payload_is_stored_as_canonical_json(path: Path) -> None:
    with ForwardBuffer(path) as buf:
        buf.append("t", {"b": 1, "a": [1.5, "é"]})
        buf.append("t", {"a": [1.5, "é"], "b": 1})
    with sqlite3.connect(path) as conn:
        stored = [row[0] for row in conn.execute("SELECT payload FROM events ORDER BY seq")]
        journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert stored == ['{"a":[1.5,"\\u00e9"],"b":1}'] * 2
    assert journal_mode == "wal"


def test_oldest_age_and_stats(path: Path) -> None:
    clock = FakeClock(1000.0)
    with ForwardBuffer(path, clock=clock) as buf:
        assert buf.oldest_age() is None
        empty = buf.stats()
        assert (empty.count, empty.oldest_seq, empty.newest_seq) == (0, None, None)

        first = buf.append("t", {})
        clock.now = 1010.0
        last = buf.append("t", {})
        clock.now = 1025.0
        assert buf.oldest_age() == 25.0
        assert buf.oldest_age(now=1001.0) == 1.0
        assert buf.oldest_age(now=900.0) == 0.0  # a clock stepped backwards

        stats = buf.stats()
        assert (stats.count, stats.oldest_seq, stats.newest_seq) == (2, first, last)
        assert stats.bytes_on_disk > 0

        buf.ack(first)
        assert buf.oldest_age() == 15.0


def test_open_existing_only(tmp_path: Path, path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ForwardBuffer(path, create=False)
    assert not path.exists()

    with ForwardBuffer(path) as buf:
        buf.append("t", {})
    with ForwardBuffer(path, create=False) as buf:
        assert len(buf) == 1


def test_refuses_files_that_are_not_buffers(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all" * 10)
    with pytest.raises(BufferFileError, match="not a Kernos edge buffer"):
        ForwardBuffer(text)

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (x)")
    conn.close()
    before = other.read_bytes()
    with pytest.raises(BufferFileError, match="another SQLite file"):
        ForwardBuffer(other)
    assert other.read_bytes() == before

    with pytest.raises(BufferFileError, match="directory"):
        ForwardBuffer(tmp_path)


def test_closed_buffer_refuses_use(path: Path) -> None:
    buf = ForwardBuffer(path)
    buf.close()
    buf.close()
    with pytest.raises(ValueError, match="closed"):
        buf.append("t", {})
    with pytest.raises(ValueError, match="closed"):
        len(buf)


def test_concurrent_appends_from_threads_get_distinct_seqs(path: Path) -> None:
    seqs: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    with ForwardBuffer(path) as buf:

        def worker(n: int) -> None:
            try:
                mine = [buf.append("t", {"w": n, "i": i}) for i in range(20)]
            except BaseException as exc:  # surfaced below; a thread would swallow it
                errors.append(exc)
                return
            with lock:
                seqs.extend(mine)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(set(seqs)) == 80
        assert len(buf) == 80
        assert [e.seq for e in buf.peek(100)] == sorted(seqs)
