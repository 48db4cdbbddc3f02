"""The ceiling: a grpc.aio server with Runwire's server options that answers an empty unary
RPC (`/bench.Empty/Call`, bytes in, bytes out) and does nothing else.

It also answers `/bench.Empty/Write`, the naive design the goals are stated against: each call
is one SQLite transaction of its own (BEGIN IMMEDIATE, one INSERT of the request's bytes,
COMMIT) on a WAL file with synchronous=FULL, run on the event loop as Runwire runs SQLite, with
no orchestration, no reads and no response to build.

Run as `python -m bench.empty_server`; prints its port, then serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
from pathlib import Path

import grpc

from runwire_server.server import server_options
from runwire_server.settings import Settings

METHOD = "/bench.Empty/Call"
NAIVE_WRITE = "/bench.Empty/Write"


async def empty(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return b""


def naive_writer(path: Path) -> grpc.RpcMethodHandler[bytes, bytes]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE writes (id INTEGER PRIMARY KEY, body BLOB)")

    async def write(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO writes (body) VALUES (?)", (request,))
        db.execute("COMMIT")
        return b""

    return grpc.unary_unary_rpc_method_handler(write)


async def main() -> None:
    server = grpc.aio.server(options=server_options(Settings.load(environ={})))
    tmp = tempfile.TemporaryDirectory()
    handlers = {
        "Call": grpc.unary_unary_rpc_method_handler(empty),
        "Write": naive_writer(Path(tmp.name) / "naive.db"),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Empty", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(None)
    tmp.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
