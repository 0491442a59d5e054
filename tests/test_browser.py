"""End to end in a real browser: a small catalog runs, report.html opens in headless
Chromium, and the page is checked the way a reader uses it: the table sorts and filters, the
failing case shows its blamed engine and a heatmap that loads, and case text stays text.

Needs Debian's chromium and chromedriver (`make browser`). Without them the test skips, or
fails when $CI is set, where a silent skip would hide a report nobody checked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

import gradcheck

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DESCRIPTION = "<script>alert(1)</script> & <b>bold</b>"
CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    message = (
        f"the browser test needs {', '.join(missing)} "
        "(Debian: apt-get install chromium chromium-driver; or `make browser`)"
    )
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextmanager
def chromium(width: int = 1400, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gradcheck-chromium-")  # a fresh profile each time
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS + [f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def case_column(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        row.find_element(By.CSS_SELECTOR, "td").text
        for row in driver.find_elements(By.CSS_SELECTOR, "#case-table tbody tr")
        if row.is_displayed()
    ]


def test_report_in_chromium(mixed_catalog, tmp_path):
    require_browser()
    out = tmp_path / "out"
    result = gradcheck.run(gradcheck.load_cases([mixed_catalog]))
    result.write_reports(out)
    with chromium() as driver:
        driver.get((out / "report.html").as_uri())
        check_table_sorts_and_filters(driver)
        check_failing_case(driver)
        check_case_text_is_text(driver)
        check_no_errors_and_no_network(driver)
        save_screenshot(driver, out / "screenshot.png")


def check_table_sorts_and_filters(driver) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    assert case_column(driver) == ["wx-wrong-expect", "colah-e", "html-text"]  # failures first
    header = driver.find_element(By.CSS_SELECTOR, "#case-table th[data-key=case]")
    header.click()
    assert case_column(driver) == ["colah-e", "html-text", "wx-wrong-expect"]
    header.click()
    assert case_column(driver) == ["wx-wrong-expect", "html-text", "colah-e"]
    verdict = Select(driver.find_element(By.CSS_SELECTOR, "select[data-filter=verdict]"))
    verdict.select_by_visible_text("FAIL")
    assert case_column(driver) == ["wx-wrong-expect"]
    verdict.select_by_visible_text("all")
    assert len(case_column(driver)) == 3


def check_failing_case(driver) -> None:
    from selenium.webdriver.common.by import By

    row = driver.find_element(By.CSS_SELECTOR, "#case-table tr[data-verdict=FAIL]")
    assert row.find_element(By.CSS_SELECTOR, "td.blame").text == "expect"
    section = driver.find_element(By.ID, "case-wx-wrong-expect")
    assert "blamed: expect" in section.text
    img = section.find_element(By.CSS_SELECTOR, "figure.heatmap img")
    loaded = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
    assert loaded and loaded > 0, "the heatmap image did not load"


def check_case_text_is_text(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    # Its section is closed (the case passes): following the table's link opens it.
    driver.find_element(By.LINK_TEXT, "html-text").click()
    section = driver.find_element(By.ID, "case-html-text")
    description = section.find_element(By.CSS_SELECTOR, ".description")
    assert description.is_displayed()
    assert description.text == DESCRIPTION
    assert "<img src=x onerror=alert(2)>" in section.text
    assert not section.find_elements(By.CSS_SELECTOR, ".description b, .description script, dd img")
    with pytest.raises(NoAlertPresentException):
        _ = driver.switch_to.alert  # alert(1) / alert(2) never ran (reading it raises)


def check_no_errors_and_no_network(driver) -> None:
    # A CSP violation (our script blocked, a fetch refused) would show here as SEVERE.
    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert [u for u in fetched if not u.startswith("data:")] == []


def save_screenshot(driver, path: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(height, 4000))
    assert driver.save_screenshot(str(path))
    assert path.is_file() and path.stat().st_size > 0
