"""Server settings: defaults, then RUNWIRE_* environment variables, then explicit overrides."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import platformdirs

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
    # One flow, deployment, run or state (without its inline result), as the client sends it:
    # so that any object, with its state and result, fits in one response.
    max_object_bytes: int = 1024 * 1024
    metrics_address: str = ""  # host:port for Prometheus /metrics; empty: off
    # Retention (0: keep for ever). Watch events of runs finished longer ago are pruned (a
    # cursor older than what is kept gets OUT_OF_RANGE); finished runs themselves, optionally.
    event_retention_seconds: float = 3 * 86_400
    run_retention_seconds: float = 0
    retention_interval_seconds: float = 60

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
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.log_format not in ("console", "json"):
            raise ValueError(f"log_format must be 'console' or 'json', not {self.log_format!r}")
        if not 1 <= self.default_page_size <= self.max_page_size:
            raise ValueError("default_page_size must be between 1 and max_page_size")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")
        for name in ("event_retention_seconds", "run_retention_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (keep for ever) or more")
        if self.retention_interval_seconds <= 0:
            raise ValueError("retention_interval_seconds must be more than 0")
        if self.tokens_file_check_seconds < 0:
            raise ValueError("tokens_file_check_seconds must be 0 (off) or more")
        for name in (
            "max_message_bytes",
            "max_filter_values",
            "max_watch_streams_per_client",
            "max_open_streams_per_peer",
            "max_object_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        # A run and its current state with an inline result must fit in one response.
        largest = 2 * self.max_object_bytes + self.max_inline_result_bytes + RESPONSE_RESERVE
        if largest > self.max_message_bytes:
            raise ValueError(
                "max_message_bytes must be at least 2 x max_object_bytes + "
                f"max_inline_result_bytes + {RESPONSE_RESERVE} ({largest}), so that every "
                "object fits in a response"
            )

    @property
    def response_budget(self) -> int:
        """The bytes a list may fill with items: what the server sends at most, less room for
        the rest of the response."""
        return self.max_message_bytes - RESPONSE_RESERVE

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_file)

    @property
    def mutual_tls(self) -> bool:
        return bool(self.tls_client_ca_file)


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    try:
        if type_name in (bool, "bool"):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if type_name in (int, "int"):
            return int(raw)
        if type_name in (float, "float"):
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"RUNWIRE_{name.upper()} must be a {type_name}, not {raw!r}") from exc
    return raw
