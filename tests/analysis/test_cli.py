"""green-callbacks advise and report, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "green_callbacks.cli"]
LOG = "epoch,val_acc,energy/train_epoch_j\n" + "".join(
    f"{e},{a},1000\n" for e, a in enumerate([0.5, 0.7, 0.8, 0.85, 0.851, 0.852, 0.852, 0.853])
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def test_advise_prints_and_writes_the_advice_beside_the_run(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text(LOG, encoding="utf-8")
    done = run("advise", str(tmp_path / "metrics.csv"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("[applies] accuracy flattens")
    assert "missing from this run: no energy summary" in done.stdout
    saved = json.loads((tmp_path / "advice.json").read_text())
    assert saved["energy_kind"] is None and len(saved["findings"]) == 9
    assert "EnergyEarlyStopping" in (tmp_path / "advice.md").read_text()


def test_advise_on_a_run_dir_judges_its_newest_version_and_writes_there(tmp_path: Path) -> None:
    for number in (0, 1):  # what EnergyCallback(run_dir=tmp_path) makes of two runs
        (tmp_path / f"version_{number}").mkdir()
        (tmp_path / f"version_{number}" / "metrics.csv").write_text(LOG, encoding="utf-8")
    done = run("advise", str(tmp_path))
    assert done.returncode == 0, done.stderr
    newest = tmp_path / "version_1"
    assert f"notes on this run: read {newest}, the newest of 2 runs in {tmp_path}" in done.stdout
    assert (newest / "advice.md").is_file() and not (tmp_path / "advice.md").exists()


def test_advise_joins_an_output_folder_and_a_log_kept_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "out" / "csv" / "version_0").mkdir(parents=True)  # a CSVLogger's folder
    (tmp_path / "out" / "csv" / "version_0" / "metrics.csv").write_text(LOG, encoding="utf-8")
    hparams = tmp_path / "elsewhere" / "metrics.csv"
    hparams.parent.mkdir()
    hparams.write_text("epoch,train_loss\n0,2.0\n", encoding="utf-8")
    done = run("advise", str(tmp_path / "out"), str(hparams), "--json")
    assert done.returncode == 0, done.stderr
    findings = {f["title"]: f for f in json.loads(done.stdout)["findings"]}
    flattens = next(f for t, f in findings.items() if t.startswith("accuracy flattens"))
    assert flattens["verdict"] == "applies"  # the CSV under out/ was found and read
    assert (tmp_path / "out" / "advice.md").is_file()  # the joined run's advice: in out/


def test_advise_thresholds_come_from_the_options(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text(LOG, encoding="utf-8")
    done = run("advise", str(tmp_path), "--min-gain-per-kj", "0.0001", "--json")
    findings = {f["pattern"]: f for f in json.loads(done.stdout)["findings"]}
    assert findings["returns"]["verdict"] == "does not apply"


def test_report_writes_a_page_for_several_runs(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.csv").write_text(LOG, encoding="utf-8")
    done = run("report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    assert "report: " in done.stdout and (tmp_path / "r" / "runs_overlay.png").is_file()


def test_paths_that_hold_no_run_are_one_line_with_exit_2(tmp_path: Path) -> None:
    for args in (["advise", str(tmp_path / "nope")], ["report", str(tmp_path)]):
        done = run(*args)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "does not exist" in done.stderr or "holds no run" in done.stderr
