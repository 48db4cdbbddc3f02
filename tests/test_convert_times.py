"""convert's Timestamp and Duration builders do their own arithmetic (protobuf's are slow);
they must give exactly the normalized messages protobuf's own converters give."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from runwire_server.convert import duration, timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_timestamps_and_durations_match_protobufs_own() -> None:
    rng = random.Random(7)
    instants = [
        EPOCH,
        EPOCH - timedelta(microseconds=1),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ]
    instants += [
        EPOCH + timedelta(microseconds=rng.randint(-6 * 10**16, 6 * 10**16)) for _ in range(2000)
    ]
    for instant in instants:
        expected = Timestamp()
        expected.FromDatetime(instant)
        assert timestamp(instant) == expected, instant
    spans = [timedelta(0), timedelta(microseconds=-1), timedelta(seconds=-1.5), timedelta(days=-3)]
    spans += [timedelta(microseconds=rng.randint(-(10**13), 10**13)) for _ in range(2000)]
    for span in spans:
        expected_span = Duration()
        expected_span.FromTimedelta(span)
        assert duration(span) == expected_span, span
    for seconds in [0.0, -0.0000005, 2.5, -2.5] + [rng.uniform(-1e5, 1e5) for _ in range(500)]:
        expected_span = Duration()
        expected_span.FromTimedelta(timedelta(seconds=seconds))
        assert duration(seconds) == expected_span, seconds
