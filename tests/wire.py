"""Requests written byte by byte: what no protobuf library will build (messages nested past
the decoder's limit, corrupt bytes) but a hostile client can send."""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.descriptor import Descriptor, FieldDescriptor


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def nested_value(depth: int) -> bytes:
    """A google.protobuf.Value holding a Struct holding a Value ... `depth` times."""
    value = field_bytes(3, b"x")  # string_value
    for _ in range(depth):
        entry = field_bytes(1, b"k") + field_bytes(2, value)
        value = field_bytes(5, field_bytes(1, entry))  # struct_value { fields { k: value } }
    return value


def nested_struct(depth: int) -> bytes:
    """A google.protobuf.Struct nested `depth` levels deep."""
    return field_bytes(1, field_bytes(1, b"k") + field_bytes(2, nested_value(depth)))


def struct_paths(descriptor: Descriptor, depth: int = 4) -> Iterator[list[FieldDescriptor]]:
    """Paths of singular message fields from `descriptor` to a Struct field."""
    for field in descriptor.fields:
        kind = field.message_type
        if kind is None or field.is_repeated:
            continue
        if kind.full_name == "google.protobuf.Struct":
            yield [field]
        elif depth > 0 and not kind.full_name.startswith("google.protobuf."):
            for rest in struct_paths(kind, depth - 1):
                yield [field, *rest]


def wrap(path: list[FieldDescriptor], payload: bytes) -> bytes:
    """`payload` as the value of the innermost field of `path`, in a request."""
    for field in reversed(path):
        payload = field_bytes(field.number, payload)
    return payload


CORRUPT = [
    b"\xff\xff\xff\xff",  # a field tag that never ends
    b"\x0a\x05ab",  # a string longer than the bytes that follow
    b"\x0b",  # a group start (wire type 3) that never ends
    b"\x0a\xff\xff\xff\xff\x0f",  # a length of four gigabytes
]
