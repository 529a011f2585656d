"""The model card's Energy section, from summaries (carbon, notes, nothing metered)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from green_callbacks.core import EnergyTracker
from green_callbacks.core.card import energy_card
from green_callbacks.testing import FakeClock, FakeMeter


def summary(carbon: float | None = None) -> dict:
    clock = FakeClock()
    tracker = EnergyTracker(
        [FakeMeter({"gpu:0": 250.0}, clock=clock)],
        sample_interval_s=None,
        carbon_intensity_g_per_kwh=carbon,
        clock=clock,
    ).start()
    clock.advance(7200.0)
    tracker.stop()
    return tracker.summary()


def test_the_section_gives_kwh_duration_power_provenance_and_carbon() -> None:
    text = energy_card(summary(carbon=400.0))
    assert "| training energy | 0.5 kWh (1.8e+06 J) |" in text
    assert "| duration | 2 h |" in text and "| average power | 250 W |" in text
    assert "| how it was obtained | measured |" in text
    assert "| sources | gpu:0: measured by fake (scripted-power), FakeMeter |" in text
    assert "| carbon | 200 gCO2e |" in text  # 0.5 kWh at 400 g/kWh


def test_without_an_intensity_there_is_no_carbon_row_and_notes_follow() -> None:
    data = summary()
    data["notes"] = ["the GPU sensor dropped; held at its mean power"]
    text = energy_card(data)
    assert "carbon" not in text and text.endswith(
        "Note: the GPU sensor dropped; held at its mean power"
    )


def test_a_summary_without_totals_says_it_was_not_metered() -> None:
    assert "Not metered" in energy_card({"totals": None})


def test_the_card_command_prints_the_section_of_a_run_folder(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps(summary()), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "green_callbacks.cli", "card", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("## Energy") and "0.5 kWh" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "green_callbacks.cli", "card", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no energy summary" in missing.stderr


def test_impossible_figures_read_not_recorded_and_names_are_escaped() -> None:
    hostile = {
        "totals": {"energy_j": -5, "duration_s": float("nan"), "avg_power_w": "x",
                   "kind": "<b>bold</b>", "carbon_g": float("inf"),
                   "sources": [{"domain": "gpu|0", "kind": "measured", "source": "<script>",
                                "method": "[link](http://x)"}, "not a source"]},
        "notes": ["<img src=x onerror=alert(1)>\n| injected | row |"],
    }  # fmt: skip
    text = energy_card(hostile)
    assert "nan" not in text and "inf" not in text and "-5" not in text
    assert "| training energy | not recorded (the summary's energy_j is missing or not a " in text
    assert "| carbon | not recorded (the summary's carbon_g" in text
    assert "| how it was obtained | &lt;b&gt;bold&lt;/b&gt; |" in text
    assert r"| sources | gpu\|0: measured by &lt;script&gt; (\[link\](http://x)) |" in text
    assert text.endswith(r"Note: &lt;img src=x onerror=alert(1)&gt; \| injected \| row \|")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 6  # header, rule, six figures: nothing injected a row
    assert "<" not in text


def test_the_card_of_a_run_dir_is_its_newest_run(tmp_path: Path) -> None:
    for number, hours in ((0, 1.0), (1, 2.0)):
        folder = tmp_path / f"version_{number}"
        folder.mkdir()
        data = summary()
        data["totals"]["duration_s"] = hours * 3600
        (folder / "summary.json").write_text(json.dumps(data), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "green_callbacks.cli", "card", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| duration | 2 h |" in done.stdout
