"""Where the server is and how to prove who we are: address, token, TLS and mutual TLS.

Every field falls back to an environment variable, so the library, the CLI and a program's
deployment configuration share one set of names:

| field       | variable               |
|-------------|------------------------|
| address     | RUNWIRE_API_URL        |
| token       | RUNWIRE_API_TOKEN      |
| tls         | RUNWIRE_API_TLS        |
| ca_file     | RUNWIRE_API_CA_FILE    |
| cert_file   | RUNWIRE_API_CERT_FILE  |
| key_file    | RUNWIRE_API_KEY_FILE   |
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"


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
        """Explicit values first, then RUNWIRE_API_* variables, then the defaults."""
        env = os.environ if environ is None else environ
        values = {k: v for k, v in given.items() if v is not None}
        for name, variable in (
            ("address", "RUNWIRE_API_URL"),
            ("token", "RUNWIRE_API_TOKEN"),
            ("ca_file", "RUNWIRE_API_CA_FILE"),
            ("cert_file", "RUNWIRE_API_CERT_FILE"),
            ("key_file", "RUNWIRE_API_KEY_FILE"),
        ):
            if name not in values and env.get(variable):
                values[name] = env[variable]
        if "tls" not in values and env.get("RUNWIRE_API_TLS"):
            values["tls"] = env["RUNWIRE_API_TLS"].lower() in ("1", "true", "yes")
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
            return Path(path).read_bytes() if path else None

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
