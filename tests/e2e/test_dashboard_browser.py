"""The dashboard in headless Chromium, against a real coordinator and two real agents.

The fleet is the production path (TLS, enrolled devices, tokens); devices beat every second and
turn stale after 4 s and offline after 14 s without one, so that a stopped agent walks through
both states within the test. Screenshots of every page go to ``test-artifacts/dashboard/``
(or ``$FL_TEST_ARTIFACTS/dashboard``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from fl_coordinator.local_fleet import LocalFleet

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("FL_TEST_ARTIFACTS", REPO / "test-artifacts")) / "dashboard"
FLEET_ENV = {
    "FL_COORDINATOR_HEARTBEAT_INTERVAL_S": "1",
    "FL_COORDINATOR_DEVICE_STALE_AFTER_S": "4",
    "FL_COORDINATOR_DEVICE_OFFLINE_AFTER_S": "14",
    "FL_AGENT_HEARTBEAT_INTERVAL_S": "1",
}
RUN_TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path_factory.mktemp("dashboard"), secure=True, extra_env=FLEET_ENV) as f:
        f.start_coordinator()
        f.start_agent(0, 2)
        f.start_agent(1, 2)
        f.wait_devices_online(2)
        yield f


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: apt-get install chromium (.ci/run does)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def read_token(fleet: LocalFleet) -> str:
    with fleet.client() as admin:
        made = admin.post("/api/v1/tokens", json={"kind": "read", "name": "dashboard viewer"})
    made.raise_for_status()
    token: str = made.json()["token"]
    return token


class Problems:
    """Script errors and refused resources (CSP) a page reported; expected 401s aside."""

    def __init__(self, page: Page) -> None:
        self.found: list[str] = []
        page.on("pageerror", lambda exc: self.found.append(f"exception: {exc}"))
        page.on("console", self._console)

    def _console(self, msg: ConsoleMessage) -> None:
        # Chromium logs every non-2xx fetch; a 401 before login is the expected answer.
        if msg.type == "error" and "status of 401" not in msg.text:
            self.found.append(msg.text)


def open_page(browser: Browser, fleet: LocalFleet, width: int = 1280) -> tuple[Page, Problems]:
    # The coordinator's certificate comes from its own CA (fl-coordinator init): the test
    # browser has no way to trust it but to ignore it.
    context = browser.new_context(
        base_url=fleet.api_url,
        ignore_https_errors=True,
        viewport={"width": width, "height": 900},
        accept_downloads=True,
    )
    page = context.new_page()
    problems = Problems(page)
    return page, problems


def login(page: Page, token: str) -> None:
    page.goto("/")
    expect(page.locator("#token")).to_be_visible()
    page.locator("#token").fill(token)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("whoami")).to_be_visible()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_anonymous_visitor_gets_the_login_page_and_no_data(
    browser: Browser, fleet: LocalFleet
) -> None:
    page, problems = open_page(browser, fleet)
    page.goto("/ui/#/fleet")
    expect(page.locator("#token")).to_be_visible()
    expect(page.get_by_test_id("device-table")).to_have_count(0)
    page.locator("#token").fill("fla_not-a-real-token")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("unknown")
    shot(page, "login")
    assert problems.found == []
    page.context.close()


def test_fleet_page_shows_both_devices_online_and_their_capabilities(
    browser: Browser, fleet: LocalFleet
) -> None:
    assert fleet.admin_token is not None
    page, problems = open_page(browser, fleet)
    login(page, fleet.admin_token)
    expect(page.get_by_test_id("whoami")).to_contain_text("admin")
    expect(page.get_by_test_id("count-online")).to_contain_text("2")
    expect(page.get_by_test_id("count-total")).to_contain_text("2")
    with fleet.client() as api:
        devices = api.get("/api/v1/devices").json()
    assert len(devices) == 2
    for device in devices:
        line = page.locator(f'tr[data-device-id="{device["device_id"]}"]')
        expect(line.get_by_test_id("state")).to_have_text(re.compile(r"\bonline\b"))
        expect(line).to_contain_text(device["name"])
        expect(line).to_contain_text("samples/s")  # the measured speed score
    shot(page, "fleet")

    # Sorting is done by the server: by name descending puts device-1 first.
    page.locator("button[data-sort=name]").click()
    page.locator("button[data-sort=name]").click()
    first = page.get_by_test_id("device-table").locator("tbody tr").first
    expect(first).to_contain_text("device-1")
    # Filtering by a search term narrows the table to one row.
    page.get_by_test_id("filter-search").fill("device-0")
    expect(page.get_by_test_id("device-table").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_test_id("page-info")).to_contain_text("of 1")

    page.get_by_test_id("device-table").get_by_role("link", name="device-0").click()
    expect(page.get_by_test_id("device-name")).to_have_text("device-0")
    expect(page.get_by_test_id("onnx-providers")).to_contain_text("CPUExecutionProvider")
    expect(page.get_by_test_id("device-capabilities")).to_contain_text("x86_64")
    # Sparklines are drawn from the heartbeat history (one beat a second: several points).
    expect(
        page.locator("[data-testid=spark-cpu] path, [data-testid=spark-cpu] polyline")
    ).not_to_have_count(0)
    expect(page.get_by_test_id("action-drain")).to_be_visible()
    shot(page, "device")
    assert problems.found == []
    page.context.close()


def test_read_only_login_sees_no_admin_buttons(
    browser: Browser, fleet: LocalFleet, read_token: str
) -> None:
    page, problems = open_page(browser, fleet)
    login(page, read_token)
    expect(page.get_by_test_id("whoami")).to_contain_text("read-only")
    expect(page.get_by_test_id("count-online")).to_contain_text("2")
    expect(page.get_by_test_id("nav-start")).to_have_count(0)
    page.get_by_test_id("device-table").get_by_role("link", name="device-0").click()
    expect(page.get_by_test_id("device-capabilities")).to_be_visible()
    for action in ("action-drain", "action-undrain", "action-revoke"):
        expect(page.get_by_test_id(action)).to_have_count(0)
    page.goto("/ui/#/start")
    expect(page.get_by_test_id("start-form")).to_have_count(0)
    assert problems.found == []
    page.context.close()


def test_start_a_run_from_the_form_and_follow_it_to_completion(
    browser: Browser, fleet: LocalFleet
) -> None:
    assert fleet.admin_token is not None
    page, problems = open_page(browser, fleet)
    login(page, fleet.admin_token)
    page.get_by_test_id("nav-start").click()
    form = page.get_by_test_id("start-form")
    form.locator("[name=dataset]").select_option("digits")
    form.locator("[name=num_rounds]").fill("2")
    form.locator("[name=min_devices]").fill("2")
    form.locator("[name=selection]").select_option("capability")
    # The preview asks the coordinator which devices the run would select now.
    expect(page.get_by_test_id("preview-device")).to_have_count(2)
    expect(page.get_by_test_id("preview-summary")).to_contain_text("2")
    shot(page, "start-training")

    page.get_by_test_id("start-submit").click()
    expect(page).to_have_url(re.compile(r"#/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    progress = page.get_by_test_id("run-progress")
    expect(progress).to_have_attribute("max", "2")
    expect(page.get_by_test_id("run-status")).to_have_text(
        re.compile("completed"), timeout=RUN_TIMEOUT_MS
    )
    expect(progress).to_have_attribute("value", "2")
    # Rounds 0 (the initial model), 1 and 2 each have a test accuracy: three points.
    expect(page.get_by_test_id("accuracy-chart").get_by_test_id("chart-point")).to_have_count(3)
    expect(page.get_by_test_id("rounds-table")).to_contain_text("device-0")
    run = fleet.get_run(run_id)
    assert run["status"] == "completed"
    assert run["request"]["dataset"] == "digits"
    assert run["request"]["num_rounds"] == 2
    shot(page, "run")

    with page.expect_download(timeout=120_000) as download_info:
        page.get_by_test_id("download-onnx").click()
    saved = ARTIFACTS / "model.onnx"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    download_info.value.save_as(saved)
    assert saved.stat().st_size > 10_000  # a CNN's weights, not an error body
    assert download_info.value.suggested_filename.endswith(".onnx")

    page.get_by_test_id("nav-runs").click()
    expect(page.locator(f'tr[data-run-id="{run_id}"]').get_by_test_id("run-status")).to_have_text(
        re.compile("completed")
    )
    shot(page, "runs")
    page.get_by_test_id("nav-models").click()
    expect(page.get_by_test_id("models-table")).to_contain_text(str(run_id))
    shot(page, "models")
    assert problems.found == []
    page.context.close()


def test_a_stopped_agent_turns_stale_then_offline_without_a_reload(
    browser: Browser, fleet: LocalFleet
) -> None:
    assert fleet.admin_token is not None
    page, problems = open_page(browser, fleet)
    login(page, fleet.admin_token)
    with fleet.client() as api:
        devices = {d["name"]: d["device_id"] for d in api.get("/api/v1/devices").json()}
    stopped = page.locator(f'tr[data-device-id="{devices["device-1"]}"]').get_by_test_id("state")
    running = page.locator(f'tr[data-device-id="{devices["device-0"]}"]').get_by_test_id("state")
    expect(stopped).to_have_text(re.compile(r"\bonline\b"))
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    fleet.agents[1].stop(grace_s=15)
    expect(stopped).to_have_text(re.compile(r"\bstale\b"), timeout=20_000)
    expect(page.get_by_test_id("count-stale")).to_contain_text("1")
    expect(stopped).to_have_text(re.compile(r"\boffline\b"), timeout=30_000)
    expect(page.get_by_test_id("count-offline")).to_contain_text("1")
    expect(running).to_have_text(re.compile(r"\bonline\b"))
    assert page.evaluate("window.__sameDocument === true")
    shot(page, "fleet-offline")

    # A phone-width screen: the page does not overflow sideways; the table scrolls inside.
    page.set_viewport_size({"width": 375, "height": 800})
    expect(page.get_by_test_id("count-offline")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 376
    shot(page, "fleet-phone")

    # Keyboard: the first Tab reaches the skip link, and the sort buttons are buttons.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent").strip().lower().startswith("skip")
    page.locator("button[data-sort=name]").focus()
    page.keyboard.press("Enter")
    expect(page.locator("th[aria-sort]").first).to_be_visible()
    assert problems.found == []
    page.context.close()
