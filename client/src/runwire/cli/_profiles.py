"""Profiles: named connection settings in a config file, like Prefect's profiles and
Temporal's environments, so that `runwire config use prod` points every command at a server.

The file is TOML, at RUNWIRE_CONFIG or else `config.toml` in the user's config directory
(~/.config/runwire on Linux):

    active = "prod"

    [profiles.prod]
    address = "grpcs://runwire.example.com"
    token_file = "~/.config/runwire/prod.token"
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from platformdirs import user_config_dir

# What a profile may set, and what each means (the connection options of the same names).
KEYS = {
    "address": "the server: host:port, or a grpc://, grpcs://, http:// or https:// URL",
    "token_file": "file holding the bearer token",
    "tls": "true: connect over TLS",
    "ca_file": "CA of the server's certificate",
    "cert_file": "client certificate, for mutual TLS",
    "key_file": "the client certificate's key",
}
PATH_KEYS = {"token_file", "ca_file", "cert_file", "key_file"}
DEFAULT = "default"


class ProfileError(Exception):
    """The config file cannot be read, or names no such profile."""


def path() -> Path:
    """Where the config file is."""
    given = os.environ.get("RUNWIRE_CONFIG")
    return Path(given) if given else Path(user_config_dir("runwire")) / "config.toml"


def load() -> dict[str, Any]:
    """The config file's content; an empty config when there is no file."""
    where = path()
    try:
        with where.open("rb") as file:
            config = tomllib.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"cannot read {where}: {exc}") from None
    problem = _problem(config)
    if problem:
        raise ProfileError(f"{where}: {problem}")
    return config


def _problem(config: dict[str, Any]) -> str | None:
    """What is wrong with a config file's content, if anything."""
    if not isinstance(config.get("active", DEFAULT), str):
        return "active must be a profile's name"
    found = config.get("profiles", {})
    if not isinstance(found, dict):
        return "profiles must be a table of profiles ([profiles.NAME])"
    for name, settings in found.items():
        if not isinstance(settings, dict):
            return f"profiles.{name} must be a table of settings"
        for key, value in settings.items():
            wanted = bool if key == "tls" else str
            if key in KEYS and not isinstance(value, wanted):
                kind = "true or false" if wanted is bool else "a string"
                return f"profiles.{name}.{key} must be {kind}, not {value!r}"
    return None


def save(config: dict[str, Any]) -> None:
    """Write the config file (readable by its owner only: it may name token files)."""
    where = path()
    where.parent.mkdir(parents=True, exist_ok=True)
    temporary = where.with_suffix(".tmp")
    temporary.write_text(tomli_w.dumps(config))
    temporary.chmod(0o600)
    temporary.replace(where)


def active(config: dict[str, Any]) -> str:
    """The name of the profile in use."""
    return str(config.get("active", DEFAULT))


def profiles(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every profile by name."""
    found: dict[str, dict[str, Any]] = config.get("profiles", {})
    return found


def chosen(name: str | None) -> dict[str, Any]:
    """The settings of profile `name` (None: the one in use), paths expanded. An unknown name
    is an error unless it is the default profile, which needs no entry."""
    config = load()
    wanted = name or active(config)
    settings = profiles(config).get(wanted)
    if settings is None:
        if wanted != DEFAULT:
            raise ProfileError(f"no profile {wanted!r} in {path()}; see `runwire config ls`")
        settings = {}
    return {
        key: os.path.expanduser(value) if key in PATH_KEYS else value
        for key, value in settings.items()
        if key in KEYS
    }


def parse(key: str, value: str) -> Any:
    """A profile value from the command line."""
    if key not in KEYS:
        raise ProfileError(f"{key!r} is not a profile setting; use one of {', '.join(KEYS)}")
    if key == "tls":
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ProfileError(f"tls is true or false, not {value!r}")
        return value.lower() in ("true", "1", "yes")
    if key == "address":
        from runwire.connection import split_address

        try:
            split_address(value)
        except ValueError as exc:
            raise ProfileError(str(exc)) from None
    return value
