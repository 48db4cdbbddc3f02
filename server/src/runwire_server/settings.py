"""Server settings: defaults, then RUNWIRE_* environment variables, then explicit overrides."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TRACING = ("off", "otlp")
# The settings `runwire server start` also takes as flags: messages name both spellings.
FLAGS = frozenset(
    (
        "listen_address",
        "http_address",
        "database_url",
        "log_level",
        "log_format",
        "tokens_file",
        "tls_cert_file",
        "tls_key_file",
        "tls_client_ca_file",
        "allow_unauthenticated_remote",
        "metrics_address",
    )
)
_DATABASE_URLS = "sqlite:///path/to/runwire.db or postgresql+psycopg://user@host:5432/runwire"
# At least 1 (counts and sizes), or at least 0 (waits).
_AT_LEAST_ONE = (
    "max_page_size",
    "max_cache_key_length",
    "max_logs_per_request",
    "max_log_message_bytes",
    "watch_buffer_events",  # 0 would mean an unbounded buffer
    "max_concurrent_calls",
    "database_pool_size",
    "max_message_bytes",
    "max_filter_values",
    "max_watch_streams_per_client",
    "max_open_streams_per_peer",
    "max_http_connections",
    "max_object_bytes",
)
_AT_LEAST_ZERO = (
    "max_inline_result_bytes",
    "shutdown_grace_seconds",
    "deployment_slot_wait_seconds",
    "tag_slot_wait_seconds",
    "decode_workers",  # 0: large requests are checked on the event loop
    "tokens_file_check_seconds",
    "event_retention_seconds",  # 0: keep for ever
    "kept_run_messages",
    "run_retention_seconds",
    "lease_seconds",  # 0: no lease unless the reporter asks for one
)


class ConfigurationError(ValueError):
    """A setting the server cannot start with; the message names it and what it accepts."""

    exit_code = 2  # the command line's "bad usage or settings"


def setting(name: str) -> str:
    """How a person sets the field `name`: `--flag/RUNWIRE_NAME`, or `RUNWIRE_NAME` alone."""
    variable = f"RUNWIRE_{name.upper()}"
    return f"--{name.replace('_', '-')}/{variable}" if name in FLAGS else variable


def database_url_for_display(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<a URL that does not parse>"


MAX_RETENTION_SECONDS = 100 * 365 * 86_400

# Room in a response for the server's own fields of an object and for what is not a listed item
# (the page token, a cursor, each item's field tag and length).
RESPONSE_RESERVE = 16 * 1024


def default_database_url() -> str:
    path = Path(platformdirs.user_data_dir("runwire")) / "runwire.db"
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class Settings:
    """Every knob of the server. Each field `x` is read from the variable `RUNWIRE_X`."""

    listen_address: str = "127.0.0.1:50051"
    # The HTTP edge (Connect and gRPC-Web, for browsers, curl and HTTP-only callers); "off" or
    # empty: none.
    http_address: str = "127.0.0.1:50080"
    # Origins whose pages may call the HTTP edge (CORS), comma-separated; "*": any; empty: none.
    cors_allowed_origins: str = ""
    database_url: str = dataclasses.field(default_factory=default_database_url)
    log_level: str = "INFO"
    log_format: str = "console"  # or "json"
    default_page_size: int = 200
    max_page_size: int = 200
    max_inline_result_bytes: int = 1024 * 1024
    shutdown_grace_seconds: float = 10.0
    page_token_secret: str = ""  # empty: a secret stored in the database is used
    deployment_slot_wait_seconds: int = 30
    tag_slot_wait_seconds: int = 30
    max_cache_key_length: int = 2000
    max_logs_per_request: int = 1000
    max_log_message_bytes: int = 64 * 1024
    watch_heartbeat_seconds: float = 10.0
    watch_min_heartbeat_seconds: float = 0.1
    watch_max_heartbeat_seconds: float = 300.0
    watch_buffer_events: int = 1000
    max_concurrent_calls: int = 50_000  # open watch streams included
    migrate_on_start: bool = True
    database_pool_size: int = 8  # connections per server (PostgreSQL)
    # Finished runs whose messages are kept between reads, of each kind (convert.message_cache):
    # some 5 KB a run, and never more than 8 MiB of messages a kind. 0: every read builds its
    # messages.
    kept_run_messages: int = 2048
    # Security (README "Security"): bearer tokens, TLS and mutual TLS.
    tokens: str = ""  # "role:token,role:token" (for tokens injected as a secret variable)
    tokens_file: str = ""  # lines "sha256:<hex> <role> <name>", see `runwire token create`
    tokens_file_check_seconds: float = 1.0  # how often edits are looked for; 0: on SIGHUP only
    allow_unauthenticated_remote: bool = False  # serve a non-loopback address with no auth
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""  # set: clients must present a certificate this CA signed
    # Limits on what one request or client may ask for.
    max_message_bytes: int = 4 * 1024 * 1024
    max_filter_values: int = 1000  # entries in any one list of a filter
    max_watch_streams_per_client: int = 10_000  # per token, or per peer address without tokens
    max_open_streams_per_peer: int = 100  # health and reflection streams, which need no token
    # HTTP connections open at once (each a file descriptor; at most half the process may open).
    max_http_connections: int = 10_000
    # One flow, deployment, run or state (without its inline result), as the client sends it:
    # so that any object, with its state and result, fits in one response.
    max_object_bytes: int = 1024 * 1024
    # Processes that check large requests before the server decodes them (api.request_decoder).
    decode_workers: int = 1
    metrics_address: str = ""  # host:port for Prometheus /metrics; empty: off
    # "otlp": a span per call, exported as OpenTelemetry's OTEL_* variables say (the otel extra).
    tracing: str = "off"
    # Retention (0: keep for ever). Watch events of runs finished longer ago are pruned (a
    # cursor older than what is kept gets OUT_OF_RANGE); finished runs themselves, optionally.
    event_retention_seconds: float = 3 * 86_400
    run_retention_seconds: float = 0
    retention_interval_seconds: float = 60
    # Leases (services.leases): a run entering RUNNING holds one this long unless its reporter
    # names a length (0: none unless named); a reporter may name at most the maximum; the reaper
    # looks for ended leases this often.
    lease_seconds: float = 300
    max_lease_seconds: float = 86_400
    lease_check_seconds: float = 5

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = env.get(f"RUNWIRE_{field.name.upper()}")
            if raw is not None and raw != "":
                values[field.name] = _coerce(field.name, field.type, raw)
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
        if values.get("http_address") == "off":  # an empty variable means "the default"
            values["http_address"] = ""
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse values the server cannot start with, naming the setting and what it takes.

        Only the values are checked here; whether the database opens or the addresses can be
        bound is found out when the server starts (runwire_server.server)."""
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigurationError(f"{setting(field.name)} must be a number, not {value}")
        for name in ("event_retention_seconds", "run_retention_seconds"):
            if getattr(self, name) > MAX_RETENTION_SECONDS:
                raise ConfigurationError(
                    f"{setting(name)} must be at most {MAX_RETENTION_SECONDS:.0f} (100 years); "
                    "0 keeps for ever"
                )
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigurationError(
                f"{setting('log_level')} must be one of {', '.join(LOG_LEVELS)}, "
                f"not {self.log_level!r}"
            )
        if self.log_format not in ("console", "json"):
            raise ConfigurationError(
                f"{setting('log_format')} must be console or json, not {self.log_format!r}"
            )
        if self.tracing not in TRACING:
            raise ConfigurationError(
                f"{setting('tracing')} must be one of {', '.join(TRACING)}, not {self.tracing!r}"
            )
        if not self.listen_address.startswith(("unix:", "unix-abstract:")):
            _check_address("listen_address", self.listen_address)
        if self.metrics_address:
            _check_address("metrics_address", self.metrics_address)
        if self.http_address:
            _check_address("http_address", self.http_address)
        for origin in self.allowed_origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ConfigurationError(
                    f"{setting('cors_allowed_origins')} takes origins such as "
                    f"https://dashboard.example.com (scheme and host, no path) or *, not {origin!r}"
                )
        _check_database_url(self.database_url)
        for name in _AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ConfigurationError(
                    f"{setting(name)} must be at least 1, not {getattr(self, name)!r}"
                )
        for name in _AT_LEAST_ZERO:
            if getattr(self, name) < 0:
                raise ConfigurationError(
                    f"{setting(name)} must be at least 0, not {getattr(self, name)!r}"
                )
        if not 1 <= self.default_page_size <= self.max_page_size:
            raise ConfigurationError(
                f"{setting('default_page_size')} must be between 1 and "
                f"{setting('max_page_size')} ({self.max_page_size}), not {self.default_page_size}"
            )
        low, high = self.watch_min_heartbeat_seconds, self.watch_max_heartbeat_seconds
        if not 0 < low <= self.watch_heartbeat_seconds <= high:
            raise ConfigurationError(
                f"{setting('watch_heartbeat_seconds')} ({self.watch_heartbeat_seconds}) must lie "
                f"between {setting('watch_min_heartbeat_seconds')} ({low}, above 0) and "
                f"{setting('watch_max_heartbeat_seconds')} ({high})"
            )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigurationError(
                f"{setting('tls_cert_file')} and {setting('tls_key_file')} go together: "
                "set both or neither"
            )
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ConfigurationError(
                f"{setting('tls_client_ca_file')} (mutual TLS) needs {setting('tls_cert_file')} "
                f"and {setting('tls_key_file')}"
            )
        if self.retention_interval_seconds <= 0:
            raise ConfigurationError(
                f"{setting('retention_interval_seconds')} must be more than 0, "
                f"not {self.retention_interval_seconds!r}"
            )
        if self.lease_check_seconds <= 0:
            raise ConfigurationError(
                f"{setting('lease_check_seconds')} must be more than 0, "
                f"not {self.lease_check_seconds!r}"
            )
        if self.max_lease_seconds < 1:
            raise ConfigurationError(
                f"{setting('max_lease_seconds')} must be at least 1, not {self.max_lease_seconds!r}"
            )
        if self.lease_seconds and not 1 <= self.lease_seconds <= self.max_lease_seconds:
            raise ConfigurationError(
                f"{setting('lease_seconds')} must be 0 (no lease unless a reporter asks) or "
                f"between 1 and {setting('max_lease_seconds')} ({self.max_lease_seconds:g}), "
                f"not {self.lease_seconds!r}"
            )
        # A run and its current state with an inline result must fit in one response.
        largest = 2 * self.max_object_bytes + self.max_inline_result_bytes + RESPONSE_RESERVE
        if largest > self.max_message_bytes:
            raise ConfigurationError(
                f"{setting('max_message_bytes')} must be at least 2 x "
                f"{setting('max_object_bytes')} + {setting('max_inline_result_bytes')} + "
                f"{RESPONSE_RESERVE} ({largest}), so that every object fits in a response"
            )

    @property
    def response_budget(self) -> int:
        """The bytes a list may fill with items: what the server sends at most, less room for
        the rest of the response."""
        return self.max_message_bytes - RESPONSE_RESERVE

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.cors_allowed_origins.split(",") if o.strip())

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_file)

    @property
    def mutual_tls(self) -> bool:
        return bool(self.tls_client_ca_file)


def _check_address(name: str, address: str) -> None:
    host, colon, port = address.rpartition(":")
    bare_ipv6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
    if not colon or not port.isdigit() or int(port) > 65535 or bare_ipv6:
        raise ConfigurationError(
            f"{setting(name)} must be host:port (an IPv6 host in brackets) with a port from 0 "
            f"to 65535, 0 for any free port; not {address!r}"
        )


def _check_database_url(url: str) -> None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"{setting('database_url')} must be a database URL such as {_DATABASE_URLS}, "
            f"not {url!r}"
        ) from None
    backend = parsed.get_backend_name()
    # The server speaks SQLite through the standard library and PostgreSQL through psycopg
    # (whose LISTEN/NOTIFY the replicas use); naming the driver loads no driver.
    fits = (backend == "sqlite" and parsed.get_driver_name() == "pysqlite") or (
        backend == "postgresql" and parsed.get_driver_name() == "psycopg"
    )
    if not fits:
        raise ConfigurationError(
            f"{setting('database_url')} must be a SQLite or PostgreSQL URL ({_DATABASE_URLS}), "
            f"not {database_url_for_display(url)!r}"
        )


_KINDS = {"bool": "true or false", "int": "a whole number", "float": "a number"}


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    kind = getattr(type_name, "__name__", type_name)
    try:
        if kind == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigurationError(f"{setting(name)} must be {_KINDS[kind]}, not {raw!r}") from None
    return raw
