"""Where the server is and how to prove who we are: address, token, TLS and mutual TLS.

Every field falls back to an environment variable, so the library, the CLI and a program's
deployment configuration share one set of names:

| field       | variable               |
|-------------|------------------------|
| address     | RUNWIRE_API_URL        |
| token_file  | RUNWIRE_API_TOKEN_FILE |
| token       | RUNWIRE_API_TOKEN      |
| tls         | RUNWIRE_API_TLS        |
| ca_file     | RUNWIRE_API_CA_FILE    |
| cert_file   | RUNWIRE_API_CERT_FILE  |
| key_file    | RUNWIRE_API_KEY_FILE   |

The address is `host:port`, or a URL: `grpc://host:port` and `http://host:port` in plain text,
`grpcs://host:port` and `https://host:port` over TLS (port 443 when the URL names none).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"


def _is_token(token: str) -> bool:
    return bool(token) and token.isascii() and token.isprintable() and " " not in token


# The variable each setting falls back to.
VARIABLES = {
    "address": "RUNWIRE_API_URL",
    "token": "RUNWIRE_API_TOKEN",
    "token_file": "RUNWIRE_API_TOKEN_FILE",
    "tls": "RUNWIRE_API_TLS",
    "ca_file": "RUNWIRE_API_CA_FILE",
    "cert_file": "RUNWIRE_API_CERT_FILE",
    "key_file": "RUNWIRE_API_KEY_FILE",
}
# URL schemes an address may carry, and whether each means TLS.
SCHEMES = {"grpc": False, "http": False, "grpcs": True, "https": True}


def split_address(text: str) -> tuple[str, bool | None]:
    """`host:port` and whether the address asks for TLS (None: it does not say), from an
    address or a URL; what cannot name a server (no port, a path, another scheme) is refused
    with ValueError."""
    scheme, found, rest = text.strip().partition("://")
    tls: bool | None = None
    if found:
        if scheme.lower() not in SCHEMES:
            raise ValueError(
                f"address {text!r}: the scheme must be one of {', '.join(SCHEMES)}, or none"
            )
        rest, _, path = rest.partition("/")
        if path:
            raise ValueError(f"address {text!r}: give host:port, with no path")
        tls = SCHEMES[scheme.lower()]
        if rest and ":" not in rest.rpartition("]")[2]:
            rest += ":443" if tls else ":80"
    else:
        rest = scheme
    host, colon, port = rest.rpartition(":")
    if not colon or not host or host.startswith(":") or any(c.isspace() for c in host):
        raise ValueError(f"address {text!r}: give host:port, such as 127.0.0.1:50051")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {text!r}: the port must be a number from 1 to 65535")
    return rest, tls


@dataclass(frozen=True)
class ConnectionSettings:
    address: str = DEFAULT_ADDRESS
    token: str | None = None
    # TLS is on when asked for, or when any certificate file is given.
    tls: bool = False
    ca_file: str | None = None  # the CA that signed the server's certificate; default: system
    cert_file: str | None = None  # client certificate, for servers that require mutual TLS
    key_file: str | None = None
    root_certificates: bytes | None = None  # the CA's PEM itself, instead of ca_file

    @classmethod
    def resolve(cls, environ: Mapping[str, str] | None = None, **given: Any) -> ConnectionSettings:
        """Explicit values first, then RUNWIRE_API_* variables, then the defaults. A token
        and a token file are one setting: an explicit one of them hides both variables."""
        env = os.environ if environ is None else environ
        values = {k: v for k, v in given.items() if v is not None}
        variables = VARIABLES
        if "token" in values or "token_file" in values:
            variables = {k: v for k, v in VARIABLES.items() if k not in ("token", "token_file")}
        for name, variable in variables.items():
            if name not in values and env.get(variable):
                values[name] = env[variable]
        if isinstance(values.get("tls"), str):
            values["tls"] = values["tls"].lower() in ("1", "true", "yes")
        token_file = values.pop("token_file", None)
        if "token" not in values and token_file:
            try:
                values["token"] = Path(token_file).read_text().strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not text"
                raise ValueError(f"token file {token_file}: {reason}") from None
            if not values["token"]:
                raise ValueError(f"token file {token_file} is empty")
        if values.get("token") == "":
            del values["token"]
        if "token" in values and not _is_token(values["token"]):
            raise ValueError("a token is printable ASCII, with no spaces or line breaks")
        if "address" in values:
            values["address"], url_tls = split_address(values["address"])
            if url_tls is not None and "tls" not in values:
                values["tls"] = url_tls
        settings = cls(**values)
        if bool(settings.cert_file) != bool(settings.key_file):
            raise ValueError("a client certificate needs its key: give cert_file and key_file")
        return settings

    @property
    def uses_tls(self) -> bool:
        """Whether the channel is made with TLS."""
        return bool(self.tls or self.ca_file or self.cert_file or self.root_certificates)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What every call sends along: the bearer token, if there is one."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def credentials(self) -> grpc.ChannelCredentials:
        """The TLS credentials: the CA to trust and, for mutual TLS, the client's certificate."""

        def read(path: str | None) -> bytes | None:
            if not path:
                return None
            content = Path(path).read_bytes()
            if b"-----BEGIN " not in content:
                raise ValueError(f"{path} holds no PEM data (a certificate or a key)")
            return content

        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates or read(self.ca_file),
            private_key=read(self.key_file),
            certificate_chain=read(self.cert_file),
        )

    def channel(self, options: Sequence[tuple[str, Any]]) -> grpc.Channel:
        """A blocking channel to the server, for `Client`."""
        if self.uses_tls:
            return grpc.secure_channel(self.address, self.credentials(), options)
        return grpc.insecure_channel(self.address, options)

    def aio_channel(self, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
        """An asyncio channel to the server, for `AsyncClient`."""
        if self.uses_tls:
            return grpc.aio.secure_channel(self.address, self.credentials(), options)
        return grpc.aio.insecure_channel(self.address, options)
