"""Errors raised by the client: one class per gRPC status, with the server's details."""

from __future__ import annotations

from typing import ClassVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class RunwireError(Exception):
    """A call to the Runwire server failed.

    `reason` and `metadata` come from the server's google.rpc.ErrorInfo; `field` names the
    request field an INVALID_ARGUMENT is about; `retry_delay` is the seconds a google.rpc.
    RetryInfo asks the client to wait before calling again (a server shutting down sends one).
    """

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        field: str = "",
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = metadata or {}
        self.field = field
        self.retry_delay = retry_delay


class InvalidArgument(RunwireError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RunwireError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RunwireError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(RunwireError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(RunwireError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unavailable(RunwireError):
    """The server could not be reached or is shutting down; retrying later may work."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(RunwireError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class TlsMismatch(RunwireError):
    """The client's TLS settings do not fit the server's, so no connection can be made.

    `reason` says how (one of the constants below), `cause` says it in words and `remedy` what
    to change; `metadata` holds the address and, for an untrusted certificate, OpenSSL's
    `verify_error` and `verify_code`. Not an `Unavailable`: that one promises that retrying
    later may work, while here only changing the settings will, so code that retries on
    `Unavailable` must not spin on it. gRPC reports these failures as UNAVAILABLE, hence `code`.
    """

    code = grpc.StatusCode.UNAVAILABLE
    SERVER_REQUIRES_TLS: ClassVar[str] = "SERVER_REQUIRES_TLS"  # this client: plain text
    SERVER_IS_PLAINTEXT: ClassVar[str] = "SERVER_IS_PLAINTEXT"  # this client: TLS
    SERVER_CERTIFICATE_UNTRUSTED: ClassVar[str] = "SERVER_CERTIFICATE_UNTRUSTED"
    CLIENT_CERTIFICATE_REQUIRED: ClassVar[str] = "CLIENT_CERTIFICATE_REQUIRED"
    CLIENT_CERTIFICATE_REJECTED: ClassVar[str] = "CLIENT_CERTIFICATE_REJECTED"

    def __init__(
        self, cause: str, remedy: str, *, reason: str, address: str, **details: str
    ) -> None:
        super().__init__(
            f"{cause}: {remedy}", reason=reason, metadata={"address": address, **details}
        )
        self.cause = cause
        self.remedy = remedy
        self.address = address


class Unauthenticated(RunwireError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(RunwireError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(RunwireError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unimplemented(RunwireError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(RunwireError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[RunwireError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        OutOfRange,
        Unavailable,
        DeadlineExceeded,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Unimplemented,
        Internal,
    )
}


def from_rpc_error(error: grpc.RpcError) -> RunwireError:
    """The client exception for a failed call, with the details the server attached."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or code.name
    reason, metadata, field = "", {}, ""
    retry_delay = None
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        status = None
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Unpack(bad) and bad.field_violations:
                field = bad.field_violations[0].field
            elif detail.Unpack(retry):
                retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    cls = _BY_CODE.get(code, RunwireError)
    return cls(message, reason=reason, metadata=metadata, field=field, retry_delay=retry_delay)


class NoClient(RuntimeError):
    """A view was asked to fetch data and has no client to fetch it with.

    Views never open a connection of their own: pass `client=`, or make the call inside
    `with Client(...) as client:`, which is the current client for the views used within it.
    """
