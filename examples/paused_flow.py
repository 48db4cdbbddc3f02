"""A flow that pauses for a person's approval and goes on with what they answered.

The flow pauses with the JSON Schema of the input it waits for; the server resumes it only with
input that matches (`client.resume_flow_run(run_id, {"approved": True})`, or the dashboard).
Here a thread plays the person, so that the example runs on its own.

    uv run python examples/paused_flow.py
"""

import threading
import time

import runwire

APPROVAL = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "by": {"type": "string"}},
    "required": ["approved"],
}


@runwire.flow
def release(version: str = "1.4.0") -> str:
    answer = runwire.pause_flow_run(timeout=600, wait_for_input=APPROVAL)
    assert isinstance(answer, dict)
    return f"{version} {'released' if answer['approved'] else 'held'} by {answer.get('by', '?')}"


def approve_when_paused(client: runwire.Client) -> None:
    flow = client.create_flow("release")
    while True:
        paused = list(
            client.list_flow_runs(
                runwire.filters.flow_runs(flow_ids=[flow.flow_id], states=["PAUSED"])
            )
        )
        if paused:
            refused = client.resume_flow_run(paused[0].flow_run_id, {"approved": "yes"})
            print("refused:", refused.reason)
            client.resume_flow_run(paused[0].flow_run_id, {"approved": True, "by": "ada"})
            return
        time.sleep(0.2)


if __name__ == "__main__":
    with runwire.Client() as client:
        threading.Thread(target=approve_when_paused, args=(client,), daemon=True).start()
        print(release())
