"""The flow SDK end to end: `@runwire.flow` and `@runwire.task` functions run against a real
server process, which decides every retry, cache hit, wait and cancellation, and records every
state, edge, result and log line."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import runwire
from tests.conftest import (
    RUNWIRE_CLI,
    ServerProcess,
    free_port,
    fresh_postgres_database,
    start_server_process,
)
from tests.test_observability import scrape


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that reaps ended leases every half second and makes tag-limit waits short."""
    db = tmp_path_factory.mktemp("sdk") / "sdk.db"
    saved = dict(os.environ)
    os.environ.update(
        {
            "RUNWIRE_LEASE_SECONDS": "2",  # also how long the reaper waits after start
            "RUNWIRE_LEASE_CHECK_SECONDS": "0.5",
            "RUNWIRE_TAG_SLOT_WAIT_SECONDS": "1",
        }
    )
    try:
        server = start_server_process(f"sqlite:///{db}", "--http-address", "off")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    server.drain_output()
    yield server
    server.stop()


@pytest.fixture
def client(sdk_server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[runwire.Client]:
    # Quick heartbeats: a cancellation is seen within a fraction of a second.
    monkeypatch.setenv("RUNWIRE_HEARTBEAT_SECONDS", "0.2")
    with runwire.Client(f"127.0.0.1:{sdk_server.port}", timeout=10) as c:
        yield c


def the_run(client: runwire.Client, flow_name: str) -> runwire.FlowRunView:
    """The newest run of the flow of this name, with its states."""
    flow = client.create_flow(flow_name)
    runs = list(client.list_flow_runs(runwire.filters.flow_runs(flow_ids=[flow.flow_id])))
    return client.get_flow_run(runs[0].flow_run_id)


def task_states(client: runwire.Client, run: runwire.FlowRunView) -> dict[str, list[str]]:
    """Each task run's state names, oldest first, by task run name."""
    out = {}
    for task in client.list_task_runs(runwire.filters.task_runs(flow_run_ids=[run.flow_run_id])):
        states = client.list_task_run_states(task.task_run_id)
        out[task.name] = [s.name for s in states]
    return out


def unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


def test_a_flow_of_tasks_reports_its_run_states_graph_and_logs(client: runwire.Client) -> None:
    name = unique("etl")

    @runwire.task
    def extract(n: int) -> list[int]:
        runwire.get_run_logger().info("extracting %d rows", n)
        return list(range(n))

    @runwire.task
    def transform(rows: list[int]) -> list[int]:
        return [r * 10 for r in rows]

    @runwire.task
    def load(rows: list[int]) -> int:
        print("loading", len(rows))
        return sum(rows)

    @runwire.flow(name=name, log_prints=True)
    def etl(n: int = 3) -> int:
        return load(transform(extract(n)))

    assert etl(4) == 60
    run = the_run(client, name)
    assert [s.name for s in run.states] == ["Pending", "Running", "Completed"]
    assert run.parameters == {"n": 4}
    assert run.state.result is not None and run.state.result.load() == 60
    graph = {node.name: node for node in client.get_flow_run_graph(run.flow_run_id)}
    assert set(graph) == {"extract-0", "transform-0", "load-0"}
    assert graph["transform-0"].upstream == (graph["extract-0"].task_run_id,)
    assert graph["load-0"].upstream == (graph["transform-0"].task_run_id,)
    assert task_states(client, run) == {
        n: ["Pending", "Running", "Completed"] for n in ("extract-0", "transform-0", "load-0")
    }
    lines = [(log.message, log.task_run_id) for log in client.list_logs(run.flow_run_id)]
    assert lines == [
        ("extracting 4 rows", graph["extract-0"].task_run_id),
        ("loading 4", graph["load-0"].task_run_id),
    ]
    # Outside a flow, a task is its function.
    assert extract(2) == [0, 1]


def test_the_server_decides_retries_and_their_delays(client: runwire.Client) -> None:
    name = unique("retrying")
    calls: list[float] = []

    @runwire.task(retries=2, retry_delay_seconds=[0.3, 0.6])
    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)}")
        return "ok"

    @runwire.flow(name=name)
    def job() -> str:
        return flaky()

    assert job() == "ok"
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.3 and calls[2] - calls[1] >= 0.6
    run = the_run(client, name)
    assert task_states(client, run)["flaky-0"] == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]

    failing = unique("failing")

    @runwire.task(retries=1)
    def always() -> None:
        raise ValueError("no good")

    @runwire.flow(name=failing, retries=1, retry_delay_seconds=0.2)
    def doomed() -> None:
        always()

    with pytest.raises(ValueError, match="no good"):
        doomed()
    run = the_run(client, failing)
    assert [s.name for s in run.states] == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Running",  # flow runs keep the name (Prefect renames only task runs)
        "Failed",
    ]
    assert "ValueError: no good" in run.state.message
    # The retry ran the task again under the same key: one task run with both attempts.
    assert task_states(client, run)["always-0"].count("Failed") == 2


def test_a_task_that_overruns_its_timeout_fails(client: runwire.Client) -> None:
    name = unique("slow")

    @runwire.task(timeout_seconds=0.3)
    def slow() -> None:
        time.sleep(3)

    @runwire.task(timeout_seconds=0.3)
    async def slow_async() -> None:
        await asyncio.sleep(3)

    @runwire.flow(name=name)
    def job() -> None:
        slow()

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timeout of 0\.3 s"):
        job()
    assert time.monotonic() - started < 2.5
    run = the_run(client, name)
    assert run.state.type is runwire.StateType.FAILED
    assert task_states(client, run)["slow-0"][-1] == "Failed"

    @runwire.flow(name=unique("slow-async"))
    async def async_job() -> None:
        await slow_async()

    with pytest.raises(TimeoutError):
        asyncio.run(async_job())


def test_a_cached_task_returns_its_result_until_the_cache_expires(client: runwire.Client) -> None:
    name = unique("cached")
    ran: list[int] = []

    @runwire.task(cache_key_fn=lambda p: f"{name}-{p['x']}", cache_expiration=timedelta(seconds=1))
    def costly(x: int) -> int:
        ran.append(x)
        return x * 100

    @runwire.flow(name=name)
    def job(x: int) -> int:
        return costly(x)

    assert job(1) == 100 and ran == [1]
    assert job(1) == 100 and ran == [1]  # from the cache
    run = the_run(client, name)
    assert task_states(client, run)["costly-0"] == ["Pending", "Cached"]
    time.sleep(1.2)
    assert job(1) == 100 and ran == [1, 1]  # expired: run again


def test_tag_limits_make_tasks_wait(client: runwire.Client) -> None:
    tag = unique("db")
    client.set_concurrency_limit(tag, 1)
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    @runwire.task(tags=[tag])
    def query(i: int) -> int:
        start = time.monotonic()
        time.sleep(0.3)
        with lock:
            spans.append((start, time.monotonic()))
        return i

    @runwire.flow(name=unique("limited"))
    def job() -> list[int]:
        futures = [query.submit(i) for i in range(2)]
        return [f.result() for f in futures]

    assert job() == [0, 1]
    first, second = sorted(spans)
    assert second[0] >= first[1]  # one slot: they never ran at once


def test_submit_and_map_record_their_edges(client: runwire.Client) -> None:
    name = unique("fan-out")

    @runwire.task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @runwire.task
    def square(x: int) -> int:
        return x * x

    @runwire.task
    def total(values: list[int]) -> int:
        return sum(values)

    @runwire.flow(name=name)
    def job() -> int:
        made = numbers.submit()
        squares = square.map(made.result())
        return total(squares)

    assert job() == 14
    run = the_run(client, name)
    graph = {node.name: node for node in client.get_flow_run_graph(run.flow_run_id)}
    children = client.list_task_runs(
        runwire.filters.task_runs(flow_run_ids=[run.flow_run_id], task_keys=["square"])
    )
    assert sorted(c.map_index for c in children) == [0, 1, 2]
    made_id = graph["numbers-0"].task_run_id
    for i in range(3):
        assert graph[f"square-{i}"].upstream == (made_id,)
    assert set(graph["total-0"].upstream) == {graph[f"square-{i}"].task_run_id for i in range(3)}


def test_a_flow_called_in_a_flow_is_a_subflow(client: runwire.Client) -> None:
    child_name, parent_name = unique("child"), unique("parent")

    @runwire.flow(name=child_name)
    def child(k: int) -> int:
        return k + 1

    @runwire.flow(name=parent_name)
    def parent() -> int:
        return child(1) + child(2)

    assert parent() == 5
    outer = the_run(client, parent_name)
    stand_ins = list(
        client.list_task_runs(runwire.filters.task_runs(flow_run_ids=[outer.flow_run_id]))
    )
    assert sorted(t.name for t in stand_ins) == [f"{child_name}-0", f"{child_name}-1"]
    inner = the_run(client, child_name)
    assert inner.raw.parent_task_run_id in {t.task_run_id for t in stand_ins}
    assert all(t.state.type is runwire.StateType.COMPLETED for t in stand_ins)


def test_results_inline_and_by_uri(
    client: runwire.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNWIRE_RESULTS_STORAGE", str(tmp_path / "results"))
    name = unique("results")

    @runwire.task
    def small() -> dict[str, int]:
        return {"rows": 3}

    @runwire.task
    def large() -> bytes:
        return b"x" * 200_000

    @runwire.flow(name=name)
    def job() -> int:
        return small()["rows"] + len(large())

    assert job() == 200_003
    run = the_run(client, name)
    tasks = {
        t.name: t
        for t in client.list_task_runs(runwire.filters.task_runs(flow_run_ids=[run.flow_run_id]))
    }
    inline = tasks["small-0"].state.result
    assert inline is not None and inline.inline_value is not None and inline.serializer == "json"
    assert tasks["small-0"].get_result() == {"rows": 3}
    stored = tasks["large-0"].state.result
    assert stored is not None and stored.location_uri is not None
    assert stored.location_uri.startswith((tmp_path / "results").resolve().as_uri())
    assert tasks["large-0"].get_result() == b"x" * 200_000


def test_async_flows_run_async_tasks(client: runwire.Client) -> None:
    name = unique("async")

    @runwire.task
    async def fetch(i: int) -> int:
        await asyncio.sleep(0.05)
        return i

    @runwire.flow(name=name)
    async def job() -> list[int]:
        return list(await asyncio.gather(*(fetch(i) for i in range(3))))

    assert asyncio.run(job()) == [0, 1, 2]
    run = the_run(client, name)
    assert run.state.type is runwire.StateType.COMPLETED
    assert len(task_states(client, run)) == 3


def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    # The thread runs in this context, so the flow uses the test's client.
    thread = threading.Thread(target=contextvars.copy_context().run, args=(work,))
    thread.start()
    return thread, outcome


def wait_for_state(
    client: runwire.Client, flow_name: str, state: runwire.StateType, within: float = 10
) -> runwire.FlowRunView:
    deadline = time.monotonic() + within
    while True:
        try:
            run = the_run(client, flow_name)
        except IndexError:
            run = None
        if run is not None and run.state.type is state:
            return run
        assert time.monotonic() < deadline, f"no run of {flow_name} became {state}"
        time.sleep(0.05)


def test_cancel_from_the_command_line_stops_a_running_flow(
    client: runwire.Client, sdk_server: ServerProcess
) -> None:
    name = unique("long")
    steps: list[int] = []

    @runwire.task
    def step(i: int) -> int:
        steps.append(i)
        time.sleep(0.1)
        return i

    @runwire.flow(name=name)
    def long_job() -> None:
        for i in range(200):
            step(i)

    thread, outcome = run_in_thread(long_job)
    run = wait_for_state(client, name, runwire.StateType.RUNNING)
    while len(steps) < 2:
        time.sleep(0.05)
    cancelled = subprocess.run(
        [str(RUNWIRE_CLI), "flow-run", "cancel", run.flow_run_id],
        env={**os.environ, "RUNWIRE_API_URL": f"127.0.0.1:{sdk_server.port}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cancelled.returncode == 0, cancelled.stderr
    thread.join(20)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), runwire.RunCancelled)
    assert len(steps) < 200
    final = the_run(client, name)
    assert [s.type for s in final.states][-2:] == [
        runwire.StateType.CANCELLING,
        runwire.StateType.CANCELLED,
    ]


def test_pause_and_resume_with_valid_and_invalid_input(client: runwire.Client) -> None:
    name = unique("approval")
    schema = {
        "type": "object",
        "properties": {"approved": {"type": "boolean"}},
        "required": ["approved"],
    }

    @runwire.flow(name=name)
    def needs_approval() -> Any:
        return runwire.pause_flow_run(timeout=60, wait_for_input=schema)

    thread, outcome = run_in_thread(needs_approval)
    paused = wait_for_state(client, name, runwire.StateType.PAUSED)
    refused = client.resume_flow_run(paused.flow_run_id, {"approved": "yes"})
    assert refused.status == "REJECT" and "is not of type 'boolean'" in refused.reason
    accepted = client.resume_flow_run(paused.flow_run_id, {"approved": True})
    assert accepted.status == "ACCEPT"
    thread.join(20)
    assert outcome == {"value": {"approved": True}}
    final = the_run(client, name)
    assert [s.name for s in final.states] == [
        "Pending",
        "Running",
        "Paused",
        "Running",
        "Completed",
    ]


KILLED_FLOW = """
import sys, time, runwire

@runwire.task
def tick(i):
    print("tick", i, flush=True)
    time.sleep(0.2)

@runwire.flow(name=sys.argv[2])
def forever():
    for i in range(10_000):
        tick(i)

with runwire.Client(sys.argv[1]):
    forever()
"""


def test_a_flow_killed_with_sigkill_becomes_crashed_within_its_lease(
    client: runwire.Client, sdk_server: ServerProcess
) -> None:
    name = unique("killed")
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_FLOW, f"127.0.0.1:{sdk_server.port}", name],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "RUNWIRE_HEARTBEAT_SECONDS": "0.3"},  # the shortest lease, 5 s
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("tick")
        time.sleep(6)  # alive past its lease: the heartbeats keep it running
        assert the_run(client, name).state.type is runwire.StateType.RUNNING
        process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
    finally:
        process.kill()
        process.wait()
    crashed = wait_for_state(client, name, runwire.StateType.CRASHED, within=20)
    # The lease (5 s) plus the reaper's interval (0.5 s), with a margin for a busy machine.
    assert time.monotonic() - killed < 5 + 0.5 + 3
    assert "stopped heartbeating" in crashed.state.message
    running_tasks = client.list_task_runs(
        runwire.filters.task_runs(flow_run_ids=[crashed.flow_run_id], states=["RUNNING"])
    )
    assert list(running_tasks) == []


def crashes_counted(metrics_port: int) -> float:
    """What a server's metric counts of the flow runs its reaper crashed."""
    key = ("runwire_leases_ended_total", (("run_kind", "flow_run"), ("state", "CRASHED")))
    return scrape(metrics_port).get(key, 0.0)


def test_two_postgresql_replicas_record_one_crash_of_a_killed_flow(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = os.environ.get("RUNWIRE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("RUNWIRE_TEST_POSTGRES_URL is not set")
    saved = dict(os.environ)
    with fresh_postgres_database(base) as url:
        metrics = [free_port(), free_port()]
        servers = []
        try:
            # A short default lease, which is also how long a reaper waits after its start.
            os.environ.update({"RUNWIRE_LEASE_SECONDS": "2", "RUNWIRE_LEASE_CHECK_SECONDS": "0.5"})
            for port in metrics:
                os.environ["RUNWIRE_METRICS_ADDRESS"] = f"127.0.0.1:{port}"
                servers.append(start_server_process(url, "--http-address", "off"))
                servers[-1].drain_output()
            os.environ.clear()
            os.environ.update(saved)
            first, second = servers
            name = unique("killed-on-replicas")
            process = subprocess.Popen(
                [sys.executable, "-c", KILLED_FLOW, f"127.0.0.1:{first.port}", name],
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "RUNWIRE_HEARTBEAT_SECONDS": "0.3"},  # a lease of 5 s
            )
            try:
                assert process.stdout is not None
                assert process.stdout.readline().startswith("tick")
                process.send_signal(signal.SIGKILL)
                killed = time.monotonic()
            finally:
                process.kill()
                process.wait()
            with runwire.Client(f"127.0.0.1:{second.port}", timeout=10) as client:
                crashed = wait_for_state(client, name, runwire.StateType.CRASHED, within=20)
                assert time.monotonic() - killed < 5 + 0.5 + 3
                time.sleep(2)  # time for a second crash, were both reapers to take the run
                states = [s.type for s in the_run(client, name).states]
            assert states.count(runwire.StateType.CRASHED) == 1, states
            assert states[-1] is runwire.StateType.CRASHED
            assert sum(crashes_counted(port) for port in metrics) == 1
            assert crashed.state.message.startswith("The process reporting this run")
        finally:
            os.environ.clear()
            os.environ.update(saved)
            for server in servers:
                server.stop()


def test_tasks_with_large_results_are_reported_in_batches_that_fit(
    client: runwire.Client,
) -> None:
    name = unique("large-results")

    @runwire.task
    def big(i: int) -> str:
        return str(i) * 60_000  # each result near the 64 KiB kept inline

    @runwire.flow(name=name)
    def job(n: int) -> int:
        return sum(len(big(i)) for i in range(n))

    assert job(150) > 4 * 1024 * 1024  # more than one request to the server may carry
    run = the_run(client, name)
    assert run.state.type is runwire.StateType.COMPLETED
    tasks = list(client.list_task_runs(runwire.filters.task_runs(flow_run_ids=[run.flow_run_id])))
    assert len(tasks) == 150
    assert {t.state.type for t in tasks} == {runwire.StateType.COMPLETED}
    assert tasks[0].get_result() == tasks[0].name.split("-")[1] * 60_000


def test_a_long_task_shows_as_running_while_it_runs(client: runwire.Client) -> None:
    name = unique("long-task")
    started = threading.Event()

    @runwire.task
    def quick() -> int:
        time.sleep(0.2)
        return 1

    @runwire.task
    def slow() -> int:
        started.set()
        time.sleep(3)
        return 2

    @runwire.flow(name=name)
    def job() -> int:
        return quick() + slow()

    thread, outcome = run_in_thread(job)
    run = wait_for_state(client, name, runwire.StateType.RUNNING)
    started.wait(10)
    # Reported open once it has run a second, the task is RUNNING on the server (with a
    # lease its flow's heartbeats renew) until it ends.
    deadline = time.monotonic() + 10
    while True:
        tasks = {
            t.name: t
            for t in client.list_task_runs(
                runwire.filters.task_runs(flow_run_ids=[run.flow_run_id])
            )
        }
        if "slow-0" in tasks and tasks["slow-0"].state.type is runwire.StateType.RUNNING:
            break
        assert time.monotonic() < deadline, tasks
        time.sleep(0.1)
    assert outcome == {} and tasks["quick-0"].state.type is runwire.StateType.COMPLETED
    thread.join(20)
    assert outcome.get("value") == 3
    finished = {
        t.name: t
        for t in client.list_task_runs(runwire.filters.task_runs(flow_run_ids=[run.flow_run_id]))
    }
    assert task_states(client, the_run(client, name)) == {
        "quick-0": ["Pending", "Running", "Completed"],
        "slow-0": ["Pending", "Running", "Completed"],
    }
    # The states were reported with the times they happened: each run lasted as its task.
    assert 0.2 <= finished["quick-0"].raw.total_run_time.ToTimedelta().total_seconds() < 1.5
    assert 3 <= finished["slow-0"].raw.total_run_time.ToTimedelta().total_seconds() < 5


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("example", "says"),
    [
        ("etl.py", "rows loaded: 5"),
        ("mapped_pipeline.py", "total: 395"),
        ("retrying_flow.py", "answered after 3 attempts"),
        ("paused_flow.py", "1.4.0 released by ada"),
    ],
)
def test_the_examples_run_as_written(sdk_server: ServerProcess, example: str, says: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        env={**os.environ, "RUNWIRE_API_URL": f"127.0.0.1:{sdk_server.port}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert says in done.stdout


def test_a_flow_retry_keeps_the_results_of_tasks_that_completed(client: runwire.Client) -> None:
    name = unique("resumed")
    ran: list[str] = []

    @runwire.task
    def first() -> list[int]:
        ran.append("first")
        return [1, 2]

    @runwire.task
    def second(values: list[int]) -> int:
        ran.append("second")
        if ran.count("second") == 1:
            raise RuntimeError("the first attempt fails here")
        return sum(values)

    @runwire.flow(name=name, retries=1)
    def job() -> int:
        return second(first())

    assert job() == 3
    assert ran == ["first", "second", "second"]  # first ran once: its result was kept
    run = the_run(client, name)
    assert task_states(client, run)["first-0"] == ["Pending", "Running", "Completed"]
