"""What every `runwire` command prints, as a terminal 80 and 200 columns wide and piped, with
results, without any, and for mistakes: compared with the snapshots in
tests/__snapshots__/ (after a deliberate change: `uv run pytest tests/test_cli_snapshots.py
--snapshot-update`, and review the diff)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from tests.cli_world import TERMINALS, World, world

pytestmark = pytest.mark.parametrize("terminal", list(TERMINALS))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from world(tmp_path_factory.mktemp("cli-snapshots"))


# Each case: a name, and the command's arguments ({name} stands for a run's id, {prefix} for
# the start that every run's id shares, {terminal} for the case's terminal).
READS = {
    "flow-run-ls": ["flow-run", "ls"],
    "flow-run-ls-wide": ["flow-run", "ls", "-o", "wide", "--state", "completed"],
    "flow-run-ls-json": ["flow-run", "ls", "--state", "failed", "-o", "json"],
    "flow-run-ls-jsonl": ["flow-run", "ls", "--state", "completed", "-o", "jsonl"],
    "flow-run-ls-id": ["flow-run", "ls", "--tag", "nightly", "-o", "id"],
    "flow-run-ls-none": ["flow-run", "ls", "--flow", "no-such-flow"],
    "flow-run-ls-bad-limit": ["flow-run", "ls", "--limit", "-1"],
    "flow-run-ls-bad-state": ["flow-run", "ls", "--state", "bogus"],
    "flow-run-ls-bad-since": ["flow-run", "ls", "--since", "soonish"],
    "flow-run-inspect": ["flow-run", "inspect", "nightly-1"],
    "flow-run-inspect-running": ["flow-run", "inspect", "{nightly-2}"],
    "flow-run-inspect-json": ["flow-run", "inspect", "nightly-0", "-o", "json"],
    "flow-run-inspect-ambiguous": ["flow-run", "inspect", "{prefix}"],
    "flow-run-inspect-missing": ["flow-run", "inspect", "01a2256a-"],
    "flow-run-logs": ["flow-run", "logs", "nightly-1"],
    "flow-run-logs-level": ["flow-run", "logs", "nightly-1", "--level", "warning"],
    "flow-run-logs-task-tail": ["flow-run", "logs", "nightly-1", "--task", "load", "--tail", "1"],
    "flow-run-logs-jsonl": ["flow-run", "logs", "nightly-0", "--head", "2", "-o", "jsonl"],
    "flow-run-logs-no-task": ["flow-run", "logs", "nightly-1", "--task", "nope"],
    "flow-run-logs-none": ["flow-run", "logs", "cancel-piped", "--level", "critical"],
    "flow-run-watch-done": ["flow-run", "watch", "nightly-0"],
    "flow-run-resume-refused": ["flow-run", "resume", "nightly-0"],
    "flow-run-retry-no-deployment": ["flow-run", "retry", "nightly-0"],
    "task-run-ls": ["task-run", "ls", "--flow-run", "nightly-1"],
    "task-run-ls-failed": ["task-run", "ls", "--state", "failed", "-o", "wide"],
    "task-run-ls-none": ["task-run", "ls", "--flow-run", "cancel-piped"],
    "task-run-inspect-missing": ["task-run", "inspect", "no-such-task"],
    "flow-ls": ["flow", "ls"],
    "flow-inspect": ["flow", "inspect", "etl"],
    "flow-inspect-missing": ["flow", "inspect", "nope"],
    "deployment-ls": ["deployment", "ls"],
    "deployment-inspect": ["deployment", "inspect", "{deployment}"],
    "concurrency-limit-ls": ["concurrency-limit", "ls"],
    "config-ls": ["config", "ls"],
    "version": ["--version"],
    "help-flow-run-ls": ["flow-run", "ls", "--help"],
    "help-flow-run-watch": ["flow-run", "watch", "--help"],
    "unreachable": ["flow-run", "ls", "--address", "127.0.0.1:1"],
}
WRITES = {
    "flow-run-cancel": ["flow-run", "cancel", "cancel-{terminal}"],
    "flow-run-delete": ["flow-run", "delete", "delete-{terminal}"],
}


def arguments(data: World, terminal: str, template: list[str]) -> list[str]:
    values = {**data.names, "prefix": data.prefix, "terminal": terminal}
    return [part.format(**values) if "{" in part else part for part in template]


@pytest.mark.parametrize("case", list(READS))
def test_read_commands(data: World, terminal: str, case: str, snapshot: SnapshotAssertion):
    assert data.snapshot(terminal, *arguments(data, terminal, READS[case])) == snapshot


@pytest.mark.parametrize("case", list(WRITES))
def test_write_commands(data: World, terminal: str, case: str, snapshot: SnapshotAssertion):
    assert data.snapshot(terminal, *arguments(data, terminal, WRITES[case])) == snapshot


def test_task_run_inspect(data: World, terminal: str, snapshot: SnapshotAssertion):
    code, ids, _ = data.run("piped", "task-run", "ls", "--state", "failed", "-o", "id")
    assert code == 0
    [failed] = ids.split()
    assert data.snapshot(terminal, "task-run", "inspect", failed) == snapshot


def test_config_commands(data: World, terminal: str, snapshot: SnapshotAssertion, tmp_path: Path):
    data.config = tmp_path / "config.toml"
    lines = [
        data.snapshot(
            terminal, "config", "set", "address", "grpcs://runwire.example.com", "--profile", "prod"
        ),
        data.snapshot(terminal, "config", "set", "token_file", "~/prod.token", "--profile", "prod"),
        data.snapshot(terminal, "config", "set", "colour", "blue"),
        data.snapshot(terminal, "config", "use", "staging"),
        data.snapshot(terminal, "config", "use", "prod"),
        data.snapshot(terminal, "config", "ls"),
        data.snapshot(terminal, "config", "use", "default"),
    ]
    output = "\n".join(lines).replace(str(tmp_path), "<tmp>")
    assert output == snapshot
