"""What GetServerInfo answers: the server's version and its caller, as protobuf messages."""

from __future__ import annotations

from runwire.v1 import server_service_pb2
from runwire_server.auth import Identity

_ROLES = {
    "read": server_service_pb2.CALLER_ROLE_READ,
    "write": server_service_pb2.CALLER_ROLE_WRITE,
}


def server_info_to_proto(
    version: str, caller: Identity | None
) -> server_service_pb2.GetServerInfoResponse:
    """The answer for `caller`, the identity the call policy admitted the call with: None is a
    call to a server without tokens (with tokens, a call without one is refused before this),
    whose callers may all write."""
    if caller is None:
        return server_service_pb2.GetServerInfoResponse(
            server_version=version,
            authentication_required=False,
            caller=server_service_pb2.Caller(role=server_service_pb2.CALLER_ROLE_WRITE),
        )
    return server_service_pb2.GetServerInfoResponse(
        server_version=version,
        authentication_required=True,
        caller=server_service_pb2.Caller(name=caller.name, role=_ROLES[caller.role]),
    )
