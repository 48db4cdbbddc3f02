"""Bearer tokens and their roles: who may call which method.

A token is a random string the server never stores: the tokens file holds its SHA-256 (tokens
are 256 random bits, so a fast hash is safe; a slow password hash would only cost every call).
`read` tokens may call Get/List/Count/Watch methods; `write` tokens may call everything.
"""

from __future__ import annotations

import contextvars
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runwire_server.errors import PermissionDenied, Unauthenticated

ROLES = ("read", "write")
TOKEN_PREFIX = "rwt_"
# Methods whose name starts with one of these only read; every other verb writes, so a method
# added later is closed to read tokens until it is named as a reader.
READ_VERBS = ("Get", "List", "Count", "Watch")
# Probes and discovery stay open: load balancers and grpcurl carry no token.
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True)
class Identity:
    """Who is calling: the token's name (for logs and quotas) and its role."""

    name: str
    role: str


# The caller of the RPC being served; set by the interceptor, read by per-client quotas.
caller: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("caller", default=None)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_file_line(token: str, role: str, name: str) -> str:
    """One line of a tokens file: `sha256:<hex> <role> <name>`."""
    return f"sha256:{token_hash(token)} {role} {name}"


def is_read_method(method: str) -> bool:
    return method.rsplit("/", 1)[-1].startswith(READ_VERBS)


class Authenticator:
    """Checks one call's metadata against the configured tokens."""

    def __init__(
        self, identities: Mapping[str, Identity], tokens: str = "", tokens_file: str = ""
    ) -> None:
        self._by_hash = dict(identities)
        self._sources = (tokens, tokens_file)

    @classmethod
    def from_settings(cls, tokens: str, tokens_file: str) -> Authenticator:
        """`tokens`: `role:token` entries separated by commas (RUNWIRE_TOKENS, for secrets
        injected as environment variables); `tokens_file`: a file of hashed tokens."""
        return cls(_load(tokens, tokens_file), tokens, tokens_file)

    def reload(self) -> int:
        """Read the tokens again (on SIGHUP), so tokens are added and revoked without a
        restart. A file that does not parse, or that would leave no token at all (turning
        authentication off), changes nothing. Returns the number of tokens now known."""
        identities = _load(*self._sources)
        if self._by_hash and not identities:
            raise ValueError("the reloaded tokens are empty; keeping the current ones")
        self._by_hash = identities
        return len(identities)

    @property
    def enabled(self) -> bool:
        return bool(self._by_hash)

    def check(self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None) -> Identity:
        """The caller's identity, or Unauthenticated / PermissionDenied."""
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if header is None:
            raise Unauthenticated(
                "TOKEN_MISSING", "this server requires a token: 'authorization: Bearer <token>'"
            )
        scheme, _, token = str(header).partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(
                "TOKEN_MALFORMED", "the authorization metadata must be 'Bearer <token>'"
            )
        # Looked up by hash: lookup timing can only leak the hash of a guess, never the token.
        identity = self._by_hash.get(token_hash(token.strip()))
        if identity is None:
            raise Unauthenticated("TOKEN_INVALID", "the token is not valid on this server")
        if identity.role != "write" and not is_read_method(method):
            raise PermissionDenied(method.lstrip("/"), identity.role)
        return identity


def _load(tokens: str, tokens_file: str) -> dict[str, Identity]:
    identities: dict[str, Identity] = {}
    for number, entry in enumerate(filter(None, (e.strip() for e in tokens.split(","))), 1):
        role, sep, token = entry.partition(":")
        if not sep or not token:
            raise ValueError(f"RUNWIRE_TOKENS entry {number} is not 'role:token'")
        identities[token_hash(token)] = Identity(f"env-{number}", _role(role, "RUNWIRE_TOKENS"))
    if tokens_file:
        identities.update(parse_tokens_file(Path(tokens_file).read_text(), tokens_file))
    return identities


def parse_tokens_file(text: str, source: str) -> dict[str, Identity]:
    identities: dict[str, Identity] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[0].startswith("sha256:") or len(parts[0]) != 71:
            raise ValueError(f"{source}:{number}: expected 'sha256:<64 hex digits> <role> <name>'")
        identities[parts[0].removeprefix("sha256:").lower()] = Identity(
            parts[2], _role(parts[1], f"{source}:{number}")
        )
    return identities


def _role(role: str, where: str) -> str:
    if role not in ROLES:
        raise ValueError(f"{where}: role must be one of {', '.join(ROLES)}, not {role!r}")
    return role
