"""The ceiling: a grpc.aio server with Runwire's server options that answers an empty unary
RPC (`/bench.Empty/Call`, bytes in, bytes out) and does nothing else.

Run as `python -m bench.empty_server`; prints its port, then serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from runwire_server.server import server_options
from runwire_server.settings import Settings

METHOD = "/bench.Empty/Call"


async def empty(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return b""


async def main() -> None:
    server = grpc.aio.server(options=server_options(Settings.load(environ={})))
    handler = grpc.unary_unary_rpc_method_handler(empty)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Empty", {"Call": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(None)


if __name__ == "__main__":
    asyncio.run(main())
