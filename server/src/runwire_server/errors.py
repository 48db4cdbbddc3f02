"""Domain errors and their one mapping to gRPC statuses with google.rpc error details.

Services raise these; the error interceptor turns them into a status with an ErrorInfo (reason,
domain, metadata) and, where it fits, a BadRequest or ResourceInfo detail.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "runwire.dev"
# A status message travels in gRPC metadata (8 KiB in all by default) and goes into the log:
# client values are quoted short, and no message is longer than this.
MAX_MESSAGE = 1000
QUOTED = 40


def quote(value: str, limit: int = QUOTED) -> str:
    """A client's value for a message or a log line: its first `limit` characters, quoted."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


class RunwireError(Exception):
    """An error a client caused or can act on; never INTERNAL."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    reason: str = "UNKNOWN"

    def __init__(self, message: str, *, metadata: dict[str, str] | None = None) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        super().__init__(message)
        self.message = message
        self.metadata = metadata or {}

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=DOMAIN, metadata=self.metadata
        )
        return [_pack(info)]

    def to_status(self) -> grpc.Status:
        code_value: int = self.code.value[0]
        status = status_pb2.Status(code=code_value, message=self.message, details=self.details())
        return cast(grpc.Status, rpc_status.to_status(status))


class InvalidArgument(RunwireError):
    """A request field is malformed or out of range; `field` is its path (`flow_run.flow_id`)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_FIELD"

    def __init__(self, field: str, description: str) -> None:
        if len(field) > MAX_MESSAGE // 2:  # a path that names a client's map key, say
            field = field[: MAX_MESSAGE // 2 - 3] + "..."
        super().__init__(f"{field}: {description}", metadata={"field": field})
        self.field = field
        self.description = description

    def details(self) -> list[any_pb2.Any]:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=self.field, description=self.description
        )
        return [
            *super().details(),
            _pack(error_details_pb2.BadRequest(field_violations=[violation])),
        ]


class UndecodableRequest(RunwireError):
    """The request's bytes are not a message of the method's request type."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "REQUEST_UNDECODABLE"


class ResourceError(RunwireError):
    """An error about one named resource; `message_format` gets the type and the name."""

    message_format = "{resource_type} {name}"

    def __init__(self, resource_type: str, name: str) -> None:
        super().__init__(
            self.message_format.format(resource_type=resource_type, name=quote(name, 255)),
            metadata={"resourceType": resource_type, "resourceName": name[:255]},
        )
        self.resource_type = resource_type
        self.name = name


class NotFound(ResourceError):
    """The named resource does not exist."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "RESOURCE_NOT_FOUND"
    message_format = "{resource_type} {name} not found"

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ResourceInfo(
            resource_type=self.resource_type, resource_name=self.name
        )
        return [*super().details(), _pack(info)]


class AlreadyExists(ResourceError):
    """A resource with the same unique key exists."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "RESOURCE_ALREADY_EXISTS"
    message_format = "{resource_type} {name} already exists"


class FailedPrecondition(RunwireError):
    """The request is well-formed but the system is not in a state that allows it."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, reason: str, message: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, metadata=metadata)
        self.reason = reason


class Unavailable(RunwireError):
    """The database could not be reached or stayed locked; the client may retry."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "DATABASE_UNAVAILABLE"


class DecoderUnavailable(Unavailable):
    """The process that checks large requests could not be started; the client may retry."""

    reason = "DECODER_UNAVAILABLE"


class CursorOutOfRange(RunwireError):
    """A watch cursor this server never gave out (from another database, or a wiped one)."""

    code = grpc.StatusCode.OUT_OF_RANGE
    reason = "CURSOR_OUT_OF_RANGE"

    def __init__(self, cursor: int, newest: int) -> None:
        super().__init__(
            f"after_cursor {cursor} is beyond the newest event {newest}; "
            "start again without a cursor",
            metadata={"cursor": str(cursor), "newestCursor": str(newest)},
        )


class CursorExpired(RunwireError):
    """Retention pruned events after this cursor: what the watcher missed is gone."""

    code = grpc.StatusCode.OUT_OF_RANGE
    reason = "CURSOR_EXPIRED"

    def __init__(self, cursor: int, pruned_through: int) -> None:
        super().__init__(
            f"after_cursor {cursor} is older than the events this server keeps (retention "
            f"pruned up to {pruned_through}): list the runs again, then watch without a cursor "
            "or from the list's watch_cursor",
            metadata={"cursor": str(cursor), "prunedThrough": str(pruned_through)},
        )


class ShuttingDown(RunwireError):
    """The server is stopping; reconnect (to it or a replica) and resume.

    The status carries a RetryInfo for as long as the server may still be stopping: a client
    that waits that long finds it gone, instead of reaching it while gRPC shuts down (gRPC
    cancels such a call before any handler runs, and the client sees CANCELLED)."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "SERVER_SHUTTING_DOWN"

    def __init__(self, message: str, *, retry_delay: float = 1.0) -> None:
        super().__init__(message)
        self.retry_delay = retry_delay

    def details(self) -> list[any_pb2.Any]:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(timedelta(seconds=round(self.retry_delay, 3)))
        return [*super().details(), _pack(error_details_pb2.RetryInfo(retry_delay=delay))]


class Unauthenticated(RunwireError):
    """The call carries no token, or one the server does not know or no longer accepts."""

    code = grpc.StatusCode.UNAUTHENTICATED

    def __init__(self, reason: str, message: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, metadata=metadata)
        self.reason = reason


class PermissionDenied(RunwireError):
    """The token is valid but its role does not allow this method."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "ROLE_NOT_ALLOWED"

    def __init__(self, method: str, role: str) -> None:
        super().__init__(
            f"a {role!r} token may not call {method}; it needs a 'write' token",
            metadata={"method": method, "role": role},
        )


class ResourceExhausted(RunwireError):
    """A per-client quota is used up; the client may retry once it has released some."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, reason: str, message: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, metadata=metadata)
        self.reason = reason


class DeadlineExceeded(RunwireError):
    """The caller's deadline passed before the work was done; nothing was written."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


class Internal(RunwireError):
    """What a client is told of a fault of the server; the fault itself is in the server's
    log. Never raised: the edges answer with it for exceptions that are not RunwireErrors."""

    code = grpc.StatusCode.INTERNAL
    reason = "INTERNAL"

    def __init__(self, message: str = "internal error; see the server log") -> None:
        super().__init__(message)


def internal_status(message: str = "internal error; see the server log") -> grpc.Status:
    return Internal(message).to_status()


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed
