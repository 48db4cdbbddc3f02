"""The kept run messages as a plain object: no server, no database."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2

from runwire_server.convert import message_cache
from runwire_server.convert.message_cache import MessageCache
from runwire_server.run_records import RunRecord

AT = datetime(2030, 1, 1, tzinfo=UTC)


def finished(run_id: uuid.UUID, **values: Any) -> RunRecord:
    return RunRecord(
        {
            "id": run_id,
            "state_type": "COMPLETED",
            "state_timestamp": AT,
            "expected_start_time": AT,
            "start_time": AT,
            **values,
        }
    )


def counting_cache(capacity: int) -> tuple[MessageCache[RunRecord, struct_pb2.Value], list[Any]]:
    built: list[Any] = []

    def build(record: RunRecord, at: datetime) -> struct_pb2.Value:
        built.append(record.id)
        return struct_pb2.Value(string_value=str(getattr(record, "note", "")))

    return MessageCache(build, capacity), built


def test_a_message_is_built_again_only_when_its_run_changed() -> None:
    cache, built = counting_cache(8)
    run_id = uuid.uuid4()
    first = cache(finished(run_id, note="a"), AT)
    assert cache(finished(run_id, note="a"), AT) is first
    assert cache(finished(run_id, note="b"), AT).string_value == "b"
    assert len(built) == 2
    running = RunRecord({**vars(finished(run_id, note="b")), "state_type": "RUNNING"})
    cache(running, AT)
    cache(running, AT)
    assert len(built) == 4  # its estimates move with the clock: built on every read


def test_the_least_recently_read_runs_go_first() -> None:
    cache, built = counting_cache(2)
    a, b, c = (uuid.uuid4() for _ in range(3))
    cache(finished(a), AT)
    cache(finished(b), AT)
    cache(finished(a), AT)  # a is now the more recent
    cache(finished(c), AT)  # b goes
    built.clear()
    cache(finished(a), AT)
    cache(finished(c), AT)
    assert built == []
    cache(finished(b), AT)
    assert built == [b]
    cache.keep(0)
    assert len(cache) == 0
    cache(finished(a), AT)
    assert len(cache) == 0


def test_large_messages_are_not_kept_and_the_bytes_are_bounded() -> None:
    cache, _ = counting_cache(10_000)
    large = uuid.uuid4()
    cache(finished(large, note="x" * (message_cache.KEPT_BYTES // 64 + 1)), AT)
    assert len(cache) == 0
    note = "x" * (message_cache.KEPT_BYTES // 100)
    for _ in range(200):
        cache(finished(uuid.uuid4(), note=note), AT)
    assert len(cache) < 100  # the byte bound, not the count, limits it


def test_runs_read_on_several_threads_at_once() -> None:
    cache, _ = counting_cache(16)
    ids = [uuid.uuid4() for _ in range(64)]
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for n in range(2000):
                run_id = ids[n % len(ids)]
                assert cache(finished(run_id, note=str(run_id)), AT).string_value == str(run_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) <= 16
