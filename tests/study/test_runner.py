"""Study files, the run order, and the runner: records once, resumes after a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from green_callbacks.core.ledger import LedgerMismatchError
from green_callbacks.study import definition, runner
from green_callbacks.study.definition import StudyDefinitionError, parse, plan
from green_callbacks.testing import constant_power_trace

SPIN = "green_callbacks.study.workloads:spin"


def study_text(meters: str, **settings: Any) -> str:
    lines = ["[study]", f'meters = ["{meters}"]', 'phases = ["train"]']
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines += ["", "[factors]", "size = [2000, 50000]", "", "[[workloads]]", 'name = "spin"',
              f'entry = "{SPIN}"']  # fmt: skip
    return "\n".join(lines) + "\n"


def base(**study: Any) -> dict[str, Any]:
    return {"factors": {"size": [1, 2]}, "workloads": [{"name": "w", "entry": SPIN}],
            "study": {"phases": ["train"], **study}}  # fmt: skip


def test_interleaved_blocks_hold_every_cell_once_and_are_reproducible() -> None:
    study = parse(base(repetitions=4, warmup=1, seed=7), "inline")
    runs = plan(study)

    assert [r.warmup for r in runs[:2]] == [True, True] and not any(r.warmup for r in runs[2:])
    for block in range(4):
        cells = [r.treatment["size"] for r in runs if r.block == block]
        assert sorted(cells) == [1, 2]
    assert [r.treatment for r in plan(study)] == [r.treatment for r in runs]  # same seed
    assert [r.index for r in runs] == list(range(10))


def test_blocked_order_runs_every_repetition_of_a_cell_together() -> None:
    runs = plan(parse(base(repetitions=3, order="blocked"), "inline"))

    assert [r.treatment["size"] for r in runs] == [1, 1, 1, 2, 2, 2]
    assert [r.repetition for r in runs] == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"study": {"repeats": 3}}, r"unknown key \['repeats'\] in \[study\]"),
        ({"extra": {}}, r"unknown section \['extra'\]"),
        ({"factors": {"size": [1]}}, "factor 'size' needs two or more distinct levels"),
        ({"factors": {"size": [1, 1]}}, "two or more distinct levels"),
        (
            {"workloads": [{"name": "w", "entry": "no_such_module_x:f"}]},
            "'no_such_module_x' cannot be imported here",
        ),
        ({"workloads": [{"name": "w", "entry": "math"}]}, "entry must be 'module:function'"),
        ({"study": {"order": "random"}}, "order must be one of"),
        ({"study": {"repetitions": 0}}, "repetitions must be a whole number >= 1"),
        (
            {"study": {"cooldown_s": 5, "cooldown": {"stable_within_pct": 5, "max_s": 9}}},
            "not both",
        ),
        ({"study": {"phases": ["eval"]}}, "phases must be a list drawn from"),
    ],
)
def test_a_bad_study_file_names_the_key_and_the_fix(change: dict[str, Any], message: str) -> None:
    with pytest.raises(StudyDefinitionError, match=f"^study.toml: .*{message}"):
        parse({**base(), **change}, "study.toml")


def test_a_study_runs_records_every_run_and_a_failure_does_not_stop_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "flaky_work.py").write_text(
        "def work(phase, size):\n"
        "    if size == 2:\n"
        "        raise RuntimeError('size 2 is broken')\n"
        "    return {'accuracy': 0.5}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    trace = constant_power_trace(tmp_path, 40.0)
    data = {"factors": {"size": [1, 2]},
            "workloads": [{"name": "flaky", "entry": "flaky_work:work"}],
            "study": {"phases": ["train"], "repetitions": 2, "meters": [trace],
                      "cooldown_s": 0.05, "profile": True}}  # fmt: skip
    _, records = runner.run_study(parse(data, "inline"), tmp_path / "out", progress=sys.stderr)

    assert [r["index"] for r in records] == [0, 1, 2, 3]
    ok = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] == "failed"]
    assert {r["treatment"]["size"] for r in ok} == {1} and len(ok) == 2
    assert {r["exit_code"] for r in failed} == {1} and "size 2 is broken" in failed[0]["error"]
    assert ok[0]["kind"] == "replayed" and ok[0]["metrics"] == {"accuracy": 0.5}
    assert ok[0]["energy_j"] == pytest.approx(40.0 * ok[0]["duration_s"], rel=1e-6)
    assert ok[0]["idle_w"] == pytest.approx(40.0)  # measured during the cooldown
    assert any("work" in f["function"] for f in ok[0]["profile"])
    machine = json.loads((tmp_path / "out" / runner.MACHINE).read_text())
    assert machine["logical_cores"] == os.cpu_count() and "green-callbacks" in machine["packages"]
    header = (tmp_path / "out" / runner.TABLE).read_text().splitlines()[0].split(",")
    assert {"size", "status", "energy_j", "energy_replay_j", "accuracy", "idle_w"} <= set(header)
    assert "energy_above_idle_j" in header  # a constant 40 W: nothing above idle
    above = [
        float(row.split(",")[header.index("energy_above_idle_j")])
        for row in (tmp_path / "out" / runner.TABLE).read_text().splitlines()[1:]
        if ",ok," in row
    ]
    assert above == pytest.approx([0.0, 0.0], abs=1e-6)


def test_a_study_killed_mid_run_resumes_with_every_run_exactly_once(tmp_path: Path) -> None:
    trace = constant_power_trace(tmp_path, 40.0)
    (tmp_path / "study.toml").write_text(study_text(trace, repetitions=4, cooldown_s=0.2))
    command = [sys.executable, "-m", "green_callbacks.cli", "study", "run",
               str(tmp_path / "study.toml"), "--out", str(tmp_path / "out")]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    records = tmp_path / "out" / runner.RUNS
    deadline = time.monotonic() + 120
    while not (records.exists() and len(records.read_text().splitlines()) >= 1 + 3):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)  # in the middle of a cooldown or a run
    first.wait()
    killed_at = len(records.read_text().splitlines()) - 1  # the header, then one line a run
    assert killed_at < 8

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)

    assert second.returncode == 0, second.stderr
    assert f"resuming: {killed_at} of 8 runs already recorded" in second.stderr
    indexes = [json.loads(line)["index"] for line in records.read_text().splitlines()[1:]]
    assert sorted(indexes) == list(range(8))  # every run, none twice
    rows = (tmp_path / "out" / runner.TABLE).read_text().splitlines()
    assert len(rows) == 1 + 8


def test_a_study_file_that_is_not_toml_is_named(tmp_path: Path) -> None:
    (tmp_path / "study.toml").write_text("[study\nrepetitions = ")
    with pytest.raises(StudyDefinitionError, match="study.toml is not valid TOML"):
        definition.load(tmp_path / "study.toml")


def test_metrics_keep_their_own_namespace_and_a_changed_study_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "own_work.py").write_text(
        "def work(phase, size):\n"
        "    return {'energy_j': -5.0, 'duration_s': 99.0, 'energy_gpu_j': 1.0,\n"
        "            'loss': float('nan'), 'accuracy': 0.75}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    trace = constant_power_trace(tmp_path, 40.0)
    data = {"factors": {"size": [1, 2]}, "workloads": [{"name": "own", "entry": "own_work:work"}],
            "study": {"phases": ["train"], "meters": [trace], "repetitions": 1}}  # fmt: skip
    out, records = runner.run_study(parse(data, "inline"), tmp_path / "out", progress=sys.stderr)

    assert out == tmp_path / "out" and [r["status"] for r in records] == ["ok", "ok"]
    assert records[0]["metrics"]["loss"] is None
    assert "metric loss was not a finite number: recorded as none" in records[0]["notes"]
    rows = list(csv.DictReader((out / runner.TABLE).open()))
    for row, record in zip(rows, records):
        assert float(row["energy_j"]) == record["energy_j"] > 0  # the measured figure
        assert float(row["duration_s"]) == record["duration_s"] < 99.0
        assert row["metric.energy_j"] == "-5.0" and row["metric.duration_s"] == "99.0"
        assert row["metric.energy_gpu_j"] == "1.0" and row["accuracy"] == "0.75"
        assert row["loss"] == ""

    data["factors"] = {"size": [1, 2, 3]}  # a level added: resuming would unbalance the levels
    with pytest.raises(LedgerMismatchError, match=r"study\.factors\.size: \[1, 2\] in the folder, "
                       r"\[1, 2, 3\] now.*--force-new"):  # fmt: skip
        runner.run_study(parse(data, "inline"), out, progress=sys.stderr)
    assert len((out / runner.RUNS).read_text().splitlines()) == 1 + 2  # nothing was added
    newer, more = runner.run_study(parse(data, "inline"), out, progress=sys.stderr,
                                   force_new=True)  # fmt: skip
    assert newer == tmp_path / "out-v2" and len(more) == 3
