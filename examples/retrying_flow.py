"""Retries the server decides: a task that fails twice waits 0.5 s, then 1 s (exponential
backoff), and succeeds on its third attempt; its task run's states show AwaitingRetry and
Retrying between them.

    uv run python examples/retrying_flow.py
"""

import runwire

attempts = 0


@runwire.task(retries=3, retry_delay_seconds=runwire.exponential_backoff(0.5))
def call_the_api() -> str:
    global attempts
    attempts += 1
    if attempts < 3:
        raise ConnectionError(f"attempt {attempts}: the API is not answering")
    return "answered"


@runwire.flow(retries=1)
def fetch() -> str:
    return call_the_api()


if __name__ == "__main__":
    print(fetch(), "after", attempts, "attempts")
