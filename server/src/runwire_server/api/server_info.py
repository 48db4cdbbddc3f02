"""ServerService handlers."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import grpc

from runwire.v1 import server_service_pb2 as pb
from runwire.v1 import server_service_pb2_grpc as pb_grpc
from runwire_server import auth, convert
from runwire_server.api.context import AppContext

Context = grpc.aio.ServicerContext[Any, Any]


class ServerServicer(pb_grpc.ServerServiceServicer):
    def __init__(self, app: AppContext) -> None:
        self._version = server_version()

    async def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: Context
    ) -> pb.GetServerInfoResponse:
        # The identity the call policy admitted this call with (None: a server without tokens).
        return convert.server_info_to_proto(self._version, auth.caller.get())


def server_version() -> str:
    """The version of the runwire-server distribution; empty for a server run from files that
    no distribution installed."""
    try:
        return version("runwire-server")
    except PackageNotFoundError:
        return ""
