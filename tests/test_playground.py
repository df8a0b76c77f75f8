"""The playground page (playground/, served at /playground/ through Envoy's demo route) in a
real headless Chromium: load it, run a turn, and see the panel's answers side by side, the
judge's analysis as five lists, the final answer streaming in, and the timeline.
Saves a screenshot in .run/playground.png; with UPDATE_DOCS=1 in the environment it writes
docs/playground.png, the picture the README shows (a normal run leaves the tree unchanged)."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from harness import ROOT, DemoMock, Envoy

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

KEYS = ["consensus", "contradictions", "partial_coverage", "unique_insights", "blind_spots"]
SCREENSHOT = ROOT / ("docs" if os.environ.get("UPDATE_DOCS") == "1" else ".run") / "playground.png"


@pytest.fixture(scope="module")
def gateway():
    mock = DemoMock()
    envoy = Envoy(mock, name="playground")
    yield envoy
    envoy.stop()
    mock.stop()


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromedriver are missing: run scripts/setup.sh browser")
    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1700", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    # An explicit driver path: Selenium Manager never downloads anything.
    b = webdriver.Chrome(service=Service(driver), options=opts)
    yield b
    b.quit()


def run_turn(browser, gateway, api: str, stream: bool = True) -> list[str]:
    """Runs the default prompt; returns the final answer's text as seen while it streamed."""
    browser.get(f"http://127.0.0.1:{gateway.port}/playground/")
    Select(browser.find_element(By.ID, "api")).select_by_value(api)
    box = browser.find_element(By.ID, "stream")
    if box.is_selected() != stream:
        box.click()
    browser.find_element(By.ID, "run").click()
    seen = []
    deadline = time.monotonic() + 60
    while browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") != "done":
        seen.append(browser.find_element(By.ID, "final").text)
        if time.monotonic() > deadline:
            raise TimeoutException("the turn did not finish in 60 s")
        time.sleep(0.05)
    return seen


def assert_the_three_parts(browser) -> None:
    status = browser.find_element(By.ID, "status")
    assert "error" not in (status.get_attribute("class") or ""), status.text
    cards = browser.find_elements(By.CSS_SELECTOR, "#answers .card.answered")
    texts = [c.find_element(By.TAG_NAME, "p").text for c in cards]
    assert [c.get_attribute("data-model") for c in cards] == ["mock-a", "mock-b", "mock-c"], texts
    assert len(set(texts)) == 3 and all(len(t) > 100 for t in texts), texts
    lists = browser.find_elements(By.CSS_SELECTOR, "#analysis ul")
    assert [ul.get_attribute("data-key") for ul in lists] == KEYS
    items = {ul.get_attribute("data-key"): [li.text for li in ul.find_elements(By.TAG_NAME, "li")] for ul in lists}
    assert any("better supported" in c for c in items["contradictions"]), items
    assert any(u.startswith("Only Response 2") for u in items["unique_insights"]), items
    final = browser.find_element(By.ID, "final").text
    assert final.startswith("The sky is blue because") and "Where they disagree" in final, final
    bars = browser.find_elements(By.CSS_SELECTOR, "#timeline svg rect")
    assert [b.get_attribute("data-model") for b in bars] == ["mock-a", "mock-b", "mock-c", "mock-judge", "mock-outer"]


def test_responses_shows_answers_analysis_final_and_timeline(browser, gateway):
    run_turn(browser, gateway, "responses")
    assert_the_three_parts(browser)
    # The whole page: the window grows to the document's height for the picture.
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, height + 140)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    browser.set_window_size(1280, 1700)


@pytest.mark.parametrize("api,stream", [("messages", True), ("messages", False), ("responses", False)])
def test_other_apis(browser, gateway, api, stream):
    run_turn(browser, gateway, api, stream)
    assert_the_three_parts(browser)


def test_chat_streams_the_final_answer(browser, gateway):
    # Chat streams up the route: the page shows the answer while it arrives.
    seen = run_turn(browser, gateway, "chat", stream=True)
    final = browser.find_element(By.ID, "final").text
    assert final.startswith("The sky is blue because") and "Where they disagree" in final, final
    assert any(0 < len(s) < len(final) for s in seen), "the final answer did not stream"
    bars = browser.find_elements(By.CSS_SELECTOR, "#timeline svg rect")
    assert [b.get_attribute("data-model") for b in bars] == ["mock-a", "mock-b", "mock-c", "mock-judge", "mock-outer"]


# The page sends `x-fusion-include: analysis,responses`: the `fusion` report carries the
# answers and the analysis in Chat too.
@pytest.mark.parametrize("stream", [True, False])
def test_chat_shows_answers_and_analysis(browser, gateway, stream):
    run_turn(browser, gateway, "chat", stream)
    assert_the_three_parts(browser)
