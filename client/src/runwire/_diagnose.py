"""Why a channel cannot connect, when the reason is TLS settings that do not fit the server's.

gRPC reports a plain-text client at a TLS port, a TLS client at a plain-text port, an untrusted
server certificate and a missing client certificate all alike: the channel fails to connect,
and a call that waits for a connection (wait_for_ready, which makes calls ride out a server
restart) waits its whole deadline for one that cannot come. Python's own `ssl` and `socket`,
pointed at the same address with the same certificates, tell these cases apart in a few
milliseconds. They run only when connecting has failed, never on the path of a call over a
working connection.
"""

from __future__ import annotations

import os
import queue
import socket
import ssl
import threading
import time

import grpc

from runwire.connection import ConnectionSettings
from runwire.errors import TlsMismatch

PROBE_SECONDS = 1.0
# What an HTTP/2 client sends first: the connection preface and an empty SETTINGS frame. A
# gRPC server answers with its own SETTINGS frame (frame type 4 in the 9-byte frame header).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS = 4
# OpenSSL's verification errors for a certificate that does not name the host connected to.
NAME_MISMATCH = frozenset((62, 64))  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
# Words in the names of the alerts a server sends about the client's certificate (OpenSSL's
# reasons such as TLSV13_ALERT_CERTIFICATE_REQUIRED or SSLV3_ALERT_HANDSHAKE_FAILURE).
_CLIENT_CERTIFICATE_ALERTS = (
    "CERTIFICATE",
    "UNKNOWN_CA",
    "HANDSHAKE_FAILURE",
    "ACCESS_DENIED",
    "DECRYPT_ERROR",
)


class FirstConnection:
    """Follows a channel until it first connects, diagnosing its failures to connect.

    It subscribes to the channel's connectivity once, and unsubscribes at the first
    connection: gRPC polls connectivity on a thread that outlives an unsubscribe by up to
    0.2 s, and a new subscription that asks to connect while it runs makes that thread fail
    if the channel is closed meanwhile (grpc/grpc#18995).
    """

    def __init__(self, channel: grpc.Channel, connection: ConnectionSettings) -> None:
        self._channel = channel
        self._connection = connection
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._state: grpc.ChannelConnectivity | None = None
        self._subscribed = False
        self.connected = False

    def _report(self, state: grpc.ChannelConnectivity) -> None:
        with self._changed:
            self._state = state
            self._changed.notify_all()

    def _settle(self) -> None:
        with self._lock:
            if self._subscribed:
                self._channel.unsubscribe(self._report)
                self._subscribed = False
            self.connected = True

    def wait(self, deadline: float, *, until_ready: bool) -> bool:
        """Wait until the channel connects or `deadline` (a time.monotonic() value) passes;
        True once connected.

        When connecting fails, the failure is diagnosed (once a wait): TlsMismatch is raised at
        once if TLS settings are the cause. Otherwise the server is down or restarting, which a
        call waits for by itself: return False then, unless `until_ready`.
        """
        with self._lock:
            if not self._subscribed and not self.connected:
                self._subscribed = True
                self._channel.subscribe(self._report, try_to_connect=True)
        diagnosed = False
        ready, failed = grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE

        def settled() -> bool:
            return self._state in (ready, grpc.ChannelConnectivity.SHUTDOWN) or (
                self._state is failed and not diagnosed
            )

        while not self.connected:
            with self._changed:
                arrived = self._changed.wait_for(settled, max(deadline - time.monotonic(), 0))
                state = self._state
            if not arrived or state is grpc.ChannelConnectivity.SHUTDOWN:
                return False
            if state is ready:
                self._settle()
                break
            diagnosed = True
            remaining = max(deadline - time.monotonic(), 0.05)
            mismatch = diagnose(self._connection, min(PROBE_SECONDS, remaining))
            if mismatch is not None:
                raise mismatch
            if not until_ready:
                return False
        return True


def is_connected(channel: grpc.Channel) -> bool:
    """Whether the channel has a connection now (without trying to make one)."""
    states: queue.SimpleQueue[grpc.ChannelConnectivity] = queue.SimpleQueue()
    report = states.put
    channel.subscribe(report)  # the first report is the present state
    try:
        return states.get(timeout=PROBE_SECONDS) is grpc.ChannelConnectivity.READY
    except queue.Empty:
        return False
    finally:
        channel.unsubscribe(report)


def diagnose(connection: ConnectionSettings, timeout: float = PROBE_SECONDS) -> TlsMismatch | None:
    """The TLS mismatch that keeps this client from connecting, if that is what does."""
    target = host_and_port(connection.address)
    if target is None:
        return None
    deadline = time.monotonic() + timeout
    try:
        if connection.uses_tls:
            return _as_tls_client(connection, *target, deadline)
        return _as_plaintext_client(connection.address, *target, deadline)
    except (OSError, ValueError):
        # Refused, unreachable, timed out, reset, or TLS files Python cannot read or decode
        # either: not a mismatch this can name, so the caller's own error stands.
        return None


def host_and_port(target: str) -> tuple[str, int] | None:
    """The host and port of a gRPC target such as `host:port`, `[::1]:50051` or
    `dns:///host:port`; None for targets a single socket cannot stand for (unix:, lists)."""
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
            break
    if not target or "/" in target or "," in target or target.startswith("unix"):
        return None
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest.removeprefix(":")
    elif target.count(":") == 1:
        host, port = target.split(":")
    else:  # a bare name or IPv6 address: gRPC's default port
        host, port = target, ""
    try:
        return host, int(port or 443)
    except ValueError:
        return None


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("no time left to diagnose the connection")
    return left


def _open(host: str, port: int, deadline: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=_remaining(deadline))
    sock.settimeout(_remaining(deadline))
    return sock


def _first_frame(sock: socket.socket, deadline: float) -> bytes:
    """Send the HTTP/2 preface; the 9-byte header of the answer (shorter if the peer hangs up)."""
    sock.settimeout(_remaining(deadline))
    sock.sendall(_HTTP2_PREFACE)
    received = b""
    while len(received) < 9:
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(9 - len(received))
        if not chunk:
            break
        received += chunk
    return received


def _answers_http2(sock: socket.socket, deadline: float) -> bool:
    """Whether the peer answers the HTTP/2 preface; False if it hangs up or sends an alert."""
    try:
        header = _first_frame(sock, deadline)
    except (ssl.SSLError, ConnectionError):
        return False
    return len(header) == 9 and header[3] == _SETTINGS


def _is_alert(error: ssl.SSLError) -> bool:
    """Whether the peer refused the handshake with a TLS alert (so it speaks TLS)."""
    return "ALERT" in (error.reason or "")


def _about_client_certificate(alert: ssl.SSLError) -> bool:
    return any(word in (alert.reason or "") for word in _CLIENT_CERTIFICATE_ALERTS)


def _as_plaintext_client(address: str, host: str, port: int, deadline: float) -> TlsMismatch | None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Only whether the server speaks TLS at all is in question here, not whom to trust.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with _open(host, port, deadline) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                wants_certificate = not _answers_http2(tls, deadline)
        except ssl.SSLError as error:
            if not _is_alert(error):
                return None  # not TLS either: something else keeps the client out
            # TLS 1.2 refuses a missing certificate in the handshake.
            wants_certificate = _about_client_certificate(error)
    cause = f"the server at {address} speaks TLS and this client connects in plain text"
    remedy = "connect with TLS: ca_file=<the CA of its certificate>, or tls=True for the system's"
    details = {}
    if wants_certificate:
        cause += " (and requires a client certificate)"
        remedy += ", and cert_file=<path>, key_file=<path>"
        details["client_certificate"] = "required"
    return TlsMismatch(
        cause, remedy, reason=TlsMismatch.SERVER_REQUIRES_TLS, address=address, **details
    )


def _context(connection: ConnectionSettings) -> ssl.SSLContext:
    """A client context trusting and presenting what the gRPC channel does."""
    if connection.root_certificates:
        context = ssl.create_default_context(cadata=connection.root_certificates.decode())
    elif connection.ca_file:
        context = ssl.create_default_context(cafile=connection.ca_file)
    else:
        # gRPC's variable for its default roots; else the system's, as `tls=True` means.
        context = ssl.create_default_context(
            cafile=os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH") or None
        )
    if connection.cert_file:
        # A password callback, so that an encrypted key fails here instead of prompting.
        context.load_cert_chain(connection.cert_file, connection.key_file, password=lambda: b"")
    context.set_alpn_protocols(["h2"])
    return context


def _as_tls_client(
    connection: ConnectionSettings, host: str, port: int, deadline: float
) -> TlsMismatch | None:
    address = connection.address
    context = _context(connection)
    with _open(host, port, deadline) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                if _answers_http2(tls, deadline):
                    return None  # TLS works: something else keeps the channel out
                # Hung up after the handshake: with TLS 1.3 that is when a server checks the
                # client's certificate.
        except ssl.SSLCertVerificationError as error:
            return _untrusted(address, error)
        except ssl.SSLError as error:
            if not _is_alert(error):
                return _plaintext_server(connection, host, port, deadline)
            # TLS 1.2 checks the client's certificate in the handshake, and says so in an alert.
            if not _about_client_certificate(error):
                return None
    if connection.cert_file:
        return TlsMismatch(
            f"the server at {address} did not accept this client's certificate "
            f"({connection.cert_file})",
            "give one signed by a CA the server trusts (its --tls-client-ca-file)",
            reason=TlsMismatch.CLIENT_CERTIFICATE_REJECTED,
            address=address,
        )
    return TlsMismatch(
        f"the server at {address} requires a client certificate (mutual TLS)",
        "give one with cert_file=<path> and key_file=<path>",
        reason=TlsMismatch.CLIENT_CERTIFICATE_REQUIRED,
        address=address,
    )


def _untrusted(address: str, error: ssl.SSLCertVerificationError) -> TlsMismatch:
    return TlsMismatch(
        f"this client does not trust the certificate of the server at {address} "
        f"({error.verify_message})",
        "connect by a name or address the certificate holds"
        if error.verify_code in NAME_MISMATCH
        else "give the CA that signed it as ca_file=<path>",
        reason=TlsMismatch.SERVER_CERTIFICATE_UNTRUSTED,
        address=address,
        verify_error=error.verify_message,
        verify_code=str(error.verify_code),
    )


def _plaintext_server(
    connection: ConnectionSettings, host: str, port: int, deadline: float
) -> TlsMismatch | None:
    """The TLS handshake got an answer that is not TLS: is it a plain-text HTTP/2 server?"""
    with _open(host, port, deadline) as sock:
        if not _answers_http2(sock, deadline):
            return None
    return TlsMismatch(
        f"the server at {connection.address} speaks plain text and this client connects with TLS",
        "connect without TLS: no tls, ca_file, cert_file or key_file, nor the RUNWIRE_API_TLS "
        "and RUNWIRE_API_*_FILE variables",
        reason=TlsMismatch.SERVER_IS_PLAINTEXT,
        address=connection.address,
    )
