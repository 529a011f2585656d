"""The report opened in a real headless Chromium (Debian's chromium and chromium-driver).

The page must load from disk with no console error, every figure must be a
loaded image that is not blank, and a screenshot is kept with the test output.
The run comes from a real Lightning fit with ``EnergyCallback(run_dir=...)``,
read back through the report command as a user runs it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
pytest.importorskip("lightning")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
    "chromium-driver; .ci/run installs them)",
)
SHOTS = Path(__file__).resolve().parent.parent / "runs" / "screenshots"


def browser() -> object:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    flags = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1200,2400")  # fmt: skip
    for flag in flags:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))


def test_the_report_of_a_real_fit_loads_offline_with_every_figure(tmp_path: Path) -> None:
    fit = (
        "import lightning.pytorch as pl, torch\n"
        "from green_callbacks.lightning import EnergyCallback\n"
        "from green_callbacks.lightning.demo import DigitsCNN, digits_loaders\n"
        "train, val = digits_loaders(batch_size=64, seed=0)\n"
        f"callback = EnergyCallback(meters='estimate', run_dir={str(tmp_path / 'run')!r})\n"
        "pl.Trainer(max_epochs=7, logger=False, enable_checkpointing=False,\n"
        "           enable_progress_bar=False, callbacks=[callback]).fit(DigitsCNN(), train, val)\n"
    )
    done = subprocess.run([sys.executable, "-c", fit], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = subprocess.run(
        [sys.executable, "-m", "green_callbacks.cli", "report", str(tmp_path / "run"),
         "--out", str(tmp_path / "report")], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    page = tmp_path / "report" / "report.html"
    driver = browser()
    try:
        driver.get(page.as_uri())
        figures = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth,"
            " i.naturalHeight, i.alt]);"
        )
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / "report.png"))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        title = driver.title
    finally:
        driver.quit()
    assert errors == []
    assert title == "Energy report (1 run)"
    assert [alt for *_, alt in figures] == ["run1_epochs", "run1_returns", "run1_power",
                                            "run1_domains"]  # fmt: skip
    assert all(complete and width > 300 and height > 200 for complete, width, height, _ in figures)
    shot = pytest.importorskip("matplotlib.pyplot").imread(SHOTS / "report.png")
    assert float(shot.std()) > 0.05  # the screenshot shows a page, not a blank window
