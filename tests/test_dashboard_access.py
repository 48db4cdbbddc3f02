"""Who sees what: the dashboard asks the server what the signed-in token may do, and shows the
run page's actions to a write token only."""

from __future__ import annotations

from typing import Any

from selenium.webdriver.common.by import By

from runwire.v1 import state_pb2
from tests.browser import READ_TOKEN, WRITE_TOKEN, Dashboard, find, wait_until


def sign_in(browser: Any, url: str, token: str) -> None:
    browser.get(url)
    field = find(browser, "input#token")
    field.send_keys(token)
    find(browser, "form button[type=submit]").click()
    find(browser, "header.top")


def test_a_read_token_sees_the_run_but_no_actions(
    guarded_dashboard: Dashboard, browser: Any
) -> None:
    flow = guarded_dashboard.flow("access-read")
    run = guarded_dashboard.run(flow.id, name="watched-only")
    guarded_dashboard.set_state(run.id, state_pb2.STATE_TYPE_RUNNING)
    sign_in(browser, f"{guarded_dashboard.url}/runs/{run.id}", READ_TOKEN)
    assert wait_until(lambda: find(browser, "[data-testid=who] .role").text, "the role") == (
        "read-only"
    )
    find(browser, "[data-testid=run-state][data-state=running]")
    assert browser.find_elements(By.CSS_SELECTOR, "[data-action]") == []


def test_a_write_token_sees_the_actions(guarded_dashboard: Dashboard, browser: Any) -> None:
    flow = guarded_dashboard.flow("access-write")
    run = guarded_dashboard.run(flow.id, name="operated")
    guarded_dashboard.set_state(run.id, state_pb2.STATE_TYPE_RUNNING)
    sign_in(browser, f"{guarded_dashboard.url}/runs/{run.id}", WRITE_TOKEN)
    assert find(browser, "[data-testid=who] .role").text == "operator"
    find(browser, "[data-testid=run-state][data-state=running]")
    assert find(browser, "[data-action=cancel]").is_enabled()
    find(browser, "[data-action=delete]")


def test_a_server_without_tokens_lets_everyone_act(dashboard: Dashboard, browser: Any) -> None:
    flow = dashboard.flow("access-local")
    run = dashboard.run(flow.id, name="local")
    dashboard.set_state(run.id, state_pb2.STATE_TYPE_RUNNING)
    browser.get(f"{dashboard.url}/runs/{run.id}")
    assert find(browser, "[data-testid=who] .role").text == "local"
    assert browser.find_elements(By.CSS_SELECTOR, "input#token") == []
    find(browser, "[data-action=cancel]")
