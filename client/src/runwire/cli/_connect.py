"""How a command reaches the server: the connection options, which every command that calls
the server takes before or after its name, and the client it calls with.

Each setting comes from its option, else its RUNWIRE_API_* variable, else the profile in use
(`runwire config`), else the default. Failures end the command with one line and the exit
codes of runwire.cli.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from runwire.cli import _profiles
from runwire.cli_output import complain

if TYPE_CHECKING:
    from runwire.client import Client
    from runwire.errors import RunwireError, TlsMismatch

F = TypeVar("F", bound=Callable[..., Any])
PANEL = "Connection"


def _option(*names: str, envvar: str | None, help: str, metavar: str | None = None) -> Any:
    return typer.Option(
        *names,
        envvar=envvar,
        show_envvar=envvar is not None,
        help=help,
        metavar=metavar,
        rich_help_panel=PANEL,
    )


# The options every connected command takes, as parameters of its function.
OPTIONS = [
    inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[kind | None, option],
    )
    for name, kind, option in (
        (
            "address",
            str,
            _option(
                "--address",
                envvar="RUNWIRE_API_URL",
                metavar="URL",
                help="the server: host:port, grpc:// or http:// (plain text), grpcs:// or "
                "https:// (TLS)  [default: 127.0.0.1:50051]",
            ),
        ),
        (
            "profile",
            str,
            _option(
                "--profile",
                envvar="RUNWIRE_PROFILE",
                metavar="NAME",
                help="the profile of `runwire config` to use  [default: the one in use]",
            ),
        ),
        (
            "token",
            str,
            _option(
                "--token",
                envvar="RUNWIRE_API_TOKEN",
                metavar="TOKEN",
                help="bearer token, for a server that needs one",
            ),
        ),
        (
            "token_file",
            str,
            _option(
                "--token-file",
                envvar="RUNWIRE_API_TOKEN_FILE",
                metavar="PATH",
                help="file holding the bearer token",
            ),
        ),
        (
            "tls",
            bool,
            _option(
                "--tls/--no-tls",
                envvar="RUNWIRE_API_TLS",
                help="connect over TLS (implied by the CA and certificate files)  "
                "[default: no-tls]",
            ),
        ),
        (
            "ca_file",
            str,
            _option(
                "--ca-file",
                envvar="RUNWIRE_API_CA_FILE",
                metavar="PATH",
                help="CA of the server's certificate  [default: the system's CAs]",
            ),
        ),
        (
            "cert_file",
            str,
            _option(
                "--cert-file",
                envvar="RUNWIRE_API_CERT_FILE",
                metavar="PATH",
                help="client certificate, for mutual TLS",
            ),
        ),
        (
            "key_file",
            str,
            _option(
                "--key-file",
                envvar="RUNWIRE_API_KEY_FILE",
                metavar="PATH",
                help="the client certificate's key",
            ),
        ),
    )
]
NAMES = tuple(p.name for p in OPTIONS)
# The parameter through which Typer hands a connected command its context.
CONTEXT = inspect.Parameter(
    "runwire_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context
)
_KEY = "runwire.connection"
# The options given to the command being run, before or after its name.
_given: ContextVar[dict[str, Any]] = ContextVar("runwire_connection")


def given() -> dict[str, Any]:
    """The connection options given so far."""
    return _given.get({})


def connected(command: F) -> F:
    """The command, taking the connection options too (they may also come before its name)."""
    signature = inspect.signature(command, eval_str=True)

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        context: typer.Context = kwargs.pop(CONTEXT.name)
        # Click shares `meta` between a command's context and its parents'.
        kept: dict[str, Any] = context.meta.setdefault(_KEY, {})
        kept.update({n: v for n in NAMES if (v := kwargs.pop(n, None)) is not None})
        _given.set(kept)
        return command(*args, **kwargs)

    parameters = [*signature.parameters.values(), CONTEXT, *OPTIONS]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def settings() -> dict[str, Any]:
    """The connection settings: the options (their variables read by the options), then the
    profile's, for what neither gave."""
    values = dict(given())
    profile = _profiles.chosen(values.pop("profile", None))
    for key, value in profile.items():
        values.setdefault(key, value)
    return values


@contextmanager
def client() -> Iterator[Client]:
    """A client of the server the options name, ready to call; failures end the command."""
    # gRPC writes every failed TLS handshake to stderr at its default verbosity; the command
    # explains such failures in a line of its own instead. gRPC reads GRPC_VERBOSITY once, when
    # it is first imported (just below: nothing the command line imported before needs it).
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from runwire.client import Client
    from runwire.connection import ConnectionSettings
    from runwire.errors import RunwireError, TlsMismatch, Unavailable

    try:
        resolved = ConnectionSettings.resolve(**settings())
        connection = Client(
            resolved.address,
            timeout=15,
            retries=1,
            token=resolved.token,
            tls=resolved.tls,
            ca_file=resolved.ca_file,
            cert_file=resolved.cert_file,
            key_file=resolved.key_file,
        )
    except (ValueError, OSError, _profiles.ProfileError) as exc:
        complain("invalid connection settings", exc)
        raise typer.Exit(2) from None
    try:
        connection.wait_until_ready(timeout=3)
        yield connection
    except TlsMismatch as exc:
        complain("TLS settings do not fit the server's", f"{exc.cause}: {_tls_remedy(exc)}")
        raise typer.Exit(2) from None
    except Unavailable as exc:
        complain(f"cannot reach the Runwire server at {connection.address}", exc.message)
        raise typer.Exit(3) from None
    except RunwireError as exc:
        refused(exc)
    except KeyboardInterrupt:
        # Ctrl-C while waiting on the server: the shell's code for SIGINT, not a failure of
        # the run (1) that a script waiting on `watch` would act on. The process ends here,
        # without closing the channel under a stream another thread still reads (which can
        # hang gRPC): the system closes the connection.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    finally:
        connection.close()


def refused(exc: RunwireError) -> None:
    """End the command for a request the server refused: one line, exit code 1."""
    what = exc.code.name.lower().replace("_", " ")
    message = exc.message
    # The server's message names the field first; say it once.
    if exc.field and not message.startswith(f"{exc.field}:"):
        message = f"{exc.field}: {message}"
    complain(what, message)
    raise typer.Exit(1)


def _tls_remedy(mismatch: TlsMismatch) -> str:
    """What to change, in the command line's own options."""
    from runwire._diagnose import NAME_MISMATCH
    from runwire.errors import TlsMismatch

    reason, details = mismatch.reason, mismatch.metadata
    if reason == TlsMismatch.SERVER_REQUIRES_TLS:
        remedy = "pass --ca-file <the CA of its certificate>, or --tls for the system's CAs"
        if details.get("client_certificate") == "required":
            remedy += ", with --cert-file and --key-file"
        return remedy
    if reason == TlsMismatch.SERVER_IS_PLAINTEXT:
        return (
            "give a host:port or grpc:// address, and drop --tls, --ca-file, --cert-file and "
            "--key-file (and the RUNWIRE_API_TLS and RUNWIRE_API_*_FILE variables, and the "
            "profile's TLS settings)"
        )
    if reason == TlsMismatch.SERVER_CERTIFICATE_UNTRUSTED:
        if int(details.get("verify_code", 0)) in NAME_MISMATCH:
            return "connect to an --address its certificate names"
        return "pass --ca-file with the CA that signed it"
    if reason == TlsMismatch.CLIENT_CERTIFICATE_REQUIRED:
        return "pass --cert-file and --key-file"
    return "pass a --cert-file signed by a CA the server trusts"
