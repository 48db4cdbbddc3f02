"""The server is killed with SIGKILL again and again while clients create runs, change states
and write logs; every write a client saw acknowledged is there afterwards, and the database
passes its integrity check.

The server is killed 3 times, or 20 with `pytest --long` (RUNWIRE_CRASH_restarts overrides).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runwire import Client, RunwireError, StateType, proposed_state
from tests.conftest import Sizes, free_port, start_server_process
from tests.integrity import integrity_problems, stored_ids

WRITERS = 6


@dataclass
class Acknowledged:
    runs: set[str] = field(default_factory=set)
    states: set[str] = field(default_factory=set)
    logs: dict[str, int] = field(default_factory=dict)  # run id -> acknowledged log count
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def writer(address: str, flow_id: str, acked: Acknowledged, stop: threading.Event) -> None:
    # No retries: an answer is an acknowledgement, and a failure is only counted.
    with Client(address, timeout=3, retries=0) as client:
        while not stop.is_set():
            try:
                run = client.create_flow_run(flow_id)
                with acked.lock:
                    acked.runs.add(run.flow_run_id)
                for state_type in (StateType.PENDING, StateType.RUNNING, StateType.COMPLETED):
                    result = client.set_flow_run_state(run.flow_run_id, proposed_state(state_type))
                    if result.written and result.state is not None:
                        with acked.lock:
                            acked.states.add(result.state.id)
                    if state_type is StateType.RUNNING:
                        client.write_logs(run.flow_run_id, (20, "one"), (20, "two"))
                        with acked.lock:
                            acked.logs[run.flow_run_id] = 2
            except RunwireError:
                with acked.lock:
                    acked.failures += 1
                time.sleep(0.05)


def test_acknowledged_writes_survive_sigkill(
    tmp_path: Path, database_overrides: dict[str, Any], sizes: Sizes
):
    restarts = sizes.crash_restarts
    url = database_overrides.get("database_url") or f"sqlite:///{tmp_path / 'crash.db'}"
    address = f"127.0.0.1:{free_port()}"
    server = start_server_process(url, address=address)
    server.drain_output()
    with Client(address, timeout=10) as client:
        flow_id = client.create_flow(f"crash-{time.monotonic_ns()}").flow_id
    acked, stop = Acknowledged(), threading.Event()
    threads = [
        threading.Thread(target=writer, args=(address, flow_id, acked, stop))
        for _ in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in range(restarts):
            time.sleep(random.uniform(0.5, 2.0))
            server.process.kill()
            server.process.wait(timeout=30)
            server = start_server_process(url, address=address)
            server.drain_output()
        time.sleep(1.0)  # let writes land on the last server before stopping
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.process.kill()
        server.process.wait(timeout=30)

    runs, states, logs = stored_ids(url)
    lost_runs = acked.runs - runs
    lost_states = acked.states - states
    lost_logs = {r: n for r, n in acked.logs.items() if logs.get(r, 0) < n}
    print(
        f"crash: {restarts} kills; acknowledged {len(acked.runs)} runs, {len(acked.states)} "
        f"states, {sum(acked.logs.values())} logs; {acked.failures} calls failed during kills"
    )
    assert acked.runs and acked.states, "no write was acknowledged at all"
    assert lost_runs == set()
    assert lost_states == set()
    assert lost_logs == {}
    assert integrity_problems(url) == []
