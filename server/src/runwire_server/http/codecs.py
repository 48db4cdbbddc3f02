"""How the HTTP edge reads requests and writes responses: protobuf's binary form and its JSON
mapping, read as the gRPC edge reads them (api.decoding: large or undecodable requests are
handed to the call policy to check or refuse, never decoded on the event loop unchecked)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from runwire_server.api.decoding import Undecodable, tolerant_parser


@dataclass(frozen=True, slots=True)
class Encoded:
    """A response already serialized in the binary form (an event fanned out to many
    watchers is serialized once): the binary codec sends the bytes as they are."""

    data: bytes
    kind: type[Message]

    def message(self) -> Message:
        return self.kind.FromString(self.data)


class BinaryCodec:
    """`application/proto`, `application/connect+proto`, `application/grpc-web+proto`."""

    def name(self) -> str:
        return "proto"

    def encode(self, message: Message | Encoded) -> bytes:
        if isinstance(message, Encoded):
            return message.data
        return message.SerializeToString()

    def decode(self, data: bytes | bytearray, message_class: type[Message]) -> Any:
        return tolerant_parser(message_class)(bytes(data))


# Watch events whose JSON form is kept: an event goes to all its watchers within moments, and
# a watcher catching up from storage reads its own, so a short memory holds what fan-out shares.
ENCODED_JSON_KEPT = 256
ENCODED_JSON_LARGEST = 64 * 1024  # larger events (a state with a large inline result) are not kept


class JsonCodec:
    """`application/json`, `application/connect+json`, `application/grpc-web+json`: the
    canonical JSON mapping (lowerCamelCase names, enums by name, 64-bit numbers as strings).
    Fields this server does not know are ignored, as Connect servers do, so that newer clients
    keep working.

    An event fanned out to many watchers comes as the same `Encoded` bytes to each of them: its
    JSON is written for the first and kept for the others (the last ENCODED_JSON_KEPT events),
    as the binary form is serialized once at commit."""

    def __init__(self) -> None:
        self._kept: dict[tuple[type[Message], bytes], bytes] = {}

    def name(self) -> str:
        return "json"

    def encode(self, message: Message | Encoded) -> bytes:
        if not isinstance(message, Encoded):
            return _json(message)
        if len(message.data) > ENCODED_JSON_LARGEST:
            return _json(message.message())  # kept, a few such events would take much memory
        key = (message.kind, message.data)  # bytes keep their hash: one hashing per event
        kept = self._kept.get(key)
        if kept is None:
            kept = self._kept[key] = _json(message.message())
            if len(self._kept) > ENCODED_JSON_KEPT:
                del self._kept[next(iter(self._kept))]  # the oldest
        return kept

    def decode(self, data: bytes | bytearray, message_class: type[Message]) -> Any:
        data = bytes(data) or b"{}"
        try:
            # JSON is UTF-8; the parser (here or in a decoding worker) takes only text.
            data.decode()
        except UnicodeDecodeError as exc:
            return Undecodable(
                message_class.DESCRIPTOR.full_name,
                f"byte {exc.start} is not UTF-8",
                json=True,
            )
        return tolerant_parser(message_class, json=True)(data)


def _json(message: Message) -> bytes:
    document = json_format.MessageToDict(message)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
