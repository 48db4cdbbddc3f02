"""The `runwire` command line.

Exit codes: 0 success; 1 the server refused the request (not found, invalid, ...);
2 bad usage or settings (a bad option, a server setting the server cannot start with, TLS
settings that do not fit the server's); 3 the server could not be reached.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runwire._cli_times import duration as _duration
from runwire._cli_times import moment as _moment
from runwire._cli_times import wall_time as _time
from runwire.cli_output import console, emit

if TYPE_CHECKING:
    from runwire.errors import TlsMismatch

app = typer.Typer(
    help="Runwire: the state service for workflow orchestration.", no_args_is_help=True
)
flow_run_app = typer.Typer(help="Inspect and steer flow runs.", no_args_is_help=True)
flow_app = typer.Typer(help="Inspect flows.", no_args_is_help=True)
app.add_typer(flow_run_app, name="flow-run")
app.add_typer(flow_app, name="flow")

# Commands that other distributions add to `runwire`: runwire-server adds `server`, `database`
# and `token`. Each entry point of the group names a command and holds its Typer app.
COMMANDS_GROUP = "runwire.commands"
SERVER_COMMANDS = {
    "server": "Run the Runwire server.",
    "database": "Manage the server's database schema.",
    "token": "Make, list and revoke API tokens in the server's tokens file.",
}
INSTALL_SERVER = "The server is not installed: pip install runwire-server"


def _add_installed_commands() -> None:
    found = set()
    for entry in entry_points(group=COMMANDS_GROUP):
        # A broken install of one distribution must not take every other command down with it.
        try:
            command = entry.load()
        except Exception as exc:
            _add_missing(entry.name, SERVER_COMMANDS.get(entry.name, ""), _unloadable(entry, exc))
        else:
            if isinstance(command, typer.Typer):
                app.add_typer(command, name=entry.name)
            else:
                problem = f"is a {type(command).__name__}, not a command"
                _add_missing(
                    entry.name, SERVER_COMMANDS.get(entry.name, ""), _unloadable(entry, problem)
                )
        found.add(entry.name)
    for name, summary in SERVER_COMMANDS.items():
        if name not in found:
            _add_missing(name, summary, INSTALL_SERVER)


def _unloadable(entry: EntryPoint, problem: object) -> str:
    owner = entry.dist.name if entry.dist is not None else "its distribution"
    return (
        f"The command {entry.name!r} of {owner} cannot be loaded ({entry.value}: {problem}); "
        f"reinstall {owner} at the version of runwire"
    )


def _add_missing(name: str, summary: str, message: str) -> None:
    """A command that is not installed, or cannot be loaded: whatever follows it, say so (and
    how to install it) in one line, and exit as for a bad usage."""

    @app.command(
        name,
        help=f"{summary} (needs runwire-server)".lstrip(),
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def missing() -> None:
        typer.echo(message, err=True)
        raise typer.Exit(2)


_add_installed_commands()

errors = Console(stderr=True)

Address = Annotated[
    str | None,
    typer.Option("--address", envvar="RUNWIRE_API_URL", help="host:port of the server"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
# How to reach the server, from the global options (see runwire.connection for the variables).
_connection: dict[str, Any] = {}


@app.callback()
def main(
    token: Annotated[
        str | None,
        typer.Option(envvar="RUNWIRE_API_TOKEN", help="bearer token for a server that needs one"),
    ] = None,
    tls: Annotated[
        bool | None, typer.Option("--tls", envvar="RUNWIRE_API_TLS", help="connect over TLS")
    ] = None,
    ca_file: Annotated[
        str | None,
        typer.Option(envvar="RUNWIRE_API_CA_FILE", help="CA of the server's certificate (TLS)"),
    ] = None,
    cert_file: Annotated[
        str | None,
        typer.Option(envvar="RUNWIRE_API_CERT_FILE", help="client certificate (mutual TLS)"),
    ] = None,
    key_file: Annotated[
        str | None,
        typer.Option(envvar="RUNWIRE_API_KEY_FILE", help="client certificate's key (mutual TLS)"),
    ] = None,
) -> None:
    _connection.update(
        token=token, tls=tls, ca_file=ca_file, cert_file=cert_file, key_file=key_file
    )


def _tls_remedy(mismatch: TlsMismatch) -> str:
    """What to change, in the command line's own options."""
    from runwire._diagnose import NAME_MISMATCH
    from runwire.errors import TlsMismatch

    reason, details = mismatch.reason, mismatch.metadata
    if reason == TlsMismatch.SERVER_REQUIRES_TLS:
        remedy = "pass --ca-file <the CA of its certificate>, or --tls for the system's CAs"
        if details.get("client_certificate") == "required":
            remedy += ", with --cert-file and --key-file"
        return remedy
    if reason == TlsMismatch.SERVER_IS_PLAINTEXT:
        return (
            "drop --tls, --ca-file, --cert-file and --key-file (and the RUNWIRE_API_TLS and "
            "RUNWIRE_API_*_FILE variables)"
        )
    if reason == TlsMismatch.SERVER_CERTIFICATE_UNTRUSTED:
        if int(details.get("verify_code", 0)) in NAME_MISMATCH:
            return "connect to an --address its certificate names"
        return "pass --ca-file with the CA that signed it"
    if reason == TlsMismatch.CLIENT_CERTIFICATE_REQUIRED:
        return "pass --cert-file and --key-file"
    return "pass a --cert-file signed by a CA the server trusts"


@contextmanager
def _client(address: str | None) -> Iterator[Any]:
    # gRPC writes every failed TLS handshake to stderr at its default verbosity; the command
    # explains such failures in a line of its own instead. gRPC reads GRPC_VERBOSITY once, when
    # it is first imported (just below: nothing the command line imported before needs it).
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from runwire.client import Client
    from runwire.errors import RunwireError, TlsMismatch, Unavailable

    try:
        client = Client(address, timeout=15, retries=1, **_connection)
    except (ValueError, OSError) as exc:
        errors.print(f"[red]invalid connection settings[/]: {exc}")
        raise typer.Exit(2) from None
    try:
        client.wait_until_ready(timeout=3)
        yield client
    except TlsMismatch as exc:
        errors.print(
            f"[red]TLS settings do not fit the server's[/]: {escape(exc.cause)}: "
            f"{escape(_tls_remedy(exc))}",
            soft_wrap=True,
        )
        raise typer.Exit(2) from None
    except Unavailable as exc:
        errors.print(
            f"[red]cannot reach the Runwire server at {client.address}[/]: {escape(exc.message)}",
            soft_wrap=True,
        )
        raise typer.Exit(3) from None
    except RunwireError as exc:
        where = f" ({exc.field})" if exc.field else ""
        errors.print(f"[red]{exc.code.name.lower().replace('_', ' ')}{where}[/]: {exc.message}")
        raise typer.Exit(1) from None
    finally:
        client.close()


def _run_row(run: Any) -> dict[str, Any]:
    raw = run.raw
    return {
        "id": run.flow_run_id,
        "name": run.name,
        "flow_id": run.flow_id,
        "state": run.state.name,
        "state_type": run.state.type.value,
        "start_time": raw.start_time.ToDatetime(tzinfo=UTC) if raw.HasField("start_time") else None,
        "end_time": raw.end_time.ToDatetime(tzinfo=UTC) if raw.HasField("end_time") else None,
        "tags": list(run.tags),
    }


@flow_run_app.command("ls")
def flow_run_ls(
    state: Annotated[
        list[str] | None, typer.Option(help="state type, e.g. RUNNING; repeatable")
    ] = None,
    flow: Annotated[str | None, typer.Option(help="flow name")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="tag the run must have; repeatable")] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="only runs starting (or expected) at or after this: a time, or '2 hours ago'"
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="at most this many runs")] = 20,
    address: Address = None,
    as_json: AsJson = False,
) -> None:
    """List flow runs, newest first."""
    from runwire.filters import flow_runs

    try:
        after = None if since is None else _moment(since)
        criteria = flow_runs(states=state, flow_name=flow, tags_all=tag, started_after=after)
    except ValueError as exc:
        errors.print(f"[red]invalid option[/]: {exc}")
        raise typer.Exit(2) from None
    with _client(address) as client:
        rows = [_run_row(r) for r in client.list_flow_runs(criteria, limit=limit)]

    def table() -> Table:
        out = Table("id", "name", "state", "start", "end", "tags")
        for row in rows:
            out.add_row(
                row["id"],
                row["name"],
                row["state"],
                _time(row["start_time"]),
                _time(row["end_time"]),
                ",".join(row["tags"]),
            )
        return out

    emit(as_json, rows, table)


@flow_run_app.command("inspect")
def flow_run_inspect(flow_run_id: str, address: Address = None, as_json: AsJson = False) -> None:
    """Show one flow run and its state history."""
    with _client(address) as client:
        run = client.get_flow_run(flow_run_id)
        row = _run_row(run)
        row["parameters"] = run.parameters
        row["states"] = [
            {"name": s.name, "type": s.type.value, "timestamp": s.timestamp, "message": s.message}
            for s in run.states
        ]

    def table() -> Table:
        out = Table("field", "value", show_header=False)
        for key in (
            "id",
            "name",
            "flow_id",
            "state",
            "start_time",
            "end_time",
            "tags",
            "parameters",
        ):
            out.add_row(key, str(row[key]))
        if row["end_time"] is not None:
            out.add_row("duration", _duration(row["start_time"], row["end_time"]))
        for state in row["states"]:
            out.add_row(_time(state["timestamp"]), f"{state['name']} {state['message']}".strip())
        return out

    emit(as_json, [row], table)


@flow_run_app.command("logs")
def flow_run_logs(
    flow_run_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new logs")] = False,
    address: Address = None,
    as_json: AsJson = False,
) -> None:
    """Print a flow run's logs; with --follow, until the run ends."""
    with _client(address) as client:
        if follow:
            for message in client.watch(flow_run_id, stream_states=False, after_cursor=0):
                if message.WhichOneof("event") == "log":
                    _print_log(as_json, message.log)
            return
        for entry in client.list_logs(flow_run_id):
            _print_line(as_json, entry.timestamp, entry.level_name, entry.message)


def _print_log(as_json: bool, log: Any) -> None:
    import logging

    when = log.timestamp.ToDatetime(tzinfo=UTC)
    _print_line(as_json, when, logging.getLevelName(log.level), log.message)


def _print_line(as_json: bool, when: datetime, level: str, message: str) -> None:
    if as_json:
        sys.stdout.write(
            json.dumps({"timestamp": when.isoformat(), "level": level, "message": message}) + "\n"
        )
    else:
        console.print(
            f"{when.astimezone():%H:%M:%S} | {level:<8} | {message}", markup=False, highlight=False
        )
    sys.stdout.flush()


@flow_run_app.command("watch")
def flow_run_watch(flow_run_id: str, address: Address = None, as_json: AsJson = False) -> None:
    """Follow a flow run's states, task runs and logs until it ends."""
    from runwire.states import State

    with _client(address) as client:
        for message in client.watch(flow_run_id, include_task_runs=True, after_cursor=0):
            kind = message.WhichOneof("event")
            if kind == "flow_run_state":
                state = State.from_proto(message.flow_run_state.state)
                _print_line(as_json, state.timestamp, "STATE", f"flow run {state!r}")
            elif kind == "task_run_state":
                state = State.from_proto(message.task_run_state.state)
                _print_line(
                    as_json, state.timestamp, "TASK", f"{message.task_run_state.task_key} {state!r}"
                )
            elif kind == "log":
                _print_log(as_json, message.log)


def _orchestrate(flow_run_id: str, address: str | None, action: str) -> None:
    with _client(address) as client:
        result = getattr(client, f"{action}_flow_run")(flow_run_id)
    state = f" -> {result.state!r}" if result.state else ""
    reason = f" ({result.reason})" if result.reason else ""
    console.print(f"{result.status}{state}{reason}", markup=False, highlight=False)
    if result.status in ("ABORT", "WAIT") or (result.status == "REJECT" and not result.written):
        raise typer.Exit(1)


@flow_run_app.command("cancel")
def flow_run_cancel(flow_run_id: str, address: Address = None) -> None:
    """Ask for a flow run to be cancelled."""
    _orchestrate(flow_run_id, address, "cancel")


@flow_run_app.command("resume")
def flow_run_resume(flow_run_id: str, address: Address = None) -> None:
    """Resume a paused flow run."""
    _orchestrate(flow_run_id, address, "resume")


@flow_run_app.command("delete")
def flow_run_delete(flow_run_id: str, address: Address = None) -> None:
    """Delete a flow run with its states, task runs and logs."""
    with _client(address) as client:
        client.delete_flow_run(flow_run_id)
    console.print(f"deleted {flow_run_id}", markup=False, highlight=False)


@flow_app.command("ls")
def flow_ls(address: Address = None, as_json: AsJson = False) -> None:
    """List flows by name."""
    with _client(address) as client:
        rows = [
            {"id": f.flow_id, "name": f.name, "tags": list(f.tags), "created": f.created}
            for f in client.list_flows()
        ]

    def table() -> Table:
        out = Table("id", "name", "tags", "created")
        for row in rows:
            out.add_row(row["id"], row["name"], ",".join(row["tags"]), _time(row["created"]))
        return out

    emit(as_json, rows, table)


if __name__ == "__main__":
    app()
