"""The reference guide's tour against Runwire: view a run, its state, logs, flow and task runs.

Start a server (`uv run runwire server start`), then: `uv run python examples/tour.py`.
"""

from __future__ import annotations

import logging

import runwire
from runwire import Client, FlowRunView, StateType, proposed_state


def main() -> None:
    with Client() as client:  # RUNWIRE_API_URL, or 127.0.0.1:50051
        flow = client.create_flow("hello-flow")
        run = client.create_flow_run(flow.flow_id, parameters={"name": "Marvin"})
        client.set_flow_run_state(run.flow_run_id, proposed_state(StateType.RUNNING))
        client.write_logs(run.flow_run_id, (logging.INFO, "Hello, Marvin!"))
        client.set_flow_run_state(
            run.flow_run_id, proposed_state(StateType.COMPLETED, message="All done.")
        )

        view = FlowRunView.from_flow_run_id(run.flow_run_id, client=client)
        print(view.name, view.state)  # e.g. clever-otter <Completed: 'All done.'>
        print([state.name for state in view.states])  # ['Pending', 'Running', 'Completed']
        for entry in view.get_logs():
            print(entry.timestamp, entry.level_name, entry.message)
        print(view.get_flow_metadata().name)  # hello-flow
        print(view.get_all_task_runs())  # [] for this flow
        for line in runwire.watch_flow_run(run.flow_run_id, client=client):
            print(line.message)  # Your flow run finished ... ago


if __name__ == "__main__":
    main()
