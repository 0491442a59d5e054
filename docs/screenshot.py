"""Remake docs/report.png: run the catalog and take a picture of its report.html in headless
Chromium (Debian's chromium and chromedriver, as the browser test uses them).

    .venv/bin/python docs/screenshot.py                      # the whole catalog, cases/
    .venv/bin/python docs/screenshot.py cases/scalar cases/softmax
    .venv/bin/python docs/screenshot.py --report /tmp/r      # a run folder that exists
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


def run_catalog(paths: list[str], out: Path) -> None:
    gradcheck = Path(sys.executable).with_name("gradcheck")
    command = [str(gradcheck), "run", *paths, "--out", str(out), "-q"]
    print(" ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=False)  # exit 1 (a failing case) still reports
    if not (out / "report.html").is_file():
        sys.exit(f"no report.html in {out}")


def screenshot(report: Path, png: Path, width: int, height: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gradcheck-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(report.resolve().as_uri())
        assert driver.save_screenshot(str(png)), "the screenshot was not written"
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"wrote {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=["cases/"], help="cases to run")
    parser.add_argument("--report", type=Path, help="a run folder to show instead of running")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "report.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.report
        if folder is None:
            folder = Path(tmp) / "run"
            run_catalog(args.paths, folder)
        screenshot(folder / "report.html", args.png, args.width, args.height)


if __name__ == "__main__":
    main()
