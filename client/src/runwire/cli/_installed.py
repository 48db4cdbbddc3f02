"""Commands that other distributions add to `runwire`: runwire-server adds `server`,
`database` and `token`. Each entry point of the group names a command and holds its Typer app."""

from __future__ import annotations

import importlib.metadata
from importlib.metadata import EntryPoint

import typer

COMMANDS_GROUP = "runwire.commands"
SERVER_COMMANDS = {
    "server": "Run the Runwire server.",
    "database": "Manage the server's database schema.",
    "token": "Make, list and revoke API tokens in the server's tokens file.",
}
INSTALL_SERVER = (
    "The server is not installed: install runwire-server (from a clone: pip install ./server)"
)


def add_installed_commands(app: typer.Typer) -> None:
    found = set()
    for entry in importlib.metadata.entry_points(group=COMMANDS_GROUP):
        # A broken install of one distribution must not take every other command down with it.
        try:
            command = entry.load()
        except Exception as exc:
            _add_missing(app, entry.name, _unloadable(entry, exc))
        else:
            if isinstance(command, typer.Typer):
                app.add_typer(command, name=entry.name)
            else:
                problem = f"is a {type(command).__name__}, not a command"
                _add_missing(app, entry.name, _unloadable(entry, problem))
        found.add(entry.name)
    for name in SERVER_COMMANDS:
        if name not in found:
            _add_missing(app, name, INSTALL_SERVER)


def _unloadable(entry: EntryPoint, problem: object) -> str:
    owner = entry.dist.name if entry.dist is not None else "its distribution"
    return (
        f"The command {entry.name!r} of {owner} cannot be loaded ({entry.value}: {problem}); "
        f"reinstall {owner} at the version of runwire"
    )


def _add_missing(app: typer.Typer, name: str, message: str) -> None:
    """A command that is not installed, or cannot be loaded: whatever follows it, say so (and
    how to install it) in one line, and exit as for a bad usage."""
    summary = SERVER_COMMANDS.get(name, "")

    @app.command(
        name,
        help=f"{summary} (needs runwire-server)".lstrip(),
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def missing() -> None:
        typer.echo(message, err=True)
        raise typer.Exit(2)
