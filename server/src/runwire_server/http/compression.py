"""gzip for the HTTP edge: one member per message.

connectrpc's own gzip accepts any number of gzip members one after another, as the format
allows, and copies what is left of the input for each: a message of 200,000 empty members took
half a minute to read, on the event loop, before the caller's token was checked. No client
compresses a message in more than one member, so a second one is refused."""

from __future__ import annotations

import gzip
import zlib

from connectrpc.code import Code
from connectrpc.errors import ConnectError

LEVEL = 6


class SingleMemberGzip:
    def name(self) -> str:
        return "gzip"

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        return gzip.compress(data, compresslevel=LEVEL)

    def decompress(
        self, data: bytes | bytearray | memoryview, read_max_bytes: int | None = None
    ) -> bytes:
        if not data:
            return b""
        limit = read_max_bytes if read_max_bytes is not None else 1 << 62
        decompressor = zlib.decompressobj(wbits=31)
        try:
            out = decompressor.decompress(data, limit + 1)
        except zlib.error as exc:
            raise ConnectError(Code.INVALID_ARGUMENT, f"the message is not gzip: {exc}") from None
        if len(out) > limit:
            raise ConnectError(
                Code.RESOURCE_EXHAUSTED,
                f"the message is larger than {limit} bytes once decompressed",
            )
        if not decompressor.eof:
            raise ConnectError(Code.INVALID_ARGUMENT, "the gzip message ends before its end")
        if decompressor.unused_data:
            raise ConnectError(Code.INVALID_ARGUMENT, "the message holds more than one gzip member")
        return out
