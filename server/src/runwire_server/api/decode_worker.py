"""The process that checks large requests for the server (api.request_decoder), and the frames
the two exchange over its standard input and output.

    python -m runwire_server.api.decode_worker

A frame is a 4-byte big-endian length and that many bytes. Once started, the worker sends one
JSON frame naming the code it runs (`{"module": <runwire_server's path>}`). Then, for each
request, the server sends a JSON header (the request's message class, whether the request is in
protobuf's JSON form, and the limits to check it against) and the request's bytes; the worker
answers with a JSON frame, `{"passed": true}` followed by the request encoded anew in the binary
form, or the refusal. The server decodes only the bytes encoded anew: a map key or a oneof sent
twice is decoded twice but kept once, so the original bytes can cost more to decode than what
was counted. The worker ends when its standard input closes,
which it does when the server ends, however it ends.
"""

from __future__ import annotations

import importlib
import json
import struct
import sys
from typing import IO, Any

from google.protobuf.message import Message

import runwire_server
from runwire_server.api.decoding import Undecodable, check_entries, check_enums, decode
from runwire_server.api.limits import check_filters
from runwire_server.errors import InvalidArgument, UndecodableRequest

LENGTH = struct.Struct(">I")


def frame(payload: bytes) -> bytes:
    return LENGTH.pack(len(payload)) + payload


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame, or None at the end of the stream."""
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    (length,) = LENGTH.unpack(head)
    payload = stream.read(length)
    return payload if len(payload) == length else None


def check_request(message: Message, max_filter_values: int) -> None:
    """The checks of a decoded request that need nothing but the request."""
    check_filters(message, max_filter_values)
    check_enums(message)


def decode_and_check(
    kind: type[Message], data: bytes, max_filter_values: int, json: bool = False
) -> Message:
    """The request, decoded (from JSON if `json`) and checked as a large one is; raises its
    refusal."""
    message = decode(kind, data, json)
    if isinstance(message, Undecodable):
        raise message.refusal()
    check_entries(message)
    check_request(message, max_filter_values)
    return message


def refusal_from_json(answer: dict[str, Any]) -> InvalidArgument | UndecodableRequest:
    if "field" in answer:
        return InvalidArgument(answer["field"], answer["description"])
    if "undecodable" in answer:
        return UndecodableRequest(answer["undecodable"])
    raise RuntimeError(f"the decoding worker failed: {answer.get('error')}")


def _answer(header: dict[str, Any], data: bytes) -> tuple[dict[str, Any], bytes | None]:
    kind = getattr(importlib.import_module(header["module"]), header["name"])
    if not (isinstance(kind, type) and issubclass(kind, Message)):
        raise TypeError(f"{header['module']}.{header['name']} is not a message class")
    try:
        message = decode_and_check(
            kind, data, header["max_filter_values"], header.get("json", False)
        )
    except InvalidArgument as exc:
        return {"field": exc.field, "description": exc.description}, None
    except UndecodableRequest as exc:
        return {"undecodable": exc.message}, None
    return {"passed": True}, message.SerializeToString()


def main() -> None:
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    answers.write(frame(json.dumps({"module": runwire_server.__file__}).encode()))
    answers.flush()
    while (header := read_frame(requests)) is not None:
        data = read_frame(requests)
        if data is None:
            return
        try:
            answer, encoded = _answer(json.loads(header), data)
        except Exception as exc:  # a fault of the worker, reported as one, not a refusal
            answer, encoded = {"error": repr(exc)[:1000]}, None
        answers.write(frame(json.dumps(answer).encode()))
        if encoded is not None:
            answers.write(frame(encoded))
        answers.flush()


if __name__ == "__main__":
    main()
