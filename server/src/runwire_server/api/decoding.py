"""What gRPC decodes from the wire, checked before any handler runs: bytes that are not a
message of the method's request type, requests with more entries than the server decodes, and
enum numbers that no version of the contract defines.

gRPC answers a request its deserializer cannot parse with UNKNOWN and logs nothing; the server
decodes through `tolerant` instead, which hands the handler an `Undecodable` that the interceptor
refuses with INVALID_ARGUMENT, or a `Pending` request that is checked before it is decoded (see
api.request_decoder).
"""

from __future__ import annotations

import functools
import json as json_module
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from runwire_server.errors import InvalidArgument, UndecodableRequest, quote

# upb refuses messages nested deeper than this (a Struct value counts two levels).
MAX_DEPTH = 100
MAX_JSON_ERROR = 300  # characters of the JSON parser's message kept in a refusal


@dataclass(frozen=True)
class Undecodable:
    """Bytes that did not decode as the method's request type."""

    type_name: str
    error: str
    size: int = 0
    json: bool = False

    def refusal(self) -> UndecodableRequest:
        if self.size:
            return UndecodableRequest(
                f"the request is {self.size} bytes; a {self.type_name} is at most "
                f"{SMALL_REQUEST_BYTES}"
            )
        if self.json:
            # The parser names the field and what is wrong with it.
            why = f"{self.error[:MAX_JSON_ERROR]}"
        elif "MaxDepth" in self.error:
            why = f"its messages are nested more than {MAX_DEPTH} levels deep"
        else:
            why = "its bytes are not a protobuf message of that type"
        return UndecodableRequest(f"the request is not a valid {self.type_name}: {why}")


# A request of a type with no lists, maps, documents or bytes (an id, a name, a token) is far
# smaller than this: a larger one is refused without decoding it. Decoding is the one piece of
# a request's work that cannot be cut short, and it holds the event loop.
SMALL_REQUEST_BYTES = 64 * 1024

# The most map entries and list elements one request may hold, in all and at any depth.
# Decoding takes time in proportion to them, and to a map's entries more than that (upb's maps
# slow down as they grow: protocolbuffers/upb#1335); RELIABILITY.md has what a dense request
# of 4 MiB costs. Within these, any request decodes in milliseconds. Every entry and element
# takes a byte of the request at least, so a request of at most PENDING_BYTES is within both.
MAX_MAP_ENTRIES = 50_000
MAX_LIST_ELEMENTS = 250_000
PENDING_BYTES = MAX_MAP_ENTRIES


@dataclass(frozen=True)
class Pending:
    """A request that may hold more entries than the server decodes on its event loop: it is
    checked first (api.request_decoder), then decoded."""

    kind: type[Message]
    data: bytes
    json: bool = False  # the request is protobuf's JSON, not its binary form


# JSON is parsed in Python, some fifty times slower than upb decodes the binary form: a JSON
# request larger than this is parsed by a decoding worker too.
JSON_PENDING_BYTES = 16 * 1024


def decode(kind: type[Message], data: bytes, json: bool = False) -> Message | Undecodable:
    try:
        if json:
            return _from_json(kind, data)
        return kind.FromString(data)
    except DecodeError as exc:
        return Undecodable(kind.DESCRIPTOR.full_name, str(exc))
    except json_format.ParseError as exc:
        return Undecodable(kind.DESCRIPTOR.full_name, str(exc), json=True)


def _from_json(kind: type[Message], data: bytes) -> Message:
    """A message from protobuf's JSON form. Fields this server does not know are left out, as
    Connect servers do, so that clients of a newer contract keep working; but an enum name it
    does not know is refused, where protobuf's parser would drop it with the unknown fields and
    a filter on a misspelt state would quietly match nothing."""
    try:
        document = json_module.loads(data, object_pairs_hook=_each_key_once)
    except (ValueError, RecursionError) as exc:
        raise json_format.ParseError(f"Failed to load JSON: {exc}") from None
    if not isinstance(document, dict):
        raise json_format.ParseError("a request is a JSON object")
    message = kind()
    json_format.ParseDict(_known_fields(document, cast(Descriptor, kind.DESCRIPTOR)), message)
    return message


def _each_key_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"the key {key!r} appears twice in one object")
        document[key] = value
    return document


def _known_fields(document: Any, descriptor: Descriptor) -> Any:
    """`document` without the keys that name no field of `descriptor`, at any depth."""
    if not isinstance(document, dict) or descriptor.full_name.startswith("google.protobuf."):
        return document  # well-known types have JSON forms of their own (Struct: any keys)
    fields = _json_fields(descriptor)
    known: dict[str, Any] = {}
    for key, value in document.items():
        field = fields.get(key)
        if field is None:
            continue
        kind = field.message_type
        if kind is not None and value is not None:
            if _is_map(field):
                item_kind = _map_value(field).message_type
                if item_kind is not None and isinstance(value, dict):
                    value = {k: _known_fields(v, item_kind) for k, v in value.items()}
            elif field.is_repeated:
                if isinstance(value, list):
                    value = [_known_fields(item, kind) for item in value]
            else:
                value = _known_fields(value, kind)
        known[key] = value
    return known


@functools.cache
def _json_fields(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """A message's fields by the names JSON may give them: lowerCamelCase, or as in the proto."""
    return {
        **{field.name: field for field in descriptor.fields},
        **{field.json_name: field for field in descriptor.fields},
    }


def tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize`, answering an Undecodable instead of raising, and a Pending request instead
    of decoding one that might hold too many entries."""
    if deserialize is None:
        return None
    kind = getattr(deserialize, "__self__", None)
    if not (isinstance(kind, type) and issubclass(kind, Message)):
        return deserialize
    return tolerant_parser(kind)


_PARSERS: dict[tuple[type[Message], bool], Callable[[bytes], Any]] = {}


def tolerant_parser(kind: type[Message], json: bool = False) -> Callable[[bytes], Any]:
    """Parses a request of type `kind` from its binary form (or JSON) as `tolerant` does."""
    parser = _PARSERS.get((kind, json))
    if parser is None:
        parser = _PARSERS[(kind, json)] = _parser(kind, json)
    return parser


def _parser(kind: type[Message], json: bool) -> Callable[[bytes], Any]:
    name = kind.DESCRIPTOR.full_name
    may_be_large = _may_be_large(kind.DESCRIPTOR)
    pending_bytes = JSON_PENDING_BYTES if json else PENDING_BYTES

    def parse(data: bytes) -> Any:
        if len(data) <= pending_bytes:
            return decode(kind, data, json)
        if not may_be_large:
            if len(data) > SMALL_REQUEST_BYTES:
                return Undecodable(name, "too large", len(data))
            return decode(kind, data, json)
        return Pending(kind, data, json)

    return parse


def check_entries(message: Message) -> None:
    """Refuse a request holding more than MAX_MAP_ENTRIES map entries or MAX_LIST_ELEMENTS list
    elements, naming the field where the count passed the limit."""
    budget = {_MAP: MAX_MAP_ENTRIES, _LIST: MAX_LIST_ELEMENTS}
    try:
        _count_entries(message, budget)
    except _Crowded as crowded:
        kind, limit = (
            ("map entries", MAX_MAP_ENTRIES)
            if crowded.map
            else ("list elements", MAX_LIST_ELEMENTS)
        )
        raise InvalidArgument(
            ".".join(crowded.path), f"the request holds more than {limit} {kind} in all"
        ) from None


_MAP, _LIST = "map", "list"


class _Crowded(Exception):
    """A budget ran out; `path` is filled in on the way out."""

    def __init__(self, map: bool = False) -> None:
        super().__init__()
        self.map = map
        self.path: list[str] = []


def _count_entries(message: Message, budget: dict[str, int]) -> None:
    for field, value in message.ListFields():
        if field.is_repeated:
            kind = _MAP if _is_map(field) else _LIST
            budget[kind] -= len(value)
            if budget[kind] < 0:
                crowded = _Crowded(map=kind == _MAP)
                crowded.path.append(field.name)
                raise crowded
        for where, item in _messages_in(field, value):
            try:
                _count_entries(item, budget)
            except _Crowded as crowded:
                crowded.path.insert(0, f"{field.name}{where}")
                raise


def _messages_in(field: FieldDescriptor, value: Any) -> Iterator[tuple[str, Message]]:
    """The messages a field holds, each with what names it in the field (a key, an index)."""
    if field.message_type is None:
        return
    if _is_map(field):
        if _map_value(field).message_type is not None:
            for key, item in value.items():
                yield f"[{quote(str(key))}]", item
    elif field.is_repeated:
        for index, item in enumerate(value):
            yield f"[{index}]", item
    else:
        yield "", value


@functools.cache
def _may_be_large(descriptor: Descriptor) -> bool:
    """Whether a message of this type can hold lists, maps, documents or bytes."""
    for field in descriptor.fields:
        if field.is_repeated or field.type == FieldDescriptor.TYPE_BYTES:
            return True
        kind = field.message_type
        if kind is not None and (
            kind.full_name.startswith("google.protobuf.Struct") or _may_be_large(kind)
        ):
            return True
    return False


# The most messages that carry enum fields (a task run's inputs, filter entries) one request may
# hold: each is checked in Python on the event loop.
MAX_ENUM_ENTRIES = 20_000


def check_enums(message: Message) -> None:
    """Refuse an enum field set to a number its enum does not define, naming the field.
    Proto3 enums are open, so such a number decodes; stored, it would be read back as
    nonsense by every client. Most requests pass the quick walk; only a refused one is walked
    again to name the field."""
    try:
        valid = _valid(message, [MAX_ENUM_ENTRIES])
    except _Crowded as crowded:
        raise InvalidArgument(
            ".".join(crowded.path), f"holds more than {MAX_ENUM_ENTRIES} entries in all"
        ) from None
    if not valid:
        _name_the_field(message, "")


def _valid(message: Message, budget: list[int]) -> bool:
    enums, nested = _plan(message.DESCRIPTOR)
    for field in enums:
        known = field.enum_type.values_by_number  # type: ignore[union-attr]
        value = getattr(message, field.name)
        if field.is_repeated:
            if any(number not in known for number in value):
                return False
        elif value not in known:
            return False
    for field in nested:
        value = getattr(message, field.name)
        try:
            if field.is_repeated:
                budget[0] -= len(value)
                if budget[0] < 0:
                    raise _Crowded
                items = value.values() if _is_map(field) else value
                if _map_of_enums(field):
                    known = _map_value(field).enum_type.values_by_number  # type: ignore[union-attr]
                    if any(number not in known for number in items):
                        return False
                elif not all(_valid(item, budget) for item in items):
                    return False
            elif message.HasField(field.name) and not _valid(value, budget):
                return False
        except _Crowded as crowded:
            crowded.path.insert(0, field.name)
            raise
    return True


def _name_the_field(message: Message, path: str) -> None:
    """Raise InvalidArgument for the first undefined enum number under `message`."""
    enums, nested = _plan(message.DESCRIPTOR)
    for field in enums:
        value = getattr(message, field.name)
        numbers = enumerate(value) if field.is_repeated else [(None, value)]
        for index, number in numbers:
            where = f"{path}{field.name}" + ("" if index is None else f"[{index}]")
            _check_number(number, field, where)
    for field in nested:
        value = getattr(message, field.name)
        where = f"{path}{field.name}"
        if _is_map(field):
            for key, item in value.items():
                entry = f"{where}[{quote(str(key))}]"
                if _map_of_enums(field):
                    _check_number(item, _map_value(field), entry)
                else:
                    _name_the_field(item, f"{entry}.")
        elif field.is_repeated:
            for index, item in enumerate(value):
                _name_the_field(item, f"{where}[{index}].")
        elif message.HasField(field.name):
            _name_the_field(value, f"{where}.")


def _check_number(number: int, field: FieldDescriptor, where: str) -> None:
    enum = field.enum_type
    assert enum is not None
    if number not in enum.values_by_number:
        raise InvalidArgument(where, f"{number} is not a value of {enum.full_name}")


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _map_value(field: FieldDescriptor) -> FieldDescriptor:
    entry = field.message_type
    assert entry is not None
    return entry.fields_by_name["value"]


def _map_of_enums(field: FieldDescriptor) -> bool:
    return _is_map(field) and _map_value(field).enum_type is not None


@functools.cache
def _plan(
    descriptor: Descriptor,
) -> tuple[tuple[FieldDescriptor, ...], tuple[FieldDescriptor, ...]]:
    """The enum fields of a message type, and its message fields that can hold one."""
    enums = tuple(f for f in descriptor.fields if f.enum_type is not None)
    nested = tuple(
        f for f in descriptor.fields if f.message_type is not None and _holds_enums(f.message_type)
    )
    return enums, nested


@functools.cache
def _holds_enums(descriptor: Descriptor) -> bool:
    if descriptor.full_name.startswith("google.protobuf."):
        return False  # well-known types: Struct's null value is the only enum, and harmless
    if descriptor.GetOptions().map_entry:
        value = descriptor.fields_by_name["value"]
        return value.enum_type is not None or (
            value.message_type is not None and _holds_enums(value.message_type)
        )
    return any(
        f.enum_type is not None or (f.message_type is not None and _holds_enums(f.message_type))
        for f in descriptor.fields
    )
