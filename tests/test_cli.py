"""The `runwire` command line against a real server process."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest

from runwire import Client, StateType, proposed_state
from tests.conftest import RUNWIRE_CLI, start_server_process


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("cli") / "runwire.db"
    proc = start_server_process(f"sqlite:///{db}")
    yield f"127.0.0.1:{proc.port}"
    proc.stop()


def cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUNWIRE_CLI), *args, "--address", address],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def runs(address: str) -> dict[str, str]:
    with Client(address) as client:
        flow = client.create_flow("cli-flow")
        done = client.create_flow_run(flow.flow_id, name="done-run", tags=["nightly"])
        client.set_flow_run_state(done.flow_run_id, proposed_state(StateType.RUNNING))
        client.write_logs(done.flow_run_id, (logging.INFO, "hello from the run"))
        client.set_flow_run_state(done.flow_run_id, proposed_state(StateType.COMPLETED))
        waiting = client.create_flow_run(
            flow.flow_id, name="waiting-run", state=proposed_state(StateType.SCHEDULED)
        )
        return {"done": done.flow_run_id, "waiting": waiting.flow_run_id}


def test_flow_run_ls_filters_and_json(address, runs):
    listed = json.loads(cli(address, "flow-run", "ls", "--json").stdout)
    assert {r["name"] for r in listed} >= {"done-run", "waiting-run"}
    completed = json.loads(cli(address, "flow-run", "ls", "--state", "completed", "--json").stdout)
    assert [r["name"] for r in completed] == ["done-run"]
    tagged = json.loads(
        cli(address, "flow-run", "ls", "--tag", "nightly", "--flow", "cli-flow", "--json").stdout
    )
    assert [r["id"] for r in tagged] == [runs["done"]]
    table = cli(address, "flow-run", "ls")
    assert table.returncode == 0 and "done-run" in table.stdout
    assert cli(address, "flow-run", "ls", "--state", "BOGUS").returncode == 2


def test_inspect_logs_and_flow_ls(address, runs):
    inspected = json.loads(cli(address, "flow-run", "inspect", runs["done"], "--json").stdout)[0]
    assert [s["name"] for s in inspected["states"]] == ["Pending", "Running", "Completed"]
    logs = cli(address, "flow-run", "logs", runs["done"])
    assert "hello from the run" in logs.stdout
    followed = cli(address, "flow-run", "logs", runs["done"], "--follow", "--json")
    assert [json.loads(line)["message"] for line in followed.stdout.splitlines()] == [
        "hello from the run"
    ]
    watched = cli(address, "flow-run", "watch", runs["done"])
    assert watched.returncode == 0 and "<Completed>" in watched.stdout
    flows = json.loads(cli(address, "flow", "ls", "--json").stdout)
    assert "cli-flow" in [f["name"] for f in flows]


def test_cancel_resume_delete_and_exit_codes(address, runs, tmp_path: Path):
    cancelled = cli(address, "flow-run", "cancel", runs["waiting"])
    # A scheduled run has no infrastructure: it is cancelled at once.
    assert cancelled.returncode == 0 and "<Cancelled>" in cancelled.stdout
    not_paused = cli(address, "flow-run", "resume", runs["done"])
    assert not_paused.returncode == 1 and "ABORT" in not_paused.stdout
    assert cli(address, "flow-run", "delete", runs["waiting"]).returncode == 0
    missing = cli(address, "flow-run", "inspect", runs["waiting"])
    assert missing.returncode == 1 and "not found" in missing.stderr
    invalid = cli(address, "flow-run", "inspect", "nope")
    assert invalid.returncode == 1 and "flow_run_id" in invalid.stderr
    down = cli("127.0.0.1:1", "flow-run", "ls")
    assert down.returncode == 3 and "cannot reach the Runwire server" in down.stderr


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
    import sys

    result = subprocess.run(
        [sys.executable, "-c", MISSING_SERVER, *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["The server is not installed: pip install runwire-server"]


def test_since_takes_a_time_or_how_long_ago(address, runs):
    recent = json.loads(cli(address, "flow-run", "ls", "--since", "2 hours ago", "--json").stdout)
    assert runs["done"] in [r["id"] for r in recent]
    future = cli(address, "flow-run", "ls", "--since", "2999-01-01", "--json")
    assert json.loads(future.stdout) == []
    bad = cli(address, "flow-run", "ls", "--since", "soonish")
    assert bad.returncode == 2 and "is not a time" in bad.stderr
    inspected = cli(address, "flow-run", "inspect", runs["done"])
    assert inspected.returncode == 0 and "duration" in inspected.stdout


BROKEN_SERVER = """
import importlib.metadata, sys
broken = importlib.metadata.EntryPoint("server", "runwire_nowhere:app", "runwire.commands")
importlib.metadata.entry_points = lambda **_: [broken]
from runwire.cli import app
sys.argv = ["runwire", *sys.argv[1:]]
app()
"""


def test_a_command_that_cannot_be_loaded_says_so_and_the_others_still_work():
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", BROKEN_SERVER, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    broken = run("server", "start")
    assert broken.returncode == 2
    [line] = broken.stderr.splitlines()
    assert "'server'" in line and "cannot be loaded" in line and "runwire_nowhere" in line
    assert run("flow-run", "--help").returncode == 0
