"""The runs page, the dashboard's front page: a live, filterable, virtual list of flow runs
with counts per state and a history chart, driven in Chromium against a real server."""

from __future__ import annotations

import random
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from runwire.v1 import filters_pb2, flow_run_pb2, flow_run_service_pb2, state_pb2
from tests.browser import Dashboard, find, page_errors, screenshot, texts, wait_until

S = state_pb2
ROWS = "[data-testid=run-row]"


@dataclass
class Seeded:
    flow_ids: dict[str, str]
    run_ids: list[str]
    failed_ids: set[str]


def _advance(dashboard: Dashboard, run_id: str, final: int) -> None:
    """Takes a run through its life as a worker would, to `final`."""
    path = {
        S.STATE_TYPE_PENDING: [S.STATE_TYPE_PENDING],
        S.STATE_TYPE_RUNNING: [S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING],
        S.STATE_TYPE_COMPLETED: [
            S.STATE_TYPE_PENDING,
            S.STATE_TYPE_RUNNING,
            S.STATE_TYPE_COMPLETED,
        ],
        S.STATE_TYPE_FAILED: [S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING, S.STATE_TYPE_FAILED],
        S.STATE_TYPE_CRASHED: [S.STATE_TYPE_PENDING, S.STATE_TYPE_RUNNING, S.STATE_TYPE_CRASHED],
        S.STATE_TYPE_CANCELLED: [S.STATE_TYPE_CANCELLED],
    }[final]
    for state in path:
        dashboard.set_state(run_id, state)


@pytest.fixture(scope="module")
def seeded(dashboard: Dashboard) -> Seeded:
    """A few flows and some forty runs in mixed states with tags, as a small team's day has."""
    rng = random.Random(7)
    flows = {
        name: dashboard.flow(name).id
        for name in ("etl-nightly", "train-ranker", "report-daily", "sync-crm")
    }
    finals = (
        [S.STATE_TYPE_COMPLETED] * 22
        + [S.STATE_TYPE_FAILED] * 6
        + [S.STATE_TYPE_RUNNING] * 4
        + [S.STATE_TYPE_PENDING] * 2
        + [S.STATE_TYPE_CRASHED] * 2
        + [S.STATE_TYPE_CANCELLED] * 2
        + [None] * 3  # still scheduled
    )
    rng.shuffle(finals)
    tag_sets = [("prod",), ("prod", "critical"), ("staging",), ("prod", "hourly"), ()]
    run_ids: list[str] = []
    failed: set[str] = set()
    for i, final in enumerate(finals):
        flow_name = rng.choice(list(flows))
        # Scheduled over the past day, so the history has a shape.
        at = timestamp_pb2.Timestamp()
        at.FromSeconds(int(time.time()) - rng.randrange(60, 22 * 3600))
        run = dashboard.runs.CreateFlowRun(
            flow_run_service_pb2.CreateFlowRunRequest(
                flow_run=flow_run_pb2.FlowRun(
                    flow_id=flows[flow_name],
                    name=f"{flow_name}-{1000 + i}",
                    tags=rng.choice(tag_sets),
                    state=state_pb2.State(
                        type=S.STATE_TYPE_SCHEDULED,
                        state_details=state_pb2.StateDetails(scheduled_time=at),
                    ),
                )
            )
        ).flow_run
        if final is not None:
            _advance(dashboard, run.id, final)
        if final == S.STATE_TYPE_FAILED:
            failed.add(run.id)
        run_ids.append(run.id)
    return Seeded(flows, run_ids, failed)


@pytest.fixture
def page(browser: Any, dashboard: Dashboard, seeded: Seeded) -> Iterator[Any]:
    yield browser
    assert page_errors(browser) == []


def row_ids(driver: Any) -> list[str]:
    return [e.get_attribute("data-run-id") for e in driver.find_elements("css selector", ROWS)]


def loaded(driver: Any) -> int:
    """How many runs the page has read (the rows in the DOM are only those in view)."""
    scroller = driver.find_elements("css selector", "[data-testid=runs-scroller]")
    return int(scroller[0].get_attribute("data-loaded")) if scroller else 0


def query_of(driver: Any) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlparse(driver.current_url).query)


def count(dashboard: Dashboard, criteria: filters_pb2.FlowRunCriteria | None = None) -> int:
    request = flow_run_service_pb2.CountFlowRunsRequest(filter=criteria)
    return int(dashboard.runs.CountFlowRuns(request).count)


def in_state(state: int) -> filters_pb2.FlowRunCriteria:
    types = filters_pb2.StateTypeFilter(any_of=filters_pb2.StateTypeList(values=[state]))
    return filters_pb2.FlowRunCriteria(
        flow_runs=filters_pb2.FlowRunFilter(state=filters_pb2.StateFilter(type=types))
    )


def newest_run_id(dashboard: Dashboard) -> str:
    request = flow_run_service_pb2.ListFlowRunsRequest(
        sort=filters_pb2.FLOW_RUN_SORT_ID_DESC, page_size=1
    )
    return str(dashboard.runs.ListFlowRuns(request).flow_runs[0].id)


def loaded_total(driver: Any) -> str:
    """The total once the counts have been read (it is empty until then)."""
    return str(wait_until(lambda: find(driver, "[data-testid=runs-total]").text, "the total read"))


def test_lists_runs_with_names_counts_and_history(
    page: Any, dashboard: Dashboard, seeded: Seeded
) -> None:
    page.get(dashboard.url + "/runs")
    wait_until(lambda: loaded(page) >= len(seeded.run_ids), "the seeded runs listed")
    # Newest first: the last run created is the first row, and the rows go back in time (the
    # seeded runs in the order they were created; other tests' runs may sit among them).
    ids = row_ids(page)
    assert ids[0] == newest_run_id(dashboard)
    assert ids == sorted(ids, reverse=True)
    seeded_shown = [i for i in ids if i in set(seeded.run_ids)]
    assert seeded_shown == [i for i in reversed(seeded.run_ids) if i in seeded_shown]
    if ids[0] in seeded.run_ids:
        assert ids[0] == seeded.run_ids[-1]
    assert (
        page.execute_script("return performance.getEntriesByName('runwire:runs-rendered').length")
        == 1
    )
    # Flow names replace ids once ListFlows answers.
    wait_until(lambda: "etl-nightly" in texts(page, f"{ROWS} .col-flow"), "flow names in rows")
    total = count(dashboard)
    wait_until(lambda: find(page, "[data-testid=runs-total]").text == f"{total} runs", "the total")
    failed = find(page, "[data-testid=state-counts] [data-state=failed] [data-testid=state-count]")
    failed_total = count(dashboard, in_state(S.STATE_TYPE_FAILED))
    assert failed_total >= len(seeded.failed_ids)
    wait_until(lambda: failed.text == str(failed_total), "the failed count")
    bars = wait_until(
        lambda: page.find_elements(
            "css selector", "[data-testid=history-bar][data-total]:not([data-total='0'])"
        ),
        "history bars with runs",
    )
    assert sum(int(b.get_attribute("data-total")) for b in bars) == total
    summary = find(page, "[data-testid=history-chart] svg[role=img]").get_attribute("aria-label")
    assert f"{total} runs" in summary
    start = page.find_element("css selector", f"{ROWS} .col-start time")
    assert start.get_attribute("datetime") and start.get_attribute("title")
    wait_until(
        lambda: find(page, "[data-testid=live-status]").get_attribute("data-status") == "live",
        "live",
    )
    # The picture: the past day, where the seeded runs were scheduled.
    page.get(dashboard.url + "/runs?range=24h")
    wait_until(lambda: loaded(page) >= len(seeded.run_ids), "the day's runs")
    wait_until(lambda: "etl-nightly" in texts(page, f"{ROWS} .col-flow"), "flow names in rows")
    wait_until(lambda: find(page, "[data-testid=runs-total]").text == f"{total} runs", "the total")
    wait_until(lambda: len(page.find_elements("css selector", ".seg")) > 1, "the day's bars")
    screenshot(page, "runs")
    page.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    screenshot(page, "runs-dark")


def test_state_chips_and_search_filter_through_the_url(
    page: Any, dashboard: Dashboard, seeded: Seeded
) -> None:
    page.get(dashboard.url + "/runs")
    wait_until(lambda: loaded(page) >= len(seeded.run_ids), "the seeded runs listed")
    find(page, "[data-testid=state-counts] [data-state=failed]").click()
    wait_until(lambda: query_of(page).get("state") == ["failed"], "state=failed in the URL")
    wait_until(lambda: seeded.failed_ids <= set(row_ids(page)), "the failed rows")
    badges = page.find_elements("css selector", f"{ROWS} .col-state .badge")
    assert {b.get_attribute("data-state") for b in badges} == {"failed"}
    chip = find(page, "[data-testid=state-counts] [data-state=failed]")
    assert chip.get_attribute("aria-pressed") == "true"

    # The name search narrows the failed runs further, by part of the name in any case.
    one = dashboard.runs.GetFlowRun(
        flow_run_service_pb2.GetFlowRunRequest(flow_run_id=sorted(seeded.failed_ids)[0])
    ).flow_run
    part = one.name.split("-")[-1]
    search = find(page, "input[data-search]")
    search.send_keys(part.upper())
    wait_until(lambda: query_of(page).get("q") == [part.upper()], "q in the URL")
    wanted = {i for i in seeded.failed_ids if part in _name(dashboard, i)}
    wait_until(lambda: set(row_ids(page)) == wanted, "rows matching the search")
    assert wanted

    # The URL alone carries the filter.
    page.refresh()
    wait_until(lambda: set(row_ids(page)) == wanted, "the same rows after a reload")
    assert find(page, "input[data-search]").get_attribute("value") == part.upper()

    # Back undoes the search's step of history (typing pushed one entry, then replaced it),
    # back to the state chip's URL; forward redoes it.
    page.back()
    wait_until(lambda: page.current_url == dashboard.url + "/runs?state=failed", "the chip's URL")
    wait_until(lambda: seeded.failed_ids <= set(row_ids(page)), "the failed rows again")
    assert find(page, "input[data-search]").get_attribute("value") == ""
    page.forward()
    wait_until(lambda: set(row_ids(page)) == wanted, "the filtered rows again")

    page.get(dashboard.url + "/runs?q=no-run-is-called-this")
    empty = find(page, "[data-testid=runs-empty]")
    assert "No runs match these filters" in empty.text
    empty.find_element("link text", "Clear filters").click()
    wait_until(lambda: loaded(page) >= len(seeded.run_ids), "every run after clearing")
    assert query_of(page) == {}


def _name(dashboard: Dashboard, run_id: str) -> str:
    request = flow_run_service_pb2.GetFlowRunRequest(flow_run_id=run_id)
    return str(dashboard.runs.GetFlowRun(request).flow_run.name)


def test_new_runs_and_state_changes_arrive_live(
    page: Any, dashboard: Dashboard, seeded: Seeded
) -> None:
    flow_id = dashboard.flow("live-arrivals").id
    page.get(dashboard.url + "/runs")
    wait_until(lambda: loaded(page) >= len(seeded.run_ids), "the seeded runs listed")
    wait_until(
        lambda: find(page, "[data-testid=live-status]").get_attribute("data-status") == "live",
        "live",
    )
    before = loaded_total(page)

    run = dashboard.run(flow_id, "arrives-while-watching", tags=("live",))
    wait_until(lambda: row_ids(page)[:1] == [run.id], "the new run at the top")
    row = f"{ROWS}[data-run-id='{run.id}']"
    dashboard.set_state(run.id, S.STATE_TYPE_PENDING)
    dashboard.set_state(run.id, S.STATE_TYPE_RUNNING)
    wait_until(
        lambda: find(page, f"{row} .col-state .badge").get_attribute("data-state") == "running",
        "the row running",
    )
    # Its duration ticks while it runs.
    first = find(page, f"{row} .col-duration").text
    wait_until(lambda: find(page, f"{row} .col-duration").text != first, "the duration ticking")
    dashboard.set_state(run.id, S.STATE_TYPE_COMPLETED)
    wait_until(
        lambda: find(page, f"{row} .col-state .badge").get_attribute("data-state") == "completed",
        "the row completed",
    )
    # The total catches up (its refresh is throttled).
    wait_until(lambda: find(page, "[data-testid=runs-total]").text != before, "the total updated")

    # With a state filter, a run entering the state appears; one leaving it updates in place.
    page.get(dashboard.url + "/runs?state=running")
    wait_until(
        lambda: find(page, "[data-testid=live-status]").get_attribute("data-status") == "live",
        "live",
    )
    second = dashboard.run(flow_id, "enters-the-filter")
    assert second.id not in row_ids(page)
    dashboard.set_state(second.id, S.STATE_TYPE_PENDING)
    dashboard.set_state(second.id, S.STATE_TYPE_RUNNING)
    wait_until(lambda: row_ids(page)[:1] == [second.id], "the running run listed")
    dashboard.set_state(second.id, S.STATE_TYPE_FAILED)
    wait_until(
        lambda: (
            find(page, f"{ROWS}[data-run-id='{second.id}'] .col-state .badge").get_attribute(
                "data-state"
            )
            == "failed"
        ),
        "the row failed in place",
    )


def test_open_a_run_by_click_and_by_keyboard(
    page: Any, dashboard: Dashboard, seeded: Seeded
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page.get(dashboard.url + "/runs")
    wait_until(lambda: loaded(page) >= len(seeded.run_ids), "the seeded runs listed")
    ids = row_ids(page)

    def press(key: str, expected: str) -> None:
        # Keys go to whatever has the focus, as a person's keyboard does.
        ActionChains(page).send_keys(key).perform()
        wait_until(
            lambda: page.switch_to.active_element.get_attribute("data-run-id") == expected,
            f"the focus on row {ids.index(expected) + 1}",
        )
        assert find(page, f"{ROWS}.active").get_attribute("data-run-id") == expected

    # Outside the table the arrows are the page's (they scroll it): no row is chosen.
    find(page, "#runs-title").click()
    ActionChains(page).send_keys(Keys.ARROW_DOWN).send_keys(Keys.END).perform()
    time.sleep(0.3)
    assert page.find_elements("css selector", f"{ROWS}.active") == []

    press("j", ids[0])
    press("j", ids[1])
    press(Keys.ARROW_DOWN, ids[2])
    press("k", ids[1])
    # A run arriving at the top moves the rows down; the keyboard's row stays the same run.
    flow_id = dashboard.flow("keyboard-arrivals").id
    arrival = dashboard.run(flow_id, "arrives-under-the-keyboard")
    wait_until(lambda: row_ids(page)[:1] == [arrival.id], "the new run at the top")
    assert find(page, f"{ROWS}.active").get_attribute("data-run-id") == ids[1]
    ActionChains(page).send_keys(Keys.ENTER).perform()
    wait_until(lambda: page.current_url.endswith(f"/runs/{ids[1]}"), "the run's page")

    page.back()
    wait_until(lambda: loaded(page) >= len(seeded.run_ids), "the list again")
    link = find(page, f"{ROWS}[data-run-id='{ids[2]}'] .col-name a")
    link.click()
    wait_until(lambda: page.current_url.endswith(f"/runs/{ids[2]}"), "the clicked run's page")


def test_pages_load_as_the_list_scrolls_and_rows_stay_few(page: Any, dashboard: Dashboard) -> None:
    flow_id = dashboard.flow("many-small-runs").id
    created = [dashboard.run(flow_id, f"batch-{i:04d}").id for i in range(450)]
    page.get(dashboard.url + f"/runs?flow={flow_id}")
    wait_until(lambda: row_ids(page)[:1] == [created[-1]], "the newest run first")
    scroller = find(page, "[data-testid=runs-scroller]")

    def at_bottom() -> bool:
        page.execute_script("arguments[0].scrollTop = arguments[0].scrollHeight", scroller)
        return row_ids(page)[-1:] == [created[0]]

    wait_until(at_bottom, "the oldest run after scrolling through every page", timeout=20)
    # Only the rows in view (and a few either side) are in the DOM.
    assert len(row_ids(page)) < 100
    rows = int(
        page.find_element("css selector", "[data-testid=runs-scroller] table").get_attribute(
            "aria-rowcount"
        )
    )
    assert rows == len(created) + 1
    assert find(page, "[data-testid=runs-total]").text == f"{len(created)} runs"
