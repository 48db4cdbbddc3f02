"""`runwire flow-run watch` follows a run while it happens, on a real terminal (a
pseudo-terminal) and piped, and its exit code says how the run ended."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runwire import Client, StateType, proposed_state
from tests.conftest import RUNWIRE_CLI, start_server_process

# Runs a command with SIGINT's default handler, as a terminal starts it: a test run started in
# the background (`cmd &`) ignores SIGINT, and its children would inherit that. (A preexec_fn
# would do it too, but is not safe in a process with threads, as pytest with gRPC is.)
AS_A_TERMINAL_STARTS_IT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("cli-watch") / "runwire.db"
    proc = start_server_process(f"sqlite:///{db}")
    yield f"127.0.0.1:{proc.port}"
    proc.stop()


class Watch:
    """`runwire flow-run watch` running on a pseudo-terminal 100 columns wide (or piped)."""

    def __init__(
        self, address: str, run: str, *extra: str, terminal: bool = True, verb: str = "watch"
    ) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RUNWIRE_", "FORCE_COLOR", "NO_COLOR", "COLUMNS"))
        }
        env.update(RUNWIRE_API_URL=address, TERM="xterm-256color", RUNWIRE_CONFIG="/nonexistent")
        command = [str(RUNWIRE_CLI), "flow-run", verb, run, *extra]
        self.chunks: list[bytes] = []
        if terminal:
            main, side = pty.openpty()
            fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
            self.process = subprocess.Popen(
                [*AS_A_TERMINAL_STARTS_IT, *command], stdin=side, stdout=side, stderr=side, env=env
            )
            os.close(side)
            self.reader = threading.Thread(target=self._read, args=(main,), daemon=True)
        else:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
            )
            assert self.process.stdout is not None
            self.reader = threading.Thread(
                target=self._read, args=(self.process.stdout.fileno(),), daemon=True
            )
        self.reader.start()

    def _read(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal closed with the process
                return
            if not chunk:
                return
            self.chunks.append(chunk)

    @property
    def screen(self) -> str:
        """Everything drawn so far, without the terminal's control sequences."""
        return ANSI.sub("", b"".join(self.chunks).decode(errors="replace"))

    def wait_for(self, pattern: str, timeout: float = 30) -> None:
        """Wait until the screen shows a match of the regular expression `pattern`."""
        text = pattern
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.screen):
            assert time.monotonic() < deadline, f"{text!r} never shown:\n{self.screen}"
            assert self.process.poll() is None, f"ended before showing {text!r}:\n{self.screen}"
            time.sleep(0.05)

    def finish(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout)
        self.reader.join(5)
        return code


def drive(client: Client, flow_run_id: str, fail: bool, step: Callable[[], None]) -> None:
    """Run three task runs (the last fails when `fail`) and end the flow run."""
    client.set_flow_run_state(flow_run_id, proposed_state(StateType.RUNNING))
    step()
    for key in ("extract", "transform", "load"):
        task_run = client.create_task_run(flow_run_id, key)
        client.set_task_run_state(task_run.task_run_id, proposed_state(StateType.RUNNING))
        client.write_logs(
            flow_run_id, (logging.INFO, f"{key} is working"), task_run_id=task_run.task_run_id
        )
        failed = fail and key == "load"
        end = StateType.FAILED if failed else StateType.COMPLETED
        client.set_task_run_state(
            task_run.task_run_id, proposed_state(end, message="disk full" if failed else "")
        )
        step()
    client.set_flow_run_state(
        flow_run_id, proposed_state(StateType.FAILED if fail else StateType.COMPLETED)
    )


@pytest.mark.parametrize("fail", [False, True], ids=["completes", "fails"])
def test_the_live_view_follows_the_run_and_the_exit_code_says_how_it_ended(
    address: str, fail: bool
):
    with Client(address) as client:
        flow = client.create_flow("watched")
        run = client.create_flow_run(
            flow.flow_id, name=f"watched-{'fails' if fail else 'completes'}"
        )
        watch = Watch(address, run.name)
        watch.wait_for("Pending")
        progress: list[str] = []

        def step() -> None:
            # Each change shows on the live view before the next one is made.
            done = len(progress)
            watch.wait_for(f"Progress +{done}/" if done else "Running")
            progress.append("step")

        drive(client, run.flow_run_id, fail, step)
        code = watch.finish()
    screen = watch.screen
    assert code == (1 if fail else 0), screen
    assert re.search(r"Progress +3/3", screen)
    assert "extract" in screen and "transform" in screen and "load" in screen
    assert "load is working" in screen  # the latest log lines
    assert "Duration" in screen
    if fail:
        assert "✖ Failed" in screen and "disk full" in screen
    else:
        assert "✔ Completed" in screen


def test_piped_it_prints_a_line_per_change(address: str):
    with Client(address) as client:
        flow = client.create_flow("watched-piped")
        run = client.create_flow_run(flow.flow_id, name="piped-run")
        watch = Watch(address, run.flow_run_id, terminal=False)
        watch.wait_for("Pending")
        drive(client, run.flow_run_id, True, lambda: None)
        code = watch.finish()
    lines = watch.screen.splitlines()
    assert code == 1
    assert any("task run load-0 → ✖ Failed" in line and "disk full" in line for line in lines)
    assert any("INFO" in line and "extract-0 | extract is working" in line for line in lines)
    assert lines[-1].startswith("piped-run ✖ Failed after") and "Progress 3/3" in lines[-1]


def test_timeout_and_cancelled_runs(address: str, tmp_path: Path):
    with Client(address) as client:
        flow = client.create_flow("watched-timeout")
        run = client.create_flow_run(flow.flow_id, name="slow-run")
        client.set_flow_run_state(run.flow_run_id, proposed_state(StateType.RUNNING))
        watch = Watch(address, run.flow_run_id, "--timeout", "1s", terminal=False)
        assert watch.finish() == 4
        assert "Timed out after 1s" in watch.screen
        bad = Watch(address, run.flow_run_id, "--timeout", "soon", terminal=False)
        assert bad.finish() == 2
        cancelled = Watch(address, run.flow_run_id, terminal=False)
        cancelled.wait_for("Running")
        client.set_flow_run_state(run.flow_run_id, proposed_state(StateType.CANCELLED), force=True)
        assert cancelled.finish() == 1
        assert "Cancelled" in cancelled.screen


def test_ctrl_c_ends_the_watch_with_the_code_of_an_interrupt(address: str):
    with Client(address) as client:
        flow = client.create_flow("watched-interrupted")
        run = client.create_flow_run(flow.flow_id, name="interrupted-run")
        watch = Watch(address, run.flow_run_id)
        watch.wait_for("Pending")
        watch.process.send_signal(signal.SIGINT)
        assert watch.finish() == 130
        assert "Traceback" not in watch.screen


def test_logs_follow_names_the_task_runs_that_begin_after_it_started(address: str):
    with Client(address) as client:
        flow = client.create_flow("followed")
        run = client.create_flow_run(flow.flow_id, name="followed-run")
        everything = Watch(address, run.flow_run_id, "-f", terminal=False, verb="logs")
        only_load = Watch(
            address, run.flow_run_id, "-f", "--task", "load", terminal=False, verb="logs"
        )
        time.sleep(1)  # both follow before the first task run exists
        drive(client, run.flow_run_id, False, lambda: None)
        assert everything.finish() == 0 and only_load.finish() == 0
    lines = everything.screen.splitlines()
    assert any("extract-0" in line and "extract is working" in line for line in lines), lines
    # The same lines, but for the task column's width: each follower pads to the names it saw.
    assert [
        " ".join(line.split()) for line in only_load.screen.splitlines() if "working" in line
    ] == [" ".join(line.split()) for line in lines if "load is working" in line]
