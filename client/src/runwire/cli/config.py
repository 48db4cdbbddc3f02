"""`runwire config`: profiles of connection settings (see runwire.cli._profiles)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from runwire.cli import _connect, _profiles
from runwire.cli._app import config_app
from runwire.cli_output import Column, Output, OutputOption, complain, emit, plain, stdout

ProfileName = Annotated[
    str | None,
    typer.Option(
        "--profile", metavar="NAME", help="the profile to change  [default: the one in use]"
    ),
]


def _config() -> dict[str, Any]:
    try:
        return _profiles.load()
    except _profiles.ProfileError as exc:
        complain("invalid config", exc)
        raise typer.Exit(2) from None


def _target(config: dict[str, Any], profile: str | None) -> str:
    return profile or _connect.given().get("profile") or _profiles.active(config)


@config_app.command("set")
def config_set(
    key: Annotated[str, typer.Argument(metavar="KEY", help=f"one of: {', '.join(_profiles.KEYS)}")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="its value")],
    profile: ProfileName = None,
) -> None:
    """Set one connection setting of a profile (made if it does not exist).

    \b
    Examples:
      runwire config set address grpcs://runwire.example.com --profile prod
      runwire config set token_file ~/.config/runwire/prod.token --profile prod
      runwire config use prod
    """
    config = _config()
    name = _target(config, profile)
    try:
        parsed = _profiles.parse(key, value)
    except _profiles.ProfileError as exc:
        raise typer.BadParameter(str(exc), param_hint="KEY") from None
    config.setdefault("profiles", {}).setdefault(name, {})[key] = parsed
    _profiles.save(config)
    stdout().print(plain(f"Set {key} of profile {name!r} in {_profiles.path()}"))


@config_app.command("unset")
def config_unset(
    key: Annotated[str, typer.Argument(metavar="KEY", help=f"one of: {', '.join(_profiles.KEYS)}")],
    profile: ProfileName = None,
) -> None:
    """Remove one setting from a profile.

    \b
    Examples:
      runwire config unset token_file --profile prod
    """
    config = _config()
    name = _target(config, profile)
    settings = _profiles.profiles(config).get(name, {})
    if key not in settings:
        complain("not found", f"profile {name!r} does not set {key!r}")
        raise typer.Exit(1)
    del settings[key]
    _profiles.save(config)
    stdout().print(plain(f"Removed {key} from profile {name!r}"))


@config_app.command("use")
def config_use(
    name: Annotated[str, typer.Argument(metavar="NAME", help="the profile's name")],
) -> None:
    """Use this profile from now on (RUNWIRE_PROFILE and --profile still choose another).

    \b
    Examples:
      runwire config use prod
    """
    config = _config()
    if name not in _profiles.profiles(config) and name != _profiles.DEFAULT:
        complain(
            "not found",
            f"no profile {name!r}; make one with "
            f"`runwire config set address HOST:PORT --profile {name}`",
        )
        raise typer.Exit(1)
    config["active"] = name
    _profiles.save(config)
    stdout().print(plain(f"Using profile {name!r}"))


@config_app.command("ls")
def config_ls(output: OutputOption = Output.TABLE) -> None:
    """List the profiles; the one in use is marked with *.

    \b
    Examples:
      runwire config ls
      runwire config ls -o json
    """
    config = _config()
    in_use = _connect.given().get("profile") or _profiles.active(config)
    rows = [
        {"name": name, "active": name == in_use, **settings}
        for name, settings in sorted(_profiles.profiles(config).items())
    ]
    if not any(row["name"] == _profiles.DEFAULT for row in rows):
        rows.insert(0, {"name": _profiles.DEFAULT, "active": in_use == _profiles.DEFAULT})
    columns = [
        Column("", lambda row: "*" if row["active"] else "", keep=100),
        Column("name", lambda row: row["name"], keep=100),
        Column("address", lambda row: row.get("address", ""), keep=90),
        Column("tls", lambda row: "yes" if row.get("tls") or row.get("ca_file") else "", keep=50),
        Column("token file", lambda row: row.get("token_file", ""), keep=30, cut=True),
        Column("ca file", lambda row: row.get("ca_file", ""), wide=True),
        Column("cert file", lambda row: row.get("cert_file", ""), wide=True),
        Column("key file", lambda row: row.get("key_file", ""), wide=True),
    ]
    emit(output, rows, columns, as_json=lambda row: row, row_id=lambda row: row["name"], none="")
