"""A server process with known flows, runs, task runs, logs, a deployment and a limit, for the
command line's tests; and a way to run `runwire` in-process as a terminal of some width, or
piped, with the clock stopped, and to make its output comparable from run to run."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pendulum
import pytest
from typer.testing import CliRunner

from runwire import Client, StateType, proposed_state
from runwire.cli import _show, app
from tests.conftest import ServerProcess, start_server_process

# A terminal of each width (colour on: rich then draws as for a terminal), and a pipe.
TERMINALS = {
    "80": {"COLUMNS": "80", "FORCE_COLOR": "1", "NO_COLOR": None},
    "200": {"COLUMNS": "200", "FORCE_COLOR": "1", "NO_COLOR": None},
    "piped": {"COLUMNS": None, "FORCE_COLOR": None, "NO_COLOR": None},
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WALL = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
CLOCK = re.compile(r"\b\d{2}:\d{2}:\d{2}\.\d{3}\b")
SHORT_SPAN = re.compile(r"\b\d\.\ds\b")
JSON_SPAN = re.compile(r'"\d+(\.\d+)?s"')


@dataclass
class World:
    address: str
    config: Path
    # Ids the tests name, and the placeholders that stand for them in snapshots.
    ids: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # label -> id
    prefix: str = ""
    now: datetime | None = None

    def name(self, label: str, real: str) -> str:
        self.ids[real] = f"00000000-0000-7000-8000-{len(self.ids) + 1:012d}"
        self.names[label] = real
        return real

    def run(self, terminal: str, *args: str) -> tuple[int, str, str]:
        """Run `runwire args` as `terminal`; its exit code, stdout and stderr."""
        env = {**TERMINALS[terminal], "RUNWIRE_API_URL": self.address}
        env["RUNWIRE_CONFIG"] = str(self.config)
        assert self.now is not None
        stopped = pendulum.instance(self.now)
        # The command line's clock stops (and the user's zone is UTC), so that "3 minutes ago"
        # and a running run's duration read the same on every run of the tests.
        with (
            pytest.MonkeyPatch.context() as patch,
            pendulum.test_local_timezone(pendulum.timezone("UTC")),
        ):
            patch.setattr(_show, "now", lambda: stopped)
            result = CliRunner().invoke(app, list(args), env=env, prog_name="runwire")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    def snapshot(self, terminal: str, *args: str) -> str:
        """The command and its output, with what changes from run to run made constant."""
        code, out, err = self.run(terminal, *args)
        text = f"$ runwire {' '.join(args)}\n[exit {code}]\n{out}"
        if err:
            text += f"[stderr]\n{err}"
        return self.constant(ANSI.sub("", text))

    def constant(self, text: str) -> str:
        text = UUID.sub(lambda m: self.ids.get(m[0], "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"), text)
        if self.prefix:
            text = text.replace(self.prefix, "0000000p")
        text = WALL.sub("2026-01-01 00:00:00", text)
        text = ISO.sub("2026-01-01T00:00:00Z", text)
        text = CLOCK.sub("00:00:00.000", text)
        text = SHORT_SPAN.sub("0.0s", text)
        return JSON_SPAN.sub('"0s"', text)


def _task_runs(client: Client, flow_run_id: str, fail_last: bool) -> None:
    for key in ("extract", "transform", "load"):
        task_run = client.create_task_run(flow_run_id, key)
        client.set_task_run_state(task_run.task_run_id, proposed_state(StateType.RUNNING))
        client.write_logs(
            flow_run_id, (logging.INFO, f"{key}: working"), task_run_id=task_run.task_run_id
        )
        failed = fail_last and key == "load"
        end = (
            proposed_state(StateType.FAILED, message="disk full")
            if failed
            else proposed_state(StateType.COMPLETED)
        )
        client.set_task_run_state(task_run.task_run_id, end)


def world(tmp: Path) -> Iterator[World]:
    """The server and its data, for a test module."""
    process: ServerProcess = start_server_process(f"sqlite:///{tmp / 'runwire.db'}")
    made = World(address=f"127.0.0.1:{process.port}", config=tmp / "config.toml")
    try:
        with Client(made.address) as client:
            flow = client.create_flow("etl", tags=["team-data"])
            made.name("flow", flow.flow_id)
            deployment = client.create_deployment(
                flow.flow_id, "etl-prod", work_queue_name="default", concurrency_limit=2
            )
            made.name("deployment", deployment.deployment_id)
            client.set_concurrency_limit("database", 5)
            for name, end in (
                ("nightly-0", StateType.COMPLETED),
                ("nightly-1", StateType.FAILED),
                ("nightly-2", None),
            ):
                run = client.create_flow_run(
                    flow.flow_id,
                    name=name,
                    tags=["etl", "nightly"],
                    parameters={"day": "2026-12-01"},
                    deployment_id=deployment.deployment_id if end is StateType.FAILED else "",
                )
                made.name(name, run.flow_run_id)
                client.set_flow_run_state(run.flow_run_id, proposed_state(StateType.PENDING))
                client.set_flow_run_state(run.flow_run_id, proposed_state(StateType.RUNNING))
                _task_runs(client, run.flow_run_id, fail_last=end is StateType.FAILED)
                client.write_logs(run.flow_run_id, (logging.WARNING, "all tasks ran"))
                if end is not None:
                    client.set_flow_run_state(
                        run.flow_run_id,
                        proposed_state(
                            end, message="load failed" if end is StateType.FAILED else ""
                        ),
                    )
            for terminal in TERMINALS:
                for action in ("cancel", "delete"):
                    name = f"{action}-{terminal}"
                    run = client.create_flow_run(
                        flow.flow_id, name=name, state=proposed_state(StateType.SCHEDULED)
                    )
                    made.name(name, run.flow_run_id)
            running = client.get_flow_run(made.names["nightly-2"])
            # Stopped three minutes after the running run started: relative times and its
            # duration read the same on every run of the tests.
            made.now = running.raw.start_time.ToDatetime().replace(tzinfo=pendulum.UTC) + timedelta(
                minutes=3
            )
            for task_run in client.list_task_runs():
                made.name(f"task run {task_run.name}", task_run.task_run_id)
            made.prefix = made.names["nightly-0"][:8]
        yield made
    finally:
        process.stop()
