"""The dashboard's catalog pages in a browser: flows, a flow, deployments, concurrency limits,
and signing in on a server with tokens."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from runwire.v1 import (
    concurrency_limit_service_pb2,
    concurrency_limit_service_pb2_grpc,
    deployment_pb2,
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    flow_pb2,
    flow_run_pb2,
    flow_run_service_pb2,
    flow_service_pb2,
    state_pb2,
    task_run_pb2,
    task_run_service_pb2,
)
from tests.browser import (
    WRITE_TOKEN,
    Dashboard,
    find,
    page_errors,
    screenshot,
    start_dashboard,
    texts,
    wait_until,
)

S = state_pb2


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def advance(dashboard: Dashboard, run_id: str, *states: int) -> None:
    """Moves a run through states as a worker would, each step accepted by the server."""
    for state in states:
        result = dashboard.set_state(run_id, state).result
        assert result.state.type == state, (state, result)


def deploy(
    dashboard: Dashboard, flow_id: str, name: str, **fields: Any
) -> deployment_pb2.Deployment:
    stub = deployment_service_pb2_grpc.DeploymentServiceStub(dashboard.channel)
    response = stub.CreateDeployment(
        deployment_service_pb2.CreateDeploymentRequest(
            deployment=deployment_pb2.Deployment(name=name, flow_id=flow_id, **fields)
        ),
        metadata=(("authorization", f"Bearer {dashboard.token}"),) if dashboard.token else (),
    )
    return response.deployment


def deployment_run(dashboard: Dashboard, flow_id: str, deployment_id: str, name: str) -> str:
    response = dashboard.runs.CreateFlowRun(
        flow_run_service_pb2.CreateFlowRunRequest(
            flow_run=flow_run_pb2.FlowRun(flow_id=flow_id, deployment_id=deployment_id, name=name)
        )
    )
    return str(response.flow_run.id)


def attrs(driver: Any, css: str, name: str) -> set[str]:
    return {e.get_attribute(name) for e in driver.find_elements(By.CSS_SELECTOR, css)}


def slots_shown(driver: Any, row_css: str) -> str:
    return str(find(driver, f"{row_css} .meter").get_attribute("data-slots"))


def no_errors(driver: Any) -> None:
    assert page_errors(driver) == []


def test_flows_list_and_search(dashboard: Dashboard, browser: Any) -> None:
    stem = unique("orders")
    names = [f"{stem}-extract", f"{stem}-load", unique("billing-rollup")]
    flows = [dashboard.flow(name) for name in names]
    for flow in flows[:2]:
        advance(
            dashboard,
            dashboard.run(flow.id, unique("run")).id,
            S.STATE_TYPE_PENDING,
            S.STATE_TYPE_RUNNING,
        )
    failed = dashboard.run(flows[0].id, unique("run")).id
    advance(dashboard, failed, S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING, S.STATE_TYPE_FAILED)

    browser.get(dashboard.url + "/flows")
    assert find(browser, "h1").text == "Flows"
    wait_until(
        lambda: set(names) <= set(texts(browser, "table.grid td a.name")), "every flow listed"
    )
    # The flow's row links to its page and shows its last run once it is on screen.
    link = find(browser, f'tr[data-flow="{flows[0].id}"] a.name')
    assert link.get_attribute("href").endswith(f"/flows/{flows[0].id}")
    wait_until(
        lambda: (
            find(browser, f'tr[data-flow="{flows[0].id}"] .badge').get_attribute("data-state")
            == "failed"
        ),
        "the last run's state",
    )
    bad = find(browser, f'tr[data-flow="{flows[0].id}"] a.bad')
    assert bad.text == "1"
    assert "state=failed,crashed" in bad.get_attribute("href")

    # `/` focuses the search box; typing narrows the list by name and keeps it in the URL.
    browser.find_element(By.TAG_NAME, "body").send_keys("/")
    search = browser.switch_to.active_element
    assert search.get_attribute("data-search") is not None
    search.send_keys(stem)
    wait_until(
        lambda: sorted(texts(browser, "table.grid td a.name")) == sorted(names[:2]),
        "the list narrowed to the search",
    )
    assert f"q={stem}" in browser.current_url
    search.send_keys(Keys.CONTROL, "a")
    search.send_keys("no-such-flow-" + stem)
    find(browser, "p.empty")
    no_errors(browser)


def test_a_flow_shows_its_runs_and_deployments(dashboard: Dashboard, browser: Any) -> None:
    flow = dashboard.flow(unique("nightly-report"))
    runs = [dashboard.run(flow.id, unique("report")) for _ in range(3)]
    advance(
        dashboard, runs[0].id, S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING, S.STATE_TYPE_COMPLETED
    )
    advance(dashboard, runs[1].id, S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING)
    deployment = deploy(dashboard, flow.id, "nightly", work_pool_name="k8s", concurrency_limit=3)

    browser.get(f"{dashboard.url}/flows/{flow.id}")
    assert find(browser, "h1").text == flow.name
    assert flow.id in find(browser, "dl.meta").text
    wait_until(
        lambda: {r.id for r in runs} <= attrs(browser, "tr[data-run]", "data-run"),
        "the flow's runs",
    )
    run_link = find(browser, f'tr[data-run="{runs[0].id}"] a.name')
    assert run_link.get_attribute("href").endswith(f"/runs/{runs[0].id}")
    states = find(browser, f'tr[data-run="{runs[0].id}"] .badge').get_attribute("data-state")
    assert states == "completed"
    all_runs = find(browser, '[data-testid="all-runs"]')
    assert all_runs.get_attribute("href").endswith(f"/runs?flow={flow.id}")
    row = find(browser, f'tr[data-deployment="{deployment.id}"]')
    assert "nightly" in row.text
    no_errors(browser)

    browser.get(f"{dashboard.url}/flows/{uuid.uuid4()}")
    assert find(browser, "h1").text == "Flow not found"


def test_deployments_show_slots_in_use(dashboard: Dashboard, browser: Any) -> None:
    flow = dashboard.flow(unique("ingest-events"))
    limited = deploy(
        dashboard,
        flow.id,
        unique("ingest-prod"),
        work_pool_name="docker-pool",
        work_queue_name="critical",
        tags=["prod"],
        concurrency_limit=5,
        collision_strategy=deployment_pb2.COLLISION_STRATEGY_CANCEL_NEW,
    )
    free = deploy(dashboard, flow.id, unique("ingest-dev"), paused=True)
    running = 2
    for _ in range(running):
        run_id = deployment_run(dashboard, flow.id, limited.id, unique("ingest"))
        advance(dashboard, run_id, S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING)
    # A run that has finished gives its slot back.
    done = deployment_run(dashboard, flow.id, limited.id, unique("ingest"))
    advance(dashboard, done, S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING, S.STATE_TYPE_COMPLETED)

    browser.get(dashboard.url + "/deployments")
    assert find(browser, "h1").text == "Deployments"
    row = find(browser, f'tr[data-deployment="{limited.id}"]')
    wait_until(
        lambda: slots_shown(browser, f'tr[data-deployment="{limited.id}"]') == f"{running} / 5",
        "the limited deployment's slots in use",
    )
    assert f"{running} / 5" in row.text
    assert "Cancel new" in row.text and "docker-pool" in row.text and flow.name in row.text
    runs_link = row.find_element(By.LINK_TEXT, "Runs →")
    assert runs_link.get_attribute("href").endswith(f"/runs?deployment={limited.id}")
    other = find(browser, f'tr[data-deployment="{free.id}"]')
    assert "Paused" in other.text
    assert other.find_element(By.CSS_SELECTOR, "td.slots").text == "—"

    search = find(browser, "[data-search]")
    search.send_keys(limited.name)
    wait_until(
        lambda: texts(browser, "tr[data-deployment] .name") == [limited.name],
        "the list narrowed to the search",
    )
    no_errors(browser)


def test_concurrency_limits_show_active_slots(dashboard: Dashboard, browser: Any) -> None:
    tag = unique("gpu")
    limits = concurrency_limit_service_pb2_grpc.ConcurrencyLimitServiceStub(dashboard.channel)
    limits.CreateConcurrencyLimit(
        concurrency_limit_service_pb2.CreateConcurrencyLimitRequest(tag=tag, concurrency_limit=4)
    )
    flow = dashboard.flow(unique("train-model"))
    run = dashboard.run(flow.id, unique("train"))
    advance(dashboard, run.id, S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING)
    holding = []
    for key in ("fit", "evaluate"):
        task = dashboard.task_runs.CreateTaskRun(
            task_run_service_pb2.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(
                    flow_run_id=run.id, task_key=key, name=key, dynamic_key="0", tags=[tag]
                )
            )
        ).task_run
        for state in (S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING):
            dashboard.set_task_state(task.id, state)
        holding.append(task.id)

    browser.get(dashboard.url + "/concurrency-limits")
    assert find(browser, "h1").text == "Concurrency limits"
    row = find(browser, f'tr[data-limit="{tag}"]')
    wait_until(
        lambda: slots_shown(browser, f'tr[data-limit="{tag}"]') == f"{len(holding)} / 4",
        "the limit's slots in use",
    )
    expander = row.find_element(By.CSS_SELECTOR, "button.expander")
    assert expander.get_attribute("aria-expanded") == "false"
    expander.click()
    wait_until(
        lambda: set(holding) <= attrs(browser, "[data-slot]", "data-slot"),
        "the task runs holding the slots",
    )
    find(browser, f'[data-slot="{holding[0]}"] a[href="/runs/{run.id}"]')
    assert expander.get_attribute("aria-expanded") == "true"
    no_errors(browser)


def signed_out_errors(driver: Any) -> list[str]:
    """Console errors other than the refused calls expected while no good token is kept."""
    return [e for e in page_errors(driver) if "401" not in e]


def test_sign_in_on_a_server_with_tokens(guarded_dashboard: Dashboard, browser: Any) -> None:
    flow = guarded_dashboard.flow(unique("guarded-flow"))
    browser.get(guarded_dashboard.url + "/flows")
    token = find(browser, "#token")
    assert token.get_attribute("type") == "password"
    assert find(browser, "label[for=token]").text == "Token"
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=signin-error]") == []

    token.send_keys("rwt_not_a_token")
    token.send_keys(Keys.ENTER)
    refused = find(browser, "[data-testid=signin-error]")
    assert "That token was not accepted" in refused.text
    assert "not valid" in refused.text  # the server's own words
    assert browser.execute_script("return sessionStorage.getItem('runwire.token')") is None

    token = find(browser, "#token")
    token.clear()
    token.send_keys(WRITE_TOKEN)
    find(browser, "button[type=submit]").click()
    # The page asked for, with its data.
    wait_until(lambda: flow.name in texts(browser, "table.grid td a.name"), "the flows page")
    assert browser.current_url.endswith("/flows")
    assert browser.execute_script("return sessionStorage.getItem('runwire.token')") == WRITE_TOKEN
    assert browser.execute_script("return localStorage.length") == 0
    assert WRITE_TOKEN not in browser.execute_script("return document.cookie")
    assert WRITE_TOKEN not in browser.current_url

    browser.refresh()
    wait_until(lambda: flow.name in texts(browser, "table.grid td a.name"), "still signed in")
    assert browser.find_elements(By.CSS_SELECTOR, "#token") == []

    find(browser, "header.top button.link").click()
    find(browser, "#token")
    assert browser.execute_script("return sessionStorage.getItem('runwire.token')") is None
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=signin-error]") == []

    # A token kept in the tab that the server stops accepting (revoked, expired) brings the
    # form back saying so, unlike a first visit.
    browser.execute_script("sessionStorage.setItem('runwire.token', 'rwt_revoked_since')")
    browser.refresh()
    assert "no longer accepted" in find(browser, "[data-testid=signin-error]").text
    assert signed_out_errors(browser) == []


@pytest.mark.parametrize("page", ["/flows", "/deployments", "/concurrency-limits"])
def test_the_pages_show_empty_or_filled_without_errors(
    dashboard: Dashboard, browser: Any, page: str
) -> None:
    browser.get(dashboard.url + page)
    find(browser, "h1")
    wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, "table.grid, p.empty"),
        "the table or the empty state",
    )
    no_errors(browser)


# --- the pictures: a server of its own, with data as a team's would look ---------------------


@pytest.fixture(scope="module")
def showcase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    server = start_dashboard(tmp_path_factory.mktemp("showcase"))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        board = Dashboard(server, channel)
        seed(board)
        yield board
    assert server.stop() == 0


FINISHES = (
    S.STATE_TYPE_COMPLETED,
    S.STATE_TYPE_COMPLETED,
    S.STATE_TYPE_FAILED,
    S.STATE_TYPE_COMPLETED,
    S.STATE_TYPE_CRASHED,
    S.STATE_TYPE_COMPLETED,
)


def seed(board: Dashboard) -> None:
    flows = {
        "etl-orders-daily": ("etl", "finance"),
        "ml-train-recommender": ("ml", "gpu"),
        "billing-invoice-rollup": ("finance",),
        "sync-crm-contacts": ("sync",),
        "report-weekly-kpis": (),
        "ingest-clickstream": ("streaming", "prod"),
    }
    made = {}
    for index, (name, tags) in enumerate(flows.items()):
        flow = board.flows.CreateFlow(
            flow_service_pb2.CreateFlowRequest(flow=flow_pb2.Flow(name=name, tags=list(tags)))
        ).flow
        made[name] = flow
        for number in range(index % 4 + 3):
            run = board.run(flow.id, f"{name.split('-')[1]}-{number + 1:03d}", tags=tags)
            finish = FINISHES[(index + number) % len(FINISHES)]
            steps = [S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING]
            if number < 2 or index % 3:
                steps.append(finish)
            advance(board, run.id, *steps)
    orders = made["etl-orders-daily"].id
    prod = deploy(
        board,
        orders,
        "orders-prod",
        work_pool_name="k8s-prod",
        work_queue_name="critical",
        tags=["prod"],
        concurrency_limit=3,
    )
    for number in range(2):
        advance(
            board,
            deployment_run(board, orders, prod.id, f"orders-prod-{number + 1:03d}"),
            S.STATE_TYPE_PENDING,
            S.STATE_TYPE_RUNNING,
        )
    deploy(board, orders, "orders-backfill", work_pool_name="k8s-batch", paused=True)
    clicks = made["ingest-clickstream"].id
    stream = deploy(
        board,
        clicks,
        "clickstream-hourly",
        work_pool_name="docker-edge",
        concurrency_limit=1,
        collision_strategy=deployment_pb2.COLLISION_STRATEGY_CANCEL_NEW,
    )
    advance(
        board,
        deployment_run(board, clicks, stream.id, "clickstream-0900"),
        S.STATE_TYPE_PENDING,
        S.STATE_TYPE_RUNNING,
    )
    deploy(board, made["ml-train-recommender"].id, "recommender-weekly", work_pool_name="gpu-a100")

    limits = concurrency_limit_service_pb2_grpc.ConcurrencyLimitServiceStub(board.channel)
    for tag, limit in (("gpu", 4), ("warehouse-writes", 2), ("external-api", 10)):
        limits.CreateConcurrencyLimit(
            concurrency_limit_service_pb2.CreateConcurrencyLimitRequest(
                tag=tag, concurrency_limit=limit
            )
        )
    trainer = board.run(made["ml-train-recommender"].id, "train-nightly", tags=("ml",))
    advance(board, trainer.id, S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING)
    for key, tag in (
        ("fit-shard-0", "gpu"),
        ("fit-shard-1", "gpu"),
        ("load-orders", "warehouse-writes"),
        ("load-items", "warehouse-writes"),
    ):
        task = board.task_runs.CreateTaskRun(
            task_run_service_pb2.CreateTaskRunRequest(
                task_run=task_run_pb2.TaskRun(
                    flow_run_id=trainer.id, task_key=key, name=key, dynamic_key="0", tags=[tag]
                )
            )
        ).task_run
        for state in (S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING):
            board.set_task_state(task.id, state)


def dark(driver: Any, on: bool) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark" if on else "light"}]},
    )


def test_screenshots(showcase: Dashboard, browser: Any) -> None:
    orders = showcase.flows.GetFlowByName(
        flow_service_pb2.GetFlowByNameRequest(name="etl-orders-daily")
    ).flow

    def settled() -> bool:
        return not [e for e in texts(browser, "main td") if e in ("…", "… / 3")]

    pages = {
        "flows": "/flows",
        "flow": f"/flows/{orders.id}",
        "deployments": "/deployments",
        "concurrency-limits": "/concurrency-limits",
    }
    for name, path in pages.items():
        for scheme in (False, True):
            dark(browser, scheme)
            browser.get(showcase.url + path)
            find(browser, "table.grid")
            wait_until(settled, f"the {name} page's figures")
            if name == "concurrency-limits":
                find(browser, 'tr[data-limit="gpu"] button.expander').click()
                find(browser, "[data-slot] a")
            screenshot(browser, f"{name}-dark" if scheme else name)
    no_errors(browser)


def test_sign_in_screenshot(guarded_dashboard: Dashboard, browser: Any) -> None:
    browser.get(guarded_dashboard.url + "/flows")
    token = find(browser, "#token")
    token.send_keys("rwt_expired_or_wrong")
    token.send_keys(Keys.ENTER)
    find(browser, "[data-testid=signin-error]")
    screenshot(browser, "sign-in")
    dark(browser, True)
    screenshot(browser, "sign-in-dark")
    assert signed_out_errors(browser) == []
