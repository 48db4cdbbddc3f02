"""The server itself: the plan of its call."""

from __future__ import annotations

from runwire._plans import Rpc, Unary
from runwire._values import ServerInfo
from runwire.v1 import server_service_pb2 as service

SERVER = "server"


def server_info() -> Unary[ServerInfo]:
    """The server's version, whether it requires tokens, and this client's token name and
    role (`read` or `write`) there."""
    return Unary(
        Rpc(SERVER, "GetServerInfo"),
        service.GetServerInfoRequest(),
        lambda response, _: ServerInfo.from_proto(response),
    )
