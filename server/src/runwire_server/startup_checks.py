"""What a server checks before it starts, each refusal one line naming the setting: an address
served to anyone, TLS files, an address in use, a database that cannot be opened."""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
from pathlib import Path

import grpc
from sqlalchemy import URL, make_url
from sqlalchemy.exc import DBAPIError

from runwire_server.auth import Authenticator
from runwire_server.settings import ConfigurationError, Settings, database_url_for_display, setting


class DatabaseUnreachable(ConfigurationError):
    """No database server answered at the configured address: it may be down or still
    starting (so trying again later may work), or the URL names the wrong host or port."""

    exit_code = 3  # as the command line's "cannot reach the server"


class InsecureAddress(ConfigurationError):
    """Refusing to serve a non-loopback address to anyone who connects."""


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, authenticator: Authenticator) -> None:
    """Without tokens or client certificates, anyone who reaches a port can write: allow
    that on loopback only, unless the operator says otherwise explicitly."""
    if authenticator.enabled or settings.mutual_tls:
        return
    if "*" in settings.allowed_origins:
        raise InsecureAddress(
            f"refusing {setting('cors_allowed_origins')}=* with no authentication: any web page "
            "a person on this machine opens could then read and write the server; name the "
            "dashboard's origin (https://dashboard.example.com), or configure tokens"
        )
    if settings.allow_unauthenticated_remote:
        return
    for name in ("listen_address", "http_address"):
        address = getattr(settings, name)
        if address and not is_loopback(address):
            raise InsecureAddress(
                f"refusing to listen on {address} ({setting(name)}) with no authentication: "
                "configure tokens (RUNWIRE_TOKENS_FILE or RUNWIRE_TOKENS) or mutual TLS, listen "
                "on 127.0.0.1, or pass --allow-unauthenticated-remote "
                "(RUNWIRE_ALLOW_UNAUTHENTICATED_REMOTE=true)"
            )


def _read(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{setting(name)}: cannot read {path}: {exc.strerror}") from None


def _check_tls_files(settings: Settings, certificate: bytes, key: bytes) -> None:
    """gRPC takes any bytes and then only fails to bind the port ("Failed to bind"): check
    that the files hold what they should, with Python's ssl, to say which one does not."""
    if b"-----BEGIN CERTIFICATE-----" not in certificate:
        raise ConfigurationError(
            f"{setting('tls_cert_file')}: {settings.tls_cert_file} holds no PEM certificate"
        )
    if b"PRIVATE KEY-----" not in key:
        raise ConfigurationError(
            f"{setting('tls_key_file')}: {settings.tls_key_file} holds no PEM private key"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password callback, so that an encrypted key fails instead of prompting on a terminal.
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file, password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigurationError(
                f"{setting('tls_key_file')}: {settings.tls_key_file} is not the key of the "
                f"certificate in {settings.tls_cert_file} ({setting('tls_cert_file')})"
            ) from None
        raise ConfigurationError(
            f"{setting('tls_cert_file')} and {setting('tls_key_file')}: cannot use "
            f"{settings.tls_cert_file} and {settings.tls_key_file} as a certificate and its "
            f"unencrypted key ({exc.reason or exc})"
        ) from None
    if settings.mutual_tls:
        try:
            context.load_verify_locations(settings.tls_client_ca_file)
        except ssl.SSLError:
            raise ConfigurationError(
                f"{setting('tls_client_ca_file')}: {settings.tls_client_ca_file} holds no PEM "
                "certificate"
            ) from None


def server_credentials(settings: Settings) -> grpc.ServerCredentials:
    certificate = _read("tls_cert_file", settings.tls_cert_file)
    key = _read("tls_key_file", settings.tls_key_file)
    client_ca = (
        _read("tls_client_ca_file", settings.tls_client_ca_file) if settings.mutual_tls else None
    )
    _check_tls_files(settings, certificate, key)
    return grpc.ssl_server_credentials(
        [(key, certificate)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def bind_problem(address: str) -> str | None:
    """Why the address cannot be listened on, or None if it can.

    gRPC says only that it failed, after logging its own line on stderr; a socket of our own,
    bound the way the server binds (SO_REUSEADDR, any one of the host's addresses being
    enough unless another is in use), finds the system's reason first. The server does not
    share its port (SO_REUSEPORT is off): two servers on one port would each get some of the
    clients, and the watchers of each would miss the other's writes."""
    host, _, port = address.rpartition(":")
    try:
        found = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        return f"cannot resolve {host!r} ({exc.strerror})"
    problem, bound = None, False
    for family, kind, protocol, _, where in found:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as exc:
                # In use on any of the host's addresses: gRPC would take the others and share
                # the name with the server already there.
                if exc.errno == errno.EADDRINUSE:
                    return f"{exc.strerror} (by another Runwire server?)"
                problem = problem or str(exc.strerror)
            else:
                bound = True
    return None if bound else problem


def _driver_message(error: DBAPIError) -> str:
    """The driver's own words, on one line (libpq's messages span several)."""
    lines = (" ".join(line.split()) for line in str(error.orig).splitlines())
    return "; ".join(line for line in lines if line)


def database_error(url: str, error: DBAPIError) -> ConfigurationError:
    """The one-line error for a database that cannot be opened: DatabaseUnreachable when nothing
    answered at its address (PostgreSQL), else ConfigurationError."""
    where = f"{database_url_for_display(url)} ({setting('database_url')})"
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and not _answers(parsed):
        return DatabaseUnreachable(
            f"cannot reach the database at {where}: {_driver_message(error)}"
        )
    return ConfigurationError(f"cannot open the database at {where}: {_driver_message(error)}")


def _answers(url: URL) -> bool:
    """Whether anything accepts connections at the database URL's host and port: a database
    server that answered and refused is a setting to fix, one that did not answer may be down.
    Without a host (a Unix socket, or libpq's PGHOST) there is no telling: say it answered."""
    if not url.host:
        return True
    try:
        with socket.create_connection((url.host, url.port or 5432), timeout=2):
            return True
    except OSError:
        return False
