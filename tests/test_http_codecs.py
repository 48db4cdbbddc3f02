"""The HTTP edge's codecs: a watch event fanned out to many watchers is written as JSON once."""

from __future__ import annotations

import json

from google.protobuf import json_format

from runwire.v1 import state_pb2, watch_pb2
from runwire_server.http.codecs import ENCODED_JSON_KEPT, BinaryCodec, Encoded, JsonCodec

W = watch_pb2.WatchFlowRunResponse


def event(cursor: int) -> bytes:
    return W(
        cursor=cursor,
        flow_run_state=watch_pb2.FlowRunStateChanged(
            flow_run_id="01a23ce0-789d-7e33-8bbc-74ebd45ae143",
            state=state_pb2.State(type=state_pb2.STATE_TYPE_RUNNING, name="Running"),
        ),
    ).SerializeToString()


def test_an_event_is_written_as_json_once_for_all_its_watchers() -> None:
    codec = JsonCodec()
    data = event(7)
    first = codec.encode(Encoded(data, W))
    expected = json_format.MessageToDict(W.FromString(data))
    assert json.loads(first) == expected
    assert first == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()
    # Every other watcher of the change gets the same bytes, not a new encoding.
    assert codec.encode(Encoded(data, W)) is first
    assert codec.encode(Encoded(bytes(data), W)) is first  # equal bytes, another object


def test_the_codec_keeps_the_json_of_the_latest_events_only() -> None:
    codec = JsonCodec()
    oldest = codec.encode(Encoded(event(0), W))
    for cursor in range(1, ENCODED_JSON_KEPT + 50):
        codec.encode(Encoded(event(cursor), W))
    again = codec.encode(Encoded(event(0), W))
    assert again == oldest and again is not oldest  # written anew, as it was
    latest = event(ENCODED_JSON_KEPT + 49)
    assert codec.encode(Encoded(latest, W)) is codec.encode(Encoded(latest, W))


def test_messages_are_encoded_as_they_come() -> None:
    message = W(cursor=3, caught_up=watch_pb2.CaughtUp())
    assert json.loads(JsonCodec().encode(message)) == {"cursor": "3", "caughtUp": {}}
    assert BinaryCodec().encode(message) == message.SerializeToString()
    assert BinaryCodec().encode(Encoded(event(1), W)) == event(1)
