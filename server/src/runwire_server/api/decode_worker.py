"""The process that checks large requests for the server (api.request_decoder), and the frames
the two exchange over its standard input and output.

    python -m runwire_server.api.decode_worker

A frame is a 4-byte big-endian length and that many bytes. The server sends two frames, a JSON
header (the request's message class and the limits to check it against) and the request's
bytes; the worker answers with one JSON frame: `{}` when the request passes, or its refusal.
The worker ends when its standard input closes, which it does when the server ends, however it
ends.
"""

from __future__ import annotations

import importlib
import json
import struct
import sys
from typing import IO, Any

from google.protobuf.message import Message

from runwire_server.api.decoding import Undecodable, check_entries, check_enums, decode
from runwire_server.api.limits import check_filters
from runwire_server.errors import InvalidArgument, UndecodableRequest

_LENGTH = struct.Struct(">I")


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)))
    stream.write(payload)


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame, or None at the end of the stream."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    payload = stream.read(length)
    return payload if len(payload) == length else None


def check_request(message: Message, max_filter_values: int) -> None:
    """The checks of a decoded request that need nothing but the request."""
    check_filters(message, max_filter_values)
    check_enums(message)


def decode_and_check(kind: type[Message], data: bytes, max_filter_values: int) -> Message:
    """The request, decoded and checked as a large one is; raises its refusal."""
    message = decode(kind, data)
    if isinstance(message, Undecodable):
        raise message.refusal()
    check_entries(message)
    check_request(message, max_filter_values)
    return message


def refusal_to_json(error: InvalidArgument | UndecodableRequest | None) -> dict[str, Any]:
    if error is None:
        return {}
    if isinstance(error, InvalidArgument):
        return {"field": error.field, "description": error.description}
    return {"undecodable": error.message}


def refusal_from_json(answer: dict[str, Any]) -> InvalidArgument | UndecodableRequest | None:
    if "field" in answer:
        return InvalidArgument(answer["field"], answer["description"])
    if "undecodable" in answer:
        return UndecodableRequest(answer["undecodable"])
    if answer:
        raise RuntimeError(f"the decoding worker failed: {answer.get('error')}")
    return None


def _message_class(module: str, name: str) -> type[Message]:
    kind = getattr(importlib.import_module(module), name)
    if not (isinstance(kind, type) and issubclass(kind, Message)):
        raise TypeError(f"{module}.{name} is not a message class")
    return kind


def _answer(header: dict[str, Any], data: bytes) -> dict[str, Any]:
    kind = _message_class(header["module"], header["name"])
    try:
        decode_and_check(kind, data, header["max_filter_values"])
    except (InvalidArgument, UndecodableRequest) as exc:
        return refusal_to_json(exc)
    return {}


def main() -> None:
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while (header := read_frame(requests)) is not None:
        data = read_frame(requests)
        if data is None:
            return
        try:
            answer = _answer(json.loads(header), data)
        except Exception as exc:  # a fault of the worker, reported as one, not a refusal
            answer = {"error": repr(exc)[:1000]}
        write_frame(answers, json.dumps(answer).encode())
        answers.flush()


if __name__ == "__main__":
    main()
