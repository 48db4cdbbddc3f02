"""The dashboard's end-to-end fixtures: Debian's Chromium, driven by selenium through Debian's
chromedriver, against a `runwire server start` process (a process, so that selenium's blocking
calls never hold a server's event loop), with data written over gRPC as clients write it.

Tests that use `browser` skip, saying why, where Chromium or its driver is not installed
(`.ci/run` installs both with apt)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import struct_pb2

from runwire.v1 import (
    flow_pb2,
    flow_run_pb2,
    flow_run_service_pb2,
    flow_run_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
    log_pb2,
    log_service_pb2,
    log_service_pb2_grpc,
    state_pb2,
    task_run_pb2,
    task_run_service_pb2,
    task_run_service_pb2_grpc,
)
from runwire_server import auth
from tests.conftest import ServerProcess, start_server_process

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
READ_TOKEN = "rwt_dashboard_read_token"
WRITE_TOKEN = "rwt_dashboard_write_token"
T = TypeVar("T")


def chromium_paths() -> tuple[str, str] | None:
    """Chromium and its driver, as Debian installs them (or as CHROMIUM / CHROMEDRIVER say)."""
    browser = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver:
        return None
    return browser, driver


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    paths = chromium_paths()
    if paths is None:
        pytest.skip(
            "the dashboard's browser tests need Chromium and chromedriver: "
            "apt-get install chromium chromium-driver"
        )
    return paths


def new_chromium(paths: tuple[str, str], width: int = 1440, height: int = 900) -> Any:
    """A fresh headless Chromium (a new profile: no session storage carried over)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser(chromium: tuple[str, str]) -> Iterator[Any]:
    driver = new_chromium(chromium)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Dashboard:
    """A server process and what tests need of it: its page URL and a gRPC channel to write
    through."""

    process: ServerProcess
    channel: grpc.Channel
    token: str = ""

    @property
    def url(self) -> str:
        assert self.process.http_url is not None
        return self.process.http_url

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    @property
    def flows(self) -> Any:
        return _Authed(flow_service_pb2_grpc.FlowServiceStub(self.channel), self._metadata())

    @property
    def runs(self) -> Any:
        return _Authed(flow_run_service_pb2_grpc.FlowRunServiceStub(self.channel), self._metadata())

    @property
    def task_runs(self) -> Any:
        return _Authed(task_run_service_pb2_grpc.TaskRunServiceStub(self.channel), self._metadata())

    @property
    def logs(self) -> Any:
        return _Authed(log_service_pb2_grpc.LogServiceStub(self.channel), self._metadata())

    # --- writing data as clients do ----------------------------------------------------------

    def flow(self, name: str) -> flow_pb2.Flow:
        response = self.flows.CreateFlow(
            flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name=name))
        )
        return response.flow

    def run(
        self,
        flow_id: str,
        name: str = "",
        tags: tuple[str, ...] = (),
        parameters: dict[str, Any] | None = None,
    ) -> flow_run_pb2.FlowRun:
        params = struct_pb2.Struct()
        params.update(parameters or {})
        response = self.runs.CreateFlowRun(
            flow_run_service_pb2.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(
                    flow_id=flow_id, name=name, tags=list(tags), parameters=params
                )
            )
        )
        return response.flow_run

    def set_state(self, run_id: str, state: int, message: str = "") -> Any:
        return self.runs.SetFlowRunState(
            flow_run_service_pb2.SetFlowRunStateRequest(
                flow_run_id=run_id, state=state_pb2.State(type=state, message=message)
            )
        )

    def task_run(
        self, run_id: str, key: str, upstream: tuple[str, ...] = ()
    ) -> task_run_pb2.TaskRun:
        inputs = {
            "x": task_run_pb2.TaskInputList(
                inputs=[
                    task_run_pb2.TaskInput(
                        input_type=task_run_pb2.TaskInput.INPUT_TYPE_TASK_RUN,
                        task_run_id=task_id,
                    )
                    for task_id in upstream
                ]
            )
        }
        response = self.task_runs.CreateTaskRun(
            task_run_service_pb2.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(
                    flow_run_id=run_id,
                    task_key=key,
                    name=key,
                    dynamic_key="0",
                    task_inputs=inputs if upstream else {},
                )
            )
        )
        return response.task_run

    def set_task_state(self, task_run_id: str, state: int) -> Any:
        return self.task_runs.SetTaskRunState(
            task_run_service_pb2.SetTaskRunStateRequest(
                task_run_id=task_run_id, state=state_pb2.State(type=state)
            )
        )

    def log(self, run_id: str, message: str, level: int = 20, task_run_id: str = "") -> None:
        self.logs.CreateLogs(
            log_service_pb2.CreateLogsRequest(
                logs=[
                    log_pb2.Log(
                        flow_run_id=run_id,
                        task_run_id=task_run_id,
                        name="test",
                        level=level,
                        message=message,
                        timestamp=_now(),
                    )
                ]
            )
        )


class _Authed:
    """A stub whose calls carry the dashboard's token."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)
        return lambda request: method(request, metadata=self._metadata, timeout=30)


def _now() -> Any:
    from google.protobuf import timestamp_pb2

    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def start_dashboard(tmp: Path, *extra: str) -> ServerProcess:
    server = start_server_process(
        f"sqlite:///{tmp / 'dashboard.db'}", "--http-address", "127.0.0.1:0", *extra
    )
    server.drain_output()
    return server


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A server without tokens (everyone on this machine may read and write)."""
    server = start_dashboard(tmp_path_factory.mktemp("dashboard"))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield Dashboard(server, channel)
    assert server.stop() == 0


@pytest.fixture(scope="module")
def guarded_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A server with tokens: READ_TOKEN may read, WRITE_TOKEN may do everything."""
    tmp = tmp_path_factory.mktemp("guarded-dashboard")
    tokens = tmp / "tokens"
    tokens.write_text(
        auth.tokens_file_line(READ_TOKEN, "read", "viewer")
        + "\n"
        + auth.tokens_file_line(WRITE_TOKEN, "write", "operator")
        + "\n"
    )
    server = start_dashboard(tmp, "--tokens-file", str(tokens))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield Dashboard(server, channel, token=WRITE_TOKEN)
    assert server.stop() == 0


# --- driving the page ----------------------------------------------------------------------


def wait_until(condition: Callable[[], T | None], what: str, timeout: float = 10.0) -> T:
    """Polls `condition` until it returns something truthy; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:  # the element is being re-rendered: look again
            last_error = exc
        else:
            if value:
                return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last error: {last_error!r})")


def find(driver: Any, css: str, timeout: float = 10.0) -> Any:
    """The first element matching `css`, once it is displayed."""
    from selenium.webdriver.common.by import By

    def displayed() -> Any:
        for element in driver.find_elements(By.CSS_SELECTOR, css):
            if element.is_displayed():
                return element
        return None

    return wait_until(displayed, f"an element matching {css!r}", timeout)


def texts(driver: Any, css: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def page_errors(driver: Any) -> list[str]:
    """The browser console's errors (uncaught exceptions, failed loads) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver: Any, name: str) -> Path:
    """Saves the page as docs/screenshots/<name>.png, the pictures the README shows."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
