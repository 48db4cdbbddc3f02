"""The `runwire` command line as a user runs it: a real process against a real server process.
What it prints is pinned by tests/test_cli_snapshots.py; here, what it does."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runwire import Client, StateType, proposed_state
from runwire.cli import app
from tests.conftest import RUNWIRE_CLI, start_server_process

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("cli") / "runwire.db"
    proc = start_server_process(f"sqlite:///{db}")
    yield f"127.0.0.1:{proc.port}"
    proc.stop()


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def runwire(
    *args: str, env: dict[str, str] | None = None, config: Path | None = None, real: bool = False
) -> Ran:
    """Run `runwire args` with no RUNWIRE_* variables but `env`: in this process (a fresh
    command line each time: quicker), or, `real`, as its own process."""
    environment: dict[str, str | None] = {k: None for k in os.environ if k.startswith("RUNWIRE_")}
    environment.update(FORCE_COLOR=None, NO_COLOR=None, COLUMNS=None)
    environment["RUNWIRE_CONFIG"] = str(config or "/nonexistent/runwire-config.toml")
    environment.update(env or {})
    if real:
        full = {**os.environ, **environment}
        done = subprocess.run(
            [str(RUNWIRE_CLI), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in full.items() if v is not None},
        )
        return Ran(done.returncode, done.stdout, done.stderr)
    result = CliRunner().invoke(app, list(args), env=environment, prog_name="runwire")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def cli(address: str, *args: str, **kwargs) -> Ran:
    return runwire(*args, "--address", address, **kwargs)


@pytest.fixture(scope="module")
def runs(address: str) -> dict[str, str]:
    with Client(address) as client:
        flow = client.create_flow("cli-flow", tags=["team"])
        deployment = client.create_deployment(flow.flow_id, "cli-deployment")
        done = client.create_flow_run(flow.flow_id, name="done-run", tags=["nightly"])
        client.set_flow_run_state(done.flow_run_id, proposed_state(StateType.RUNNING))
        task_run = client.create_task_run(done.flow_run_id, "extract")
        client.set_task_run_state(task_run.task_run_id, proposed_state(StateType.RUNNING))
        client.write_logs(
            done.flow_run_id, (logging.DEBUG, "details"), task_run_id=task_run.task_run_id
        )
        client.write_logs(
            done.flow_run_id, (logging.INFO, "hello from the run"), task_run_id=task_run.task_run_id
        )
        client.set_task_run_state(task_run.task_run_id, proposed_state(StateType.COMPLETED))
        client.write_logs(done.flow_run_id, (logging.WARNING, "flow says bye"))
        client.set_flow_run_state(done.flow_run_id, proposed_state(StateType.COMPLETED))
        waiting = client.create_flow_run(
            flow.flow_id, name="waiting-run", state=proposed_state(StateType.SCHEDULED)
        )
        failed = client.create_flow_run(
            flow.flow_id, name="failed-run", deployment_id=deployment.deployment_id
        )
        client.set_flow_run_state(failed.flow_run_id, proposed_state(StateType.RUNNING))
        client.set_flow_run_state(failed.flow_run_id, proposed_state(StateType.FAILED))
        return {
            "flow": flow.flow_id,
            "deployment": deployment.deployment_id,
            "done": done.flow_run_id,
            "waiting": waiting.flow_run_id,
            "failed": failed.flow_run_id,
            "task_run": task_run.task_run_id,
        }


def test_ls_filters_and_output_formats(address, runs):
    listed = json.loads(cli(address, "flow-run", "ls", "-o", "json").stdout)
    assert {r["name"] for r in listed} >= {"done-run", "waiting-run", "failed-run"}
    completed = json.loads(
        cli(address, "flow-run", "ls", "--state", "completed", "-o", "json").stdout
    )
    assert [r["name"] for r in completed] == ["done-run"]
    assert ISO_UTC.match(completed[0]["start_time"]) and ISO_UTC.match(completed[0]["created"])
    tagged = cli(address, "flow-run", "ls", "--tag", "nightly", "--flow", "cli-flow", "-o", "id")
    assert tagged.stdout.split() == [runs["done"]]
    lines = cli(
        address, "flow-run", "ls", "--state", "COMPLETED", "--state", "failed", "-o", "jsonl"
    )
    assert sorted(json.loads(line)["name"] for line in lines.stdout.splitlines()) == [
        "done-run",
        "failed-run",
    ]
    assert cli(address, "flow-run", "ls", "--state", "BOGUS").returncode == 2
    assert cli(address, "flow-run", "ls", "--limit", "-1").returncode == 2
    assert cli(address, "flow-run", "ls", "--limit", "1", "-o", "id").stdout.count("\n") == 1
    nothing = cli(address, "flow-run", "ls", "--flow", "no-such-flow")
    assert nothing.returncode == 0 and nothing.stdout == ""
    assert "No flow runs found." in nothing.stderr


def test_since_takes_a_time_or_how_long_ago(address, runs):
    recent = cli(address, "flow-run", "ls", "--since", "2 hours ago", "-o", "id")
    assert runs["done"] in recent.stdout.split()
    future = cli(address, "flow-run", "ls", "--since", "2999-01-01", "-o", "json")
    assert json.loads(future.stdout) == []
    bad = cli(address, "flow-run", "ls", "--since", "soonish")
    assert bad.returncode == 2 and "is not a time" in bad.stderr


def test_inspect_gives_the_same_run_as_ls_with_its_history_and_task_runs(address, runs):
    [listed] = json.loads(cli(address, "flow-run", "ls", "--tag", "nightly", "-o", "json").stdout)
    inspected = json.loads(cli(address, "flow-run", "inspect", runs["done"], "-o", "json").stdout)
    assert {k: v for k, v in inspected.items() if k not in ("states", "task_runs")} == listed
    assert [s["name"] for s in inspected["states"]] == ["Pending", "Running", "Completed"]
    assert all(ISO_UTC.match(s["timestamp"]) for s in inspected["states"])
    assert [t["task_key"] for t in inspected["task_runs"]] == ["extract"]
    text = cli(address, "flow-run", "inspect", "done-run").stdout
    assert "cli-flow" in text and "Progress 1/1" in text and "extract" in text
    assert "['" not in text and "{'" not in text  # no Python reprs


def test_runs_are_found_by_the_start_of_their_id_or_their_name(address, runs):
    unique = runs["failed"][:-2]
    assert cli(address, "flow-run", "inspect", unique, "-o", "id").stdout.strip() == runs["failed"]
    assert (
        cli(address, "flow-run", "inspect", "waiting-run", "-o", "id").stdout.strip()
        == runs["waiting"]
    )
    # Ids made within seconds of each other share their first digits (they are time-ordered).
    ambiguous = cli(address, "flow-run", "inspect", runs["done"][:4])
    assert ambiguous.returncode == 1 and "ambiguous" in ambiguous.stderr
    assert {runs["done"], runs["waiting"], runs["failed"]} <= set(
        re.findall(r"[0-9a-f-]{36}", ambiguous.stderr)
    )
    missing = cli(address, "flow-run", "inspect", "01a2256a-")
    assert missing.returncode == 1 and "no flow run" in missing.stderr
    task = cli(address, "task-run", "inspect", runs["task_run"][:-1], "-o", "json")
    assert json.loads(task.stdout)["id"] == runs["task_run"]


def test_a_refused_request_names_its_field_once(address, runs):
    refused = cli(address, "concurrency-limit", "create", "", "1")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "invalid argument: tag: is required", refused.stderr


def test_logs_say_which_task_wrote_each_line_and_filter(address, runs):
    logs = cli(address, "flow-run", "logs", "done-run").stdout.splitlines()
    assert len(logs) == 3
    assert "extract" in logs[1] and "INFO" in logs[1] and "hello from the run" in logs[1]
    warnings = cli(address, "flow-run", "logs", "done-run", "--level", "warning").stdout
    assert warnings.count("\n") == 1 and "flow says bye" in warnings
    only_task = cli(address, "flow-run", "logs", "done-run", "--task", "extract", "-o", "json")
    assert [entry["message"] for entry in json.loads(only_task.stdout)] == [
        "details",
        "hello from the run",
    ]
    tail = cli(address, "flow-run", "logs", "done-run", "--tail", "1", "-o", "jsonl")
    [last] = [json.loads(line) for line in tail.stdout.splitlines()]
    assert last["message"] == "flow says bye" and ISO_UTC.match(last["timestamp"])
    head = cli(address, "flow-run", "logs", "done-run", "--head", "1", "-o", "jsonl")
    assert json.loads(head.stdout)["message"] == "details"
    followed = cli(address, "flow-run", "logs", "done-run", "-f", "--tail", "2", "-o", "jsonl")
    assert [json.loads(line)["message"] for line in followed.stdout.splitlines()] == [
        "hello from the run",
        "flow says bye",
    ]
    assert cli(address, "flow-run", "logs", "done-run", "--task", "nope").returncode == 1


def test_resume_with_input_is_checked_against_what_the_run_waits_for(address, tmp_path):
    with Client(address) as client:
        flow = client.create_flow("cli-approvals")
        run = client.create_flow_run(flow.flow_id, name="release-1-4")
        client.set_flow_run_state(run.flow_run_id, proposed_state(StateType.RUNNING))
        paused = proposed_state(StateType.PAUSED, pause_key="approval")
        paused.state_details.run_input_schema.update(
            {
                "type": "object",
                "properties": {"approved": {"type": "boolean"}},
                "required": ["approved"],
            }
        )
        client.set_flow_run_state(run.flow_run_id, paused)
    not_json = cli(address, "flow-run", "resume", "release-1-4", "--input", "{approved")
    assert not_json.returncode == 2 and "--input" in not_json.stderr
    assert "is not JSON" in not_json.stderr
    not_object = cli(address, "flow-run", "resume", "release-1-4", "--input", "[1]")
    assert not_object.returncode == 2 and "must be a JSON object" in not_object.stderr
    missing = cli(address, "flow-run", "resume", "release-1-4", "--input", "@/nonexistent.json")
    assert missing.returncode == 2 and "cannot read /nonexistent.json" in missing.stderr
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"by": "Zoë"}'.encode("latin-1"))
    not_text = cli(address, "flow-run", "resume", "release-1-4", "--input", f"@{latin}")
    assert not_text.returncode == 2 and "is not UTF-8 text" in not_text.stderr
    wrong = cli(address, "flow-run", "resume", "release-1-4", "--input", '{"approved": "yes"}')
    assert wrong.returncode == 1 and "Refused" in wrong.stdout and "Paused" in wrong.stdout
    with Client(address) as client:
        assert client.get_flow_run(run.flow_run_id).state.type is StateType.PAUSED
    answer = tmp_path / "answer.json"
    answer.write_text('{"approved": true}')
    resumed = cli(address, "flow-run", "resume", "release-1-4", "--input", f"@{answer}")
    assert resumed.returncode == 0 and "Running" in resumed.stdout
    with Client(address) as client:
        state = client.get_flow_run(run.flow_run_id).state
    assert state.type is StateType.RUNNING and state.details["run_input"] == {"approved": True}


def test_steering_commands_and_their_exit_codes(address, runs):
    cancelled = cli(address, "flow-run", "cancel", "waiting-run")
    # A scheduled run has no infrastructure: it is cancelled at once.
    assert cancelled.returncode == 0 and "Cancelled" in cancelled.stdout
    not_paused = cli(address, "flow-run", "resume", "done-run")
    assert not_paused.returncode == 1 and "Refused" in not_paused.stdout
    no_deployment = cli(address, "flow-run", "retry", "done-run")
    assert no_deployment.returncode == 1 and "deployment" in no_deployment.stdout
    retried = cli(address, "flow-run", "retry", "failed-run")
    assert retried.returncode == 0 and "AwaitingRetry" in retried.stdout
    with Client(address) as client:
        assert client.get_flow_run(runs["failed"]).state.type is StateType.SCHEDULED
    assert cli(address, "flow-run", "delete", "waiting-run").returncode == 0
    assert cli(address, "flow-run", "inspect", runs["waiting"]).returncode == 1


def test_task_run_flow_deployment_and_limit_commands(address, runs):
    task_runs = json.loads(
        cli(address, "task-run", "ls", "--flow-run", "done-run", "-o", "json").stdout
    )
    assert [t["id"] for t in task_runs] == [runs["task_run"]]
    assert cli(address, "task-run", "ls", "--state", "failed", "-o", "id").stdout == ""
    flow = json.loads(cli(address, "flow", "inspect", "cli-flow", "-o", "json").stdout)
    assert flow["id"] == runs["flow"] and flow["tags"] == ["team"]
    by_id = cli(address, "flow", "inspect", runs["flow"], "-o", "id")
    assert by_id.stdout.strip() == runs["flow"]
    assert cli(address, "flow", "inspect", "nope").returncode == 1
    assert runs["flow"] in cli(address, "flow", "ls", "-o", "id").stdout.split()
    assert runs["deployment"] in cli(address, "deployment", "ls", "-o", "id").stdout.split()
    deployment = json.loads(
        cli(address, "deployment", "inspect", runs["deployment"], "-o", "json").stdout
    )
    assert deployment["name"] == "cli-deployment"
    named = cli(address, "deployment", "inspect", "cli-deployment", "-o", "id")
    assert named.stdout.strip() == runs["deployment"]
    assert cli(address, "deployment", "inspect", "no-such-deployment").returncode == 1
    assert cli(address, "concurrency-limit", "create", "cli-tag", "3").returncode == 0
    [limit] = [
        json.loads(line)
        for line in cli(address, "concurrency-limit", "ls", "-o", "jsonl").stdout.splitlines()
        if json.loads(line)["tag"] == "cli-tag"
    ]
    assert limit["concurrency_limit"] == 3
    assert cli(address, "concurrency-limit", "delete", "cli-tag").returncode == 0
    assert "cli-tag" not in cli(address, "concurrency-limit", "ls", "-o", "id").stdout
    assert cli(address, "concurrency-limit", "delete", "cli-tag").returncode == 1


def test_connection_settings_go_before_or_after_the_command_and_take_urls(address, runs):
    host, port = address.split(":")
    for args in (
        ("--address", address, "flow", "ls", "-o", "id"),
        ("flow", "ls", "-o", "id", "--address", address),
    ):
        assert runs["flow"] in runwire(*args, real=True).stdout.split()
    for url in (address, f"grpc://{address}", f"http://{address}", f"HTTP://{host}:{port}"):
        listed = runwire("flow", "ls", "-o", "id", env={"RUNWIRE_API_URL": url})
        assert listed.returncode == 0 and runs["flow"] in listed.stdout.split(), (
            url,
            listed.stderr,
        )
    over_tls = runwire("flow", "ls", env={"RUNWIRE_API_URL": f"grpcs://{address}"})
    assert over_tls.returncode == 2 and "TLS" in over_tls.stderr
    assert runwire("flow", "ls", env={"RUNWIRE_API_URL": f"ftp://{address}"}).returncode == 2
    down = cli("127.0.0.1:1", "flow-run", "ls")
    assert down.returncode == 3 and "cannot reach the Runwire server" in down.stderr


def test_profiles_name_a_server_once(address, runs, tmp_path: Path):
    config = tmp_path / "config.toml"
    assert (
        runwire("config", "set", "address", address, "--profile", "local", config=config).returncode
        == 0
    )
    assert (
        runwire(
            "config", "set", "address", "127.0.0.1:1", "--profile", "down", config=config
        ).returncode
        == 0
    )
    # The default profile names the default address, where this test's server is not.
    assert runs["flow"] not in runwire("flow", "ls", "-o", "id", config=config).stdout
    assert runwire("config", "use", "local", config=config).returncode == 0
    assert runs["flow"] in runwire("flow", "ls", "-o", "id", config=config).stdout.split()
    # --profile and RUNWIRE_PROFILE choose another; an option or a variable beats the profile.
    assert runwire("--profile", "down", "flow", "ls", config=config).returncode == 3
    assert runwire("flow", "ls", env={"RUNWIRE_PROFILE": "down"}, config=config).returncode == 3
    overridden = runwire(
        "flow",
        "ls",
        "-o",
        "id",
        env={"RUNWIRE_PROFILE": "down", "RUNWIRE_API_URL": address},
        config=config,
    )
    assert overridden.returncode == 0
    unknown = runwire("flow", "ls", "--profile", "nope", config=config)
    assert unknown.returncode == 2 and "no profile 'nope'" in unknown.stderr
    profiles = json.loads(runwire("config", "ls", "-o", "json", config=config).stdout)
    assert {p["name"]: p["active"] for p in profiles} == {
        "default": False,
        "down": False,
        "local": True,
    }
    token = tmp_path / "token"
    token.write_text("secret\n")
    assert (
        runwire(
            "config", "set", "token_file", str(token), "--profile", "local", config=config
        ).returncode
        == 0
    )
    # This server needs no token; one sent is ignored, so the file was read and the call made.
    assert runwire("flow", "ls", config=config).returncode == 0
    missing_token = runwire("flow", "ls", "--token-file", str(tmp_path / "none"), config=config)
    assert missing_token.returncode == 2 and "token file" in missing_token.stderr
    assert oct(config.stat().st_mode & 0o777) == "0o600"


def test_states_have_colour_on_a_terminal(address, runs):
    shown = cli(
        address,
        "flow-run",
        "ls",
        "--state",
        "completed",
        env={"FORCE_COLOR": "1", "COLUMNS": "120"},
        real=True,
    )
    assert "\x1b[32m✔ Completed" in shown.stdout
    piped = cli(address, "flow-run", "ls", "--state", "completed")
    assert "\x1b[" not in piped.stdout


def _commands(group=None, path=()):
    import typer.main

    command = group or typer.main.get_command(app)
    for name, sub in getattr(command, "commands", {}).items():
        if getattr(sub, "commands", None):
            yield from _commands(sub, (*path, name))
        else:
            yield (*path, name), sub


def test_every_command_has_an_example_and_shows_its_variables():
    from runwire.cli._installed import SERVER_COMMANDS

    checked = 0
    for path, command in _commands():
        if path[0] in SERVER_COMMANDS:
            continue
        shown = CliRunner().invoke(app, [*path, "--help"], prog_name="runwire")
        assert shown.exit_code == 0, path
        assert "Examples:" in shown.stdout, path
        for option in command.params:
            if getattr(option, "envvar", None):
                assert f"env var: {option.envvar}" in " ".join(shown.stdout.split()), (
                    path,
                    option.name,
                )
        checked += 1
    assert checked >= 20
    states = " ".join(runwire("flow-run", "ls", "--help").stdout.split())
    assert "scheduled, pending, running, completed, failed" in states
    assert "ISO 8601" in states and "2 hours ago" in states
    server = " ".join(runwire("server", "start", "--help").stdout.split())
    assert "[env RUNWIRE_LISTEN_ADDRESS; default 127.0.0.1:50051]" in server


def test_version():
    shown = runwire("--version", real=True)
    assert shown.returncode == 0 and re.fullmatch(r"runwire \d+\.\d+\.\d+\S*\n", shown.stdout)


MISSING_SERVER = """
import importlib.metadata, sys
importlib.metadata.entry_points = lambda **_: []
from runwire.cli import app
sys.argv = ["runwire", *sys.argv[1:]]
app()
"""


@pytest.mark.parametrize(
    "args",
    [
        ("server", "start", "--listen-address", "127.0.0.1:0"),
        ("database", "upgrade"),
        ("token", "list", "--tokens-file", "tokens"),
    ],
)
def test_server_commands_without_the_server_say_how_to_install_it(args):
    """The client distribution never imports the server: without runwire-server's entry
    points its commands say, in one line, how to get them."""
    result = subprocess.run(
        [sys.executable, "-c", MISSING_SERVER, *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "The server is not installed: install runwire-server (from a clone: pip install ./server)"
    ]


BROKEN_SERVER = """
import importlib.metadata, sys
broken = importlib.metadata.EntryPoint("server", "runwire_nowhere:app", "runwire.commands")
importlib.metadata.entry_points = lambda **_: [broken]
from runwire.cli import app
sys.argv = ["runwire", *sys.argv[1:]]
app()
"""


def test_a_command_that_cannot_be_loaded_says_so_and_the_others_still_work():
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", BROKEN_SERVER, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    broken = run("server", "start")
    assert broken.returncode == 2
    [line] = broken.stderr.splitlines()
    assert "'server'" in line and "cannot be loaded" in line and "runwire_nowhere" in line
    assert run("flow-run", "--help").returncode == 0


@pytest.fixture(scope="module")
def hostile(address: str) -> dict[str, str]:
    """Runs whose names and messages hold markup, escape sequences and line breaks."""
    with Client(address) as client:
        flow = client.create_flow("bad[/]flow")
        marked = client.create_flow_run(flow.flow_id, name="[red]x[/]")
        client.set_flow_run_state(
            marked.flow_run_id, proposed_state(StateType.RUNNING, message="[/]")
        )
        client.write_logs(marked.flow_run_id, (logging.INFO, "\x1b[31mred\x1b[0m\nsecond line"))
        escaped = client.create_flow_run(flow.flow_id, name="ctl\x1b[31mred\nline")
        long = client.create_flow_run(flow.flow_id, name="n" * 200, tags=["t" * 100])
        return {
            "flow": flow.flow_id,
            "marked": marked.flow_run_id,
            "escaped": escaped.flow_run_id,
            "long": long.flow_run_id,
        }


def test_names_and_messages_print_as_text_and_cannot_steer_the_terminal(address, hostile):
    shown = cli(address, "flow-run", "inspect", hostile["marked"])
    assert shown.returncode == 0, shown.stderr
    assert "[red]x[/]" in shown.stdout and "bad[/]flow" in shown.stdout
    logs = cli(address, "flow-run", "logs", hostile["marked"])
    assert "\x1b" not in logs.stdout and "\\x1b[31mred" in logs.stdout
    assert logs.stdout.count("\n") == 1  # one line, its line break shown as \n
    listed = cli(address, "flow-run", "ls", "--flow", "bad[/]flow")
    assert listed.returncode == 0 and "\x1b" not in listed.stdout
    assert listed.stdout.count("\n") == 4  # the header and one line a run
    assert "ctl\\x1b[31mred\\nline" in listed.stdout
    for terminal in ({"COLUMNS": "80", "FORCE_COLOR": "1"}, {"COLUMNS": "200", "FORCE_COLOR": "1"}):
        table = cli(address, "flow-run", "ls", "--flow", "bad[/]flow", env=terminal)
        plain = re.sub(r"\x1b\[[0-9;]*m", "", table.stdout)
        header = plain.splitlines()[0].split()
        # A long name is shortened; the ids and states are always there.
        assert header[:2] == ["ID", "NAME"] and "STATE" in header, plain
        assert all(len(line) <= int(terminal["COLUMNS"]) for line in plain.splitlines()), plain
        assert hostile["long"] in plain
    deleted = cli(address, "flow-run", "delete", hostile["escaped"])
    assert deleted.returncode == 0 and "\x1b" not in deleted.stdout
    made = cli(address, "concurrency-limit", "create", "x[/]", "1")
    assert made.returncode == 0 and "x[/]" in made.stdout
    assert cli(address, "concurrency-limit", "delete", "x[/]").returncode == 0


def test_settings_that_cannot_work_are_refused_at_once(address, tmp_path: Path):
    for bad in ("127.0.0.1", ":50051", "127.0.0.1:99999", "127.0.0.1:abc", "a b:1"):
        refused = runwire("flow", "ls", "--address", bad)
        assert refused.returncode == 2 and "address" in refused.stderr, (bad, refused.stderr)
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello")
    refused = runwire("flow", "ls", "--address", address, "--ca-file", str(not_pem))
    assert refused.returncode == 2 and "PEM" in refused.stderr
    refused = runwire("flow", "ls", "--address", address, "--token", "a\nb")
    assert refused.returncode == 2 and "token" in refused.stderr
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    refused = runwire("flow", "ls", "--address", address, "--token-file", str(empty))
    assert refused.returncode == 2 and "empty" in refused.stderr
    assert cli(address, "concurrency-limit", "create", "db", "99999999999").returncode == 2
    for timeout in ("0", "-1", "inf", "nan", "1x"):
        assert cli(address, "flow-run", "watch", "x", "--timeout", timeout).returncode == 2
    assert cli(address, "flow-run", "inspect", "").returncode == 2
    assert cli(address, "flow-run", "logs", "x", "-f", "-o", "json").returncode == 2
    config = tmp_path / "config.toml"
    for content in (
        b"[profiles.dev]\naddress = 50777\n",
        b'profiles = "x"\n',
        b"[profiles]\ndev = 3\n",
        b"\xff\xfe",
    ):
        config.write_bytes(content)
        for args in (("flow", "ls"), ("config", "ls"), ("config", "set", "tls", "true")):
            broken = runwire(*args, config=config)
            assert broken.returncode == 2 and str(config) in broken.stderr, (content, args)


def test_the_command_line_imports_grpc_only_once_a_command_calls_the_server():
    """gRPC reads its logging settings when it is imported; the command line sets them first."""
    probe = "import runwire.cli, sys; print('grpc' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert shown.stdout.strip() == "False", shown.stderr


def test_a_run_nothing_stops_is_cancelled_with_force(address, runs):
    with Client(address) as client:
        stuck = client.create_flow_run(runs["flow"], name="stuck-run")  # Pending
    assert cli(address, "flow-run", "cancel", "stuck-run").returncode == 0  # Cancelling
    again = cli(address, "flow-run", "cancel", "stuck-run")
    assert again.returncode == 1 and "Refused" in again.stdout
    forced = cli(address, "flow-run", "cancel", "stuck-run", "--force")
    assert forced.returncode == 0 and "Cancelled" in forced.stdout
    with Client(address) as client:
        assert client.get_flow_run(stuck.flow_run_id).state.type is StateType.CANCELLED
