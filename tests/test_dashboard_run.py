"""The run page (`/runs/<id>`): the header, state history, task graph, task runs and logs of
one flow run, kept live by its watch stream while clients write; and the actions on it."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest

from runwire.v1 import flow_run_service_pb2, state_pb2, task_run_service_pb2
from tests.browser import Dashboard, find, page_errors, screenshot, texts, wait_until

S = state_pb2

# The colour family the page gives each state type (Cancelling is shown as cancelled).
TONE = {
    S.STATE_TYPE_UNSPECIFIED: "unknown",
    S.STATE_TYPE_SCHEDULED: "scheduled",
    S.STATE_TYPE_PENDING: "pending",
    S.STATE_TYPE_RUNNING: "running",
    S.STATE_TYPE_COMPLETED: "completed",
    S.STATE_TYPE_FAILED: "failed",
    S.STATE_TYPE_CANCELLED: "cancelled",
    S.STATE_TYPE_CRASHED: "crashed",
    S.STATE_TYPE_PAUSED: "paused",
    S.STATE_TYPE_CANCELLING: "cancelled",
}


def _by(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, css))


def _server_run(dashboard: Dashboard, run_id: str) -> Any:
    return dashboard.runs.GetFlowRun(
        flow_run_service_pb2.GetFlowRunRequest(flow_run_id=run_id)
    ).flow_run


def _node_states(driver: Any) -> dict[str, str]:
    return {
        node.get_attribute("data-task-id"): node.get_attribute("data-state")
        for node in _by(driver, "[data-testid=graph-node]")
    }


def _renders(driver: Any, css: str) -> int:
    return int(find(driver, css).get_attribute("data-renders"))


def _badge(driver: Any) -> str:
    return str(find(driver, "[data-testid=run-state]").get_attribute("data-state"))


def _diamond(dashboard: Dashboard, flow_name: str) -> tuple[Any, list[Any]]:
    flow = dashboard.flow(flow_name)
    run = dashboard.run(
        flow.id, f"{flow_name}-run", tags=("nightly", "etl"), parameters={"day": "2026-01-02"}
    )
    dashboard.set_state(run.id, S.STATE_TYPE_RUNNING)
    top = dashboard.task_run(run.id, "extract")
    left = dashboard.task_run(run.id, "clean", upstream=(top.id,))
    right = dashboard.task_run(run.id, "enrich", upstream=(top.id,))
    bottom = dashboard.task_run(run.id, "load", upstream=(left.id, right.id))
    dashboard.set_task_state(top.id, S.STATE_TYPE_RUNNING)
    dashboard.set_task_state(top.id, S.STATE_TYPE_COMPLETED)
    return run, [top, left, right, bottom]


def test_a_run_page_shows_the_run_and_follows_it_live(dashboard: Dashboard, browser: Any) -> None:
    from selenium.webdriver.support.ui import Select

    run, tasks = _diamond(dashboard, "diamond")
    dashboard.log(run.id, "extract finished", level=20, task_run_id=tasks[0].id)
    browser.get(f"{dashboard.url}/runs/{run.id}")

    assert find(browser, ".run-name").text == run.name
    wait_until(lambda: find(browser, "[data-testid=run-flow]").text == "diamond", "the flow name")
    assert _badge(browser) == "running"
    find(browser, "[data-testid=run-parameters] summary").click()
    assert '"day": "2026-01-02"' in find(browser, "[data-testid=run-parameters] pre").text
    assert texts(browser, ".tags .tag") == list(_server_run(dashboard, run.id).tags)

    states = dashboard.runs.ListFlowRunStates(
        flow_run_service_pb2.ListFlowRunStatesRequest(flow_run_id=run.id)
    ).states
    wait_until(
        lambda: len(_by(browser, "[data-testid=timeline-state]")) == len(states), "the timeline"
    )

    graph = dashboard.runs.GetFlowRunGraph(
        flow_run_service_pb2.GetFlowRunGraphRequest(flow_run_id=run.id)
    ).nodes
    expected = {node.id: TONE[node.state.type] for node in graph}
    assert set(expected) == {t.id for t in tasks}
    wait_until(lambda: _node_states(browser) == expected, "one graph node per task, by state")
    assert len(_by(browser, ".tg-edge")) == sum(len(n.upstream_dependencies) for n in graph)
    wait_until(lambda: len(_by(browser, "[data-testid=task-row]")) == len(tasks), "task rows")
    wait_until(lambda: "extract finished" in texts(browser, "[data-testid=log-line]")[0], "a log")

    # The running run's duration ticks each second; the logs and the graph do not re-render
    # with it (only when what they show changes).
    duration = find(browser, "[data-testid=run-duration]").text
    renders = (_renders(browser, ".logs"), _renders(browser, ".tg"))
    wait_until(
        lambda: find(browser, "[data-testid=run-duration]").text != duration, "the duration ticking"
    )
    time.sleep(1.5)
    assert (_renders(browser, ".logs"), _renders(browser, ".tg")) == renders

    # A node click picks the task in the table.
    find(browser, f'[data-testid=graph-node][data-task-id="{tasks[3].id}"]').click()
    wait_until(
        lambda: (
            find(browser, "[data-testid=task-row].selected").get_attribute("data-task-id")
            == tasks[3].id
        ),
        "the clicked task highlighted in the table",
    )

    # A task run's state written by a client recolours its node, without a reload.
    dashboard.set_task_state(tasks[1].id, S.STATE_TYPE_RUNNING)
    wait_until(lambda: _node_states(browser)[tasks[1].id] == "running", "the node recoloured")

    # A task run the page has never seen joins the graph and the table.
    extra = dashboard.task_run(run.id, "report", upstream=(tasks[3].id,))
    dashboard.set_task_state(extra.id, S.STATE_TYPE_PENDING)
    wait_until(lambda: extra.id in _node_states(browser), "the new task in the graph")
    wait_until(lambda: len(_by(browser, "[data-testid=task-row]")) == len(tasks) + 1, "its row")

    # Logs written after the page opened arrive; the level filter and search narrow them.
    dashboard.log(run.id, "row count looks low", level=30, task_run_id=tasks[1].id)
    dashboard.log(run.id, "cache probe", level=10)
    dashboard.log(run.id, "enrich failed to reach the API", level=40, task_run_id=tasks[2].id)
    wait_until(lambda: len(_by(browser, "[data-testid=log-line]")) == 4, "the new log lines")
    Select(find(browser, "[data-testid=log-level]")).select_by_value("30")
    wait_until(
        lambda: (
            {e.get_attribute("data-level") for e in _by(browser, "[data-testid=log-line]")}
            == {"WARNING", "ERROR"}
        ),
        "warning and up only",
    )
    search = find(browser, "[data-testid=log-search]")
    search.send_keys("api")
    wait_until(
        lambda: (
            texts(browser, "[data-testid=log-line] .log-msg") == ["enrich failed to reach the API"]
        ),
        "the search applied",
    )
    search.clear()
    search.send_keys("x")  # clear() sends no input event; a new value does
    Select(find(browser, "[data-testid=log-level]")).select_by_value("0")
    search.clear()
    search.send_keys("cache")
    wait_until(lambda: texts(browser, "[data-testid=log-line] .log-msg") == ["cache probe"], "x")

    # The run's own state changes: the badge follows; logs written after the run finished
    # (a worker flushing its last lines) still arrive.
    dashboard.set_state(run.id, S.STATE_TYPE_FAILED, message="load step raised")
    wait_until(lambda: _badge(browser) == "failed", "the badge to say failed")
    wait_until(
        lambda: find(browser, "[data-testid=live]").get_attribute("data-live") == "finished",
        "the page to say the run finished",
    )
    assert find(browser, "[data-testid=run-message]").text == "load step raised"
    search.clear()
    search.send_keys("trailing")
    dashboard.log(run.id, "trailing line after the end", level=20)
    wait_until(
        lambda: (
            texts(browser, "[data-testid=log-line] .log-msg") == ["trailing line after the end"]
        ),
        "a log written after the run finished",
    )
    assert page_errors(browser) == []


def test_cancel_then_retry_from_the_page(dashboard: Dashboard, browser: Any) -> None:
    from selenium.webdriver.common.keys import Keys

    run, _ = _diamond(dashboard, "cancellable")
    browser.get(f"{dashboard.url}/runs/{run.id}")
    wait_until(lambda: _badge(browser) == "running", "the run shown running")
    assert _by(browser, "[data-action=resume]") == [] and _by(browser, "[data-action=retry]") == []

    # Escape closes the dialog and nothing happens.
    find(browser, "[data-action=cancel]").click()
    dialog = find(browser, "dialog[open]")
    assert run.name in dialog.text
    dialog.send_keys(Keys.ESCAPE)
    wait_until(lambda: not _by(browser, "dialog[open]"), "the dialog closed by Escape")
    assert _server_run(dashboard, run.id).state.type == S.STATE_TYPE_RUNNING

    find(browser, "[data-action=cancel]").click()
    find(browser, "dialog[open] [data-testid=confirm]").click()
    wait_until(
        lambda: (
            _server_run(dashboard, run.id).state.type
            in (S.STATE_TYPE_CANCELLING, S.STATE_TYPE_CANCELLED)
        ),
        "the server's run cancelled",
    )
    wait_until(lambda: _badge(browser) == "cancelled", "the badge to say cancelled")

    find(browser, "[data-action=retry]").click()
    find(browser, "dialog[open] [data-testid=confirm]").click()
    wait_until(
        lambda: _server_run(dashboard, run.id).state.name == "AwaitingRetry", "a forced retry"
    )
    assert _server_run(dashboard, run.id).state.type == S.STATE_TYPE_SCHEDULED
    wait_until(lambda: _badge(browser) == "scheduled", "the badge to say scheduled")
    assert page_errors(browser) == []


def test_a_refused_action_says_why(dashboard: Dashboard, browser: Any) -> None:
    from google.protobuf import timestamp_pb2

    flow = dashboard.flow("refusing")
    run = dashboard.run(flow.id, "refusing-run")
    dashboard.set_state(run.id, S.STATE_TYPE_RUNNING)
    # A pause whose time to resume has already passed: orchestration refuses the resume.
    expired = timestamp_pb2.Timestamp()
    expired.FromSeconds(1)
    dashboard.runs.SetFlowRunState(
        flow_run_service_pb2.SetFlowRunStateRequest(
            flow_run_id=run.id,
            state=S.State(
                type=S.STATE_TYPE_PAUSED, state_details=S.StateDetails(pause_timeout=expired)
            ),
        )
    )
    browser.get(f"{dashboard.url}/runs/{run.id}")
    wait_until(lambda: _badge(browser) == "paused", "the run shown paused")
    find(browser, "[data-action=resume]").click()
    find(browser, "dialog[open] [data-testid=confirm]").click()
    outcome = find(browser, "dialog[open] [data-testid=outcome]")
    assert outcome.text.startswith("REJECT: ")
    states = dashboard.runs.ListFlowRunStates(
        flow_run_service_pb2.ListFlowRunStatesRequest(flow_run_id=run.id)
    ).states
    # The server wrote its replacement state; the page says which.
    assert states[-1].name in outcome.text
    wait_until(lambda: _badge(browser) == TONE[states[-1].type], "the badge to follow")
    assert page_errors(browser) == []


def test_delete_from_the_page(dashboard: Dashboard, browser: Any) -> None:
    flow = dashboard.flow("deletable")
    run = dashboard.run(flow.id, "doomed-run")
    browser.get(f"{dashboard.url}/runs/{run.id}")
    find(browser, "[data-action=delete]").click()
    find(browser, "dialog[open] [data-testid=confirm]").click()
    wait_until(lambda: browser.current_url.endswith("/runs"), "the runs page")
    with pytest.raises(grpc.RpcError) as gone:
        _server_run(dashboard, run.id)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert page_errors(browser) == []


def test_a_missing_run_says_not_found(dashboard: Dashboard, browser: Any) -> None:
    browser.get(f"{dashboard.url}/runs/0193a6b2-0000-7000-8000-000000000000")
    box = find(browser, "[data-testid=run-not-found]")
    assert "Run not found" in box.text
    assert find(browser, "[data-testid=run-not-found] a").get_attribute("href").endswith("/runs")
    # The 404 of GetFlowRun is the browser's own console line; the page itself threw nothing.
    assert [e for e in page_errors(browser) if "GetFlowRun" not in e] == []


def test_screenshot_of_a_realistic_run(dashboard: Dashboard, browser: Any) -> None:
    flow = dashboard.flow("nightly-warehouse-sync")
    run = dashboard.run(
        flow.id,
        "crimson-pelican",
        tags=("prod", "warehouse", "nightly"),
        parameters={"date": "2026-03-14", "tables": ["orders", "customers"], "full_refresh": False},
    )
    dashboard.set_state(run.id, S.STATE_TYPE_RUNNING)
    spec = [
        ("fetch_config", (), S.STATE_TYPE_COMPLETED),
        ("extract_orders", ("fetch_config",), S.STATE_TYPE_COMPLETED),
        ("extract_customers", ("fetch_config",), S.STATE_TYPE_COMPLETED),
        ("extract_inventory", ("fetch_config",), S.STATE_TYPE_FAILED),
        ("validate_orders", ("extract_orders",), S.STATE_TYPE_COMPLETED),
        ("dedupe_customers", ("extract_customers",), S.STATE_TYPE_RUNNING),
        ("join_orders_customers", ("validate_orders", "dedupe_customers"), S.STATE_TYPE_PENDING),
        ("stock_levels", ("extract_inventory",), S.STATE_TYPE_PENDING),
        ("revenue_rollup", ("join_orders_customers",), S.STATE_TYPE_PENDING),
        ("load_warehouse", ("revenue_rollup", "stock_levels"), S.STATE_TYPE_PENDING),
        ("refresh_dashboards", ("load_warehouse",), S.STATE_TYPE_PENDING),
        ("notify_slack", ("load_warehouse",), S.STATE_TYPE_PENDING),
    ]
    ids: dict[str, str] = {}
    for key, upstream, state in spec:
        task = dashboard.task_run(run.id, key, upstream=tuple(ids[u] for u in upstream))
        ids[key] = task.id
        if state in (S.STATE_TYPE_COMPLETED, S.STATE_TYPE_FAILED, S.STATE_TYPE_RUNNING):
            dashboard.set_task_state(task.id, S.STATE_TYPE_RUNNING)
        if state != S.STATE_TYPE_RUNNING:
            dashboard.task_runs.SetTaskRunState(
                task_run_service_pb2.SetTaskRunStateRequest(
                    task_run_id=task.id, state=S.State(type=state), force=True
                )
            )
    lines = [
        (20, "Loaded config from s3://acme-config/warehouse.yaml", "fetch_config"),
        (20, "Extracting orders since 2026-03-13T00:00:00Z", "extract_orders"),
        (10, "Query plan: index scan on orders_created_at_idx", "extract_orders"),
        (20, "Extracted 48,213 orders", "extract_orders"),
        (20, "Extracted 9,880 customers", "extract_customers"),
        (30, "Inventory API answered 503; retrying in 5 s", "extract_inventory"),
        (40, "Inventory API unreachable after 3 attempts", "extract_inventory"),
        (20, "Validated 48,213 orders: 0 rejected", "validate_orders"),
        (20, "Deduplicating customers on email + phone", "dedupe_customers"),
        (30, "412 customers share an email with another record", "dedupe_customers"),
    ]
    for level, message, key in lines:
        dashboard.log(run.id, message, level=level, task_run_id=ids[key])
    dashboard.log(run.id, "Flow run started by worker prod-pool/worker-3", level=20)
    browser.set_window_size(1440, 1500)
    browser.get(f"{dashboard.url}/runs/{run.id}")
    wait_until(lambda: len(_by(browser, "[data-testid=graph-node]")) == len(spec), "the graph")
    wait_until(lambda: len(_by(browser, "[data-testid=log-line]")) == len(lines) + 1, "logs")
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    screenshot(browser, "run-dark")
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "light"}]},
    )
    screenshot(browser, "run")
    assert page_errors(browser) == []


def test_a_big_graph_is_laid_out_off_the_page_thread(dashboard: Dashboard, browser: Any) -> None:
    flow = dashboard.flow("wide")
    run = dashboard.run(flow.id, "wide-run")
    dashboard.set_state(run.id, S.STATE_TYPE_RUNNING)
    root = dashboard.task_run(run.id, "split")
    mapped = [dashboard.task_run(run.id, f"part_{i}", upstream=(root.id,)) for i in range(150)]
    dashboard.task_run(run.id, "merge", upstream=tuple(t.id for t in mapped))
    browser.get(f"{dashboard.url}/runs/{run.id}")
    wait_until(
        lambda: len(_by(browser, "[data-testid=graph-node]")) == len(mapped) + 2, "the graph"
    )
    assert len(_by(browser, ".tg-edge")) == 2 * len(mapped)
    # A graph this big is laid out by the worker, not on the page's thread.
    assert find(browser, "[data-testid=graph]").get_attribute("data-layout") == "worker"
    dashboard.set_task_state(mapped[-1].id, S.STATE_TYPE_RUNNING)
    wait_until(lambda: _node_states(browser)[mapped[-1].id] == "running", "a node recoloured")
    assert page_errors(browser) == []


def test_going_from_one_run_to_another_shows_only_the_second(
    dashboard: Dashboard, browser: Any
) -> None:
    first, first_tasks = _diamond(dashboard, "first-of-two")
    dashboard.log(first.id, "a line of the first run", level=20)
    flow = dashboard.flow("second-of-two")
    second = dashboard.run(flow.id, "second-of-two-run")
    lone = dashboard.task_run(second.id, "only-task")
    dashboard.log(second.id, "a line of the second run", level=20)

    def shows(run: Any, tasks: list[Any], line: str) -> None:
        wait_until(lambda: find(browser, ".run-name").text == run.name, f"{run.name}'s name")
        wait_until(
            lambda: texts(browser, "[data-testid=log-line] .log-msg") == [line],
            f"{run.name}'s logs",
        )
        want = {t.id for t in tasks}
        wait_until(
            lambda: (
                {e.get_attribute("data-task-id") for e in _by(browser, "[data-testid=task-row]")}
                == want
            ),
            f"{run.name}'s task runs",
        )
        wait_until(lambda: set(_node_states(browser)) == want, f"{run.name}'s graph")
        assert (
            find(browser, "[data-testid=run-flow]")
            .get_attribute("href")
            .endswith(f"/flows/{run.flow_id}")
        )

    browser.get(f"{dashboard.url}/runs/{first.id}")
    shows(first, first_tasks, "a line of the first run")
    # Within the app (the router keeps the page's component when only the id changes).
    browser.execute_script(
        "history.pushState(null, '', arguments[0]); dispatchEvent(new PopStateEvent('popstate'))",
        f"/runs/{second.id}",
    )
    shows(second, [lone], "a line of the second run")
    browser.back()
    shows(first, first_tasks, "a line of the first run")
    assert page_errors(browser) == []
