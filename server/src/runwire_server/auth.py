"""Bearer tokens and their roles: who may call which method.

A token is a random string the server never stores: the tokens file holds its SHA-256 (tokens
are 256 random bits, so a fast hash is safe; a slow password hash would only cost every call).
`read` tokens may call Get/List/Count/Watch methods; `write` tokens may call everything. A token
may carry an expiry, checked at every call (see runwire_server.tokens_file for the file).
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from runwire_server import tokens_file as tokens_files
from runwire_server.errors import PermissionDenied, Unauthenticated
from runwire_server.tokens_file import ROLES as ROLES

TOKEN_PREFIX = "rwt_"
# Methods whose name starts with one of these only read; every other verb writes, so a method
# added later is closed to read tokens until it is named as a reader.
READ_VERBS = ("Get", "List", "Count", "Watch")
# Probes and discovery stay open: load balancers and grpcurl carry no token.
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# A file rewritten within one tick of the file system's clock (up to 2 s on some) can keep its
# size and mtime: while its mtime is this recent, its text is read to see whether it changed.
RECENT_NS = 3_000_000_000


@dataclass(frozen=True)
class Identity:
    """Who is calling: the token's name (for logs and quotas), its role and when it expires
    (seconds since the epoch, compared with time.time() at each call; None: never)."""

    name: str
    role: str
    expires_at: float | None = None


# The caller of the RPC being served; set by the interceptor, read by per-client quotas.
caller: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("caller", default=None)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_file_line(token: str, role: str, name: str, expires: datetime | None = None) -> str:
    """One line of a tokens file: `sha256:<hex> <role> <name> [expires=<UTC time>]`."""
    return tokens_files.format_line(token_hash(token), role, name, expires)


def is_read_method(method: str) -> bool:
    return method.rsplit("/", 1)[-1].startswith(READ_VERBS)


class Authenticator:
    """Checks one call's metadata against the configured tokens."""

    def __init__(self, tokens: str = "", tokens_file: str = "") -> None:
        """`tokens`: `role:token` entries separated by commas (RUNWIRE_TOKENS, for secrets
        injected as environment variables); `tokens_file`: a file of hashed tokens."""
        self._env = _env_identities(tokens)
        self._path = tokens_file
        self._by_hash = dict(self._env)
        # The file as last seen (its stat) and read (its text), to tell whether it changed.
        self._stamp: tuple[int, ...] | None = None
        self._settled = True
        self._text: str | None = None
        # Bumped whenever the tokens are read again: open streams check their token then.
        self.generation = 0
        self.enabled = False
        if tokens_file:
            self.reload()
        else:
            self.enabled = bool(self._by_hash)

    @classmethod
    def from_settings(cls, tokens: str, tokens_file: str) -> Authenticator:
        return cls(tokens, tokens_file)

    def reload(self) -> int:
        """Read the tokens file again (on SIGHUP), so tokens are added and revoked without a
        restart. A file that does not parse changes nothing (ValueError or OSError). Returns
        the number of tokens now known."""
        if self._path:
            self._stamp, self._settled = _stamp(self._path), True
            self._install(_read(self._path))
        return len(self._by_hash)

    def reload_if_changed(self) -> int | None:
        """Called every second or so: reload the tokens file, as reload() does, once it has
        changed and then stayed as it is from one call to the next; None when there is nothing
        new. Costs one stat() while the file stays as it was.

        Waiting for the file to settle keeps an editor that truncates the file and then writes
        it from being caught in between, with a half-written file or none at all.
        """
        if not self._path:
            return None
        stamp = _stamp(self._path)
        if stamp != self._stamp:
            self._stamp, self._settled = stamp, False
            return None
        if self._settled and not _recent(stamp):
            return None
        self._settled = True
        text = _read(self._path)
        if text == self._text:
            return None
        self._install(text)
        return len(self._by_hash)

    def _install(self, text: str) -> None:
        # Remembered before parsing: a broken file is reported once, not at every check.
        self._text = text
        identities = {
            **self._env,
            **{
                entry.token_hash: Identity(
                    entry.name,
                    entry.role,
                    None if entry.expires is None else entry.expires.timestamp(),
                )
                for entry in tokens_files.parse(text, self._path)
            },
        }
        self._by_hash = identities
        # Authentication, once on, stays on: a file emptied by revoking its last token shuts
        # every caller out rather than letting every caller in.
        self.enabled = self.enabled or bool(identities)
        self.generation += 1

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
        if identity.expires_at is not None and time.time() >= identity.expires_at:
            raise expired(identity)
        if identity.role != "write" and not is_read_method(method):
            raise PermissionDenied(method.lstrip("/"), identity.role)
        return identity

    def recheck(self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None) -> Identity:
        """check() again for a stream opened earlier, after the tokens were read again: a token
        no longer known was revoked while the stream was open."""
        try:
            return self.check(method, metadata)
        except Unauthenticated as exc:
            if exc.reason != "TOKEN_INVALID":
                raise
            raise Unauthenticated(
                "TOKEN_REVOKED", "the token was revoked while this stream was open"
            ) from None


class StreamCheck:
    """Checks an open stream's token again before each message it sends: the stream ends once
    the token has expired, or once a reload no longer lists it. Between reloads this costs a
    comparison, and a clock read for a token that expires."""

    def __init__(
        self,
        authenticator: Authenticator,
        identity: Identity,
        method: str,
        metadata: Iterable[tuple[str, str | bytes]] | None,
    ) -> None:
        self._auth = authenticator
        self._identity = identity
        self._generation = authenticator.generation
        self._method = method
        self._metadata = metadata

    def __call__(self) -> None:
        if self._auth.generation != self._generation:
            self._generation = self._auth.generation
            self._identity = self._auth.recheck(self._method, self._metadata)
        expires_at = self._identity.expires_at
        if expires_at is not None and time.time() >= expires_at:
            raise expired(self._identity)


def expired(identity: Identity) -> Unauthenticated:
    assert identity.expires_at is not None
    when = tokens_files.format_time(datetime.fromtimestamp(identity.expires_at, UTC))
    return Unauthenticated(
        "TOKEN_EXPIRED",
        f"the token {identity.name!r} expired at {when}",
        metadata={"expiredAt": when},
    )


def _env_identities(tokens: str) -> dict[str, Identity]:
    identities: dict[str, Identity] = {}
    for number, entry in enumerate(filter(None, (e.strip() for e in tokens.split(","))), 1):
        role, sep, token = entry.partition(":")
        if not sep or not token:
            raise ValueError(f"RUNWIRE_TOKENS entry {number} is not 'role:token'")
        identities[token_hash(token)] = Identity(
            f"env-{number}", tokens_files.check_role(role, "RUNWIRE_TOKENS")
        )
    return identities


def _stamp(path: str) -> tuple[int, ...] | None:
    """What changes when the file is edited or replaced; None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _recent(stamp: tuple[int, ...] | None) -> bool:
    return stamp is not None and time.time_ns() - stamp[-1] < RECENT_NS


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.read()
