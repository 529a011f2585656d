"""The run ledger under attack, in real processes: every answer is right or refused.

One test per way issue #25 found a recorded answer going wrong without a word:
two runners on one folder, a study or a sweep changed under the same ``--out``,
a configuration that served nothing, an overloaded server that drains its
backlog after the stream ends, a workload that leaves a child process
behind (or hangs), fits writing into one ``run_dir``, and run files of the
wrong shape. Each asserts what was kept and that the answer is right.
A replayed constant-power trace stands in for the sensor; time is real.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from green_callbacks.testing import constant_power_trace

POWER_W = 40.0
SPIN = "green_callbacks.study.workloads:spin"


def cli(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "green_callbacks.cli", *arguments],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip


def study_file(folder: Path, trace: str, sizes: list[int], **settings: object) -> Path:
    lines = ["[study]", f'meters = ["{trace}"]', 'phases = ["train"]']
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines += ["", "[factors]", f"size = {sizes}", "", "[[workloads]]", 'name = "spin"',
              f'entry = "{SPIN}"']  # fmt: skip
    path = folder / f"study_{len(sizes)}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def records(out: Path) -> list[dict[str, object]]:
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert "ledger" in json.loads(lines[0])  # the header
    return [json.loads(line) for line in lines[1:]]


def test_two_runners_on_one_folder_one_is_refused_and_each_run_is_recorded_once(
    tmp_path: Path,
) -> None:
    trace = constant_power_trace(tmp_path, POWER_W)
    study = study_file(tmp_path, trace, [1000, 2000], repetitions=3, cooldown_s=1.0)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "green_callbacks.cli", "study", "run", str(study),
               "--out", str(out)]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "runs.jsonl").exists():  # the ledger is open (its header written)
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)

    second = cli("study", "run", str(study), "--out", str(out))
    _, first_err = first.communicate(timeout=300)

    assert second.returncode == 2
    assert f"being written by another process (PID {first.pid})" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1  # one clear line, no traceback
    assert first.returncode == 0, first_err
    indexes = [r["index"] for r in records(out)]
    assert sorted(indexes) == list(range(6))  # 2 levels x 3 repetitions, each once


def test_a_changed_study_is_refused_with_the_difference_and_force_new_versions_the_folder(
    tmp_path: Path,
) -> None:
    trace = constant_power_trace(tmp_path, POWER_W)
    out = tmp_path / "out"
    ran = cli("study", "run", str(study_file(tmp_path, trace, [1000, 2000], repetitions=2)),
              "--out", str(out))  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    grown = study_file(tmp_path, trace, [1000, 2000, 3000], repetitions=2)

    refused = cli("study", "run", str(grown), "--out", str(out))

    assert refused.returncode == 2
    assert "study.factors.size: [1000, 2000] in the folder, [1000, 2000, 3000] now" in (
        refused.stderr)  # fmt: skip
    assert "--force-new" in refused.stderr
    assert len(records(out)) == 4  # nothing added: the levels stay balanced

    again = cli("study", "run", str(grown), "--out", str(out), "--force-new")
    assert again.returncode == 0, again.stderr
    newer = tmp_path / "out-v2"
    assert f"runs recorded in {newer / 'runs.csv'}" in again.stderr
    sizes = [r["treatment"]["size"] for r in records(newer)]
    assert sorted(sizes) == [1000, 1000, 2000, 2000, 3000, 3000]  # balanced, none carried over


CHILD_WORKLOAD = """
import subprocess, sys, time
from pathlib import Path


def spawn(phase, hang, pid_dir):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    Path(pid_dir, f"child_{hang}.pid").write_text(str(child.pid))
    if hang:
        time.sleep(300)
    return {"quality": 1.0}
"""


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (killed, waiting to be reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_a_workloads_child_process_is_ended_with_its_run_and_a_hang_times_out(
    tmp_path: Path,
) -> None:
    (tmp_path / "child_work.py").write_text(CHILD_WORKLOAD)
    trace = constant_power_trace(tmp_path, POWER_W)
    (tmp_path / "study.toml").write_text(
        f'[study]\nmeters = ["{trace}"]\nphases = ["train"]\nrepetitions = 1\ntimeout_s = 4\n'
        'order = "blocked"\n\n[factors]\nhang = [0, 1]\n\n'
        f'[[workloads]]\nname = "spawn"\nentry = "child_work:spawn"\n'
        f'args = {{ pid_dir = "{tmp_path}" }}\n'
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.monotonic()

    ran = cli("study", "run", str(tmp_path / "study.toml"), "--out", str(tmp_path / "out"),
              env=env)  # fmt: skip

    assert ran.returncode == 0, ran.stderr
    assert time.monotonic() - started < 60  # neither the child nor the hang held the runner
    by_hang = {r["treatment"]["hang"]: r for r in records(tmp_path / "out")}
    assert by_hang[0]["status"] == "ok"
    assert by_hang[1]["status"] == "failed" and "timed out after 4 s" in by_hang[1]["error"]
    for hang in (0, 1):
        pid = int((tmp_path / f"child_{hang}.pid").read_text())
        assert not alive(pid), f"the child of the run with hang={hang} outlived it"


SLOW_MODEL = '''
import time

import torch


class Slow(torch.nn.Module):
    """50 ms a batch, whatever its size: 20 batches a second at most."""

    def forward(self, x):
        time.sleep(0.05)
        return x.sum(dim=1)


def slow():
    return Slow(), torch.zeros(4)
'''


def sweep(
    out: Path,
    trace: str,
    *extra: str,
    env: dict[str, str] | None = None,
    rates: tuple[str, ...] = ("200",),
    policies: tuple[str, ...] = ("fixed:1",),
) -> subprocess.CompletedProcess[str]:
    return cli("serve-sweep", "--rates", *rates, "--policies", *policies, "--warmup", "0",
               "--idle-s", "0", "--meter", trace, "--out", str(out), *extra, env=env)  # fmt: skip


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_sweep_rerun_with_another_model_or_limit_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "slow_model.py").write_text(SLOW_MODEL)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    trace = constant_power_trace(tmp_path, POWER_W)
    out = tmp_path / "sweep"
    first = sweep(out, trace, "--model", "digits", "--requests", "20")
    assert first.returncode == 0, first.stderr

    other_model = sweep(out, trace, "--model", "slow_model:slow", "--requests", "20", env=env)
    other_cap = sweep(out, trace, "--model", "digits", "--requests", "20", "--max-s", "5")
    same = sweep(out, trace, "--model", "digits", "--requests", "20")

    assert other_model.returncode == 2
    assert "model: 'digits image_size=64' in the folder, 'slow_model:slow image_size=64' now" in (
        other_model.stderr)  # fmt: skip
    assert other_cap.returncode == 2
    assert "config.max_s: 30.0 in the folder, 5.0 now" in other_cap.stderr
    assert same.returncode == 0 and "[1/1]" not in same.stderr  # resumed: nothing re-measured
    assert len(records(out)) == 1
    newer = sweep(out, trace, "--model", "slow_model:slow", "--requests", "20", "--force-new",
                  env=env)  # fmt: skip
    assert newer.returncode == 0, newer.stderr
    assert len(records(tmp_path / "sweep-v2")) == 1 and len(records(out)) == 1


def test_a_configuration_that_served_nothing_is_recorded_and_the_sweep_goes_on(
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch")
    trace = constant_power_trace(tmp_path, POWER_W)
    out = tmp_path / "sweep"
    arguments = ("--model", "digits", "--requests", "40", "--max-s", "2", "--slo-ms", "100")

    done = sweep(out, trace, *arguments, rates=("1",), policies=("fixed:32", "fixed:1"))
    again = sweep(out, trace, *arguments, rates=("1",), policies=("fixed:32", "fixed:1"))

    assert done.returncode == 0, done.stderr
    assert again.returncode == 0, again.stderr  # reading the none back does not crash either
    nothing, some = rows(out)
    assert nothing["policy"] == "fixed:32" and nothing["served"] == "0"
    assert nothing["j_per_request"] == "" and nothing["latency_p99_ms"] == ""
    assert "nothing was served before the wall-clock cap (2 s)" in nothing["note"]
    assert 1 <= int(some["served"]) <= 3 and some["capped"] == "True"
    assert "regular:1 fixed:32: nothing was served" in done.stdout
    assert json.loads((out / "recommendation.json").read_text())[0]["chosen"] is None


def test_an_overloaded_server_that_drains_afterwards_did_not_keep_up(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "slow_model.py").write_text(SLOW_MODEL)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    trace = constant_power_trace(tmp_path, POWER_W)
    out = tmp_path / "sweep"

    # 100 requests/s for 0.6 s against at most 20 batches of one a second: all 60 are answered
    # within the cap (the backlog drains in about 3 s), but the server fell behind all along.
    done = sweep(out, trace, "--model", "slow_model:slow", "--requests", "60", "--slo-ms",
                 "100000", rates=("100",), env=env)  # fmt: skip

    assert done.returncode == 0, done.stderr
    [row] = rows(out)
    assert row["served"] == "60" and row["capped"] == "False"
    assert row["kept_up"] == "False"
    assert float(row["queue_growth_rps"]) == pytest.approx(80.0, rel=0.25)  # 100 in, <= 20 out
    assert float(row["throughput_rps"]) < 21.0
    [recommendation] = json.loads((out / "recommendation.json").read_text())
    assert recommendation["chosen"] is None  # never recommended, whatever the objective


KERAS_FIT = """
import sys
import numpy as np
import keras
from green_callbacks.keras import EnergyCallback

epochs, root, trace = int(sys.argv[1]), sys.argv[2], sys.argv[3]
x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
energy = EnergyCallback(meters=trace, run_dir=root)
model.fit(x, x.sum(axis=1), epochs=epochs, batch_size=32, verbose=0, callbacks=[energy])
print(energy.run_folder)
"""


def test_fits_into_one_run_dir_each_get_a_folder_of_their_own(tmp_path: Path) -> None:
    """Two fits started at once and a third after them: three folders, no history mixed."""
    from green_callbacks.analysis import read_run

    trace = constant_power_trace(tmp_path, POWER_W)
    root = tmp_path / "runs"
    command = [sys.executable, "-c", KERAS_FIT]
    together = [subprocess.Popen([*command, str(epochs), str(root), trace], text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for epochs in (3, 2)]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in together]
    assert all(p.returncode == 0 for p in together), [err[-2000:] for _, err in outputs]
    after = subprocess.run([*command, "4", str(root), trace], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert after.returncode == 0, after.stderr[-2000:]

    folders = [Path(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sorted(f.name for f in folders) == ["version_0", "version_1"]
    assert Path(after.stdout.strip().splitlines()[-1]) == root / "version_2"
    for folder, epochs in zip(folders, (3, 2), strict=True):
        assert [row["epoch"] for row in read_run(folder).epochs] == list(range(epochs))
    newest = read_run(root)  # the root: the newest run, said so
    assert [row["epoch"] for row in newest.epochs] == [0, 1, 2, 3]
    assert newest.notes[0].startswith(f"read {root / 'version_2'}, the newest of 3 runs")


def test_hostile_run_files_are_read_with_notes_and_escaped(tmp_path: Path) -> None:
    """report, advise and card as a user runs them, on files no run of this package wrote."""
    shaped = tmp_path / "shaped"
    shaped.mkdir()
    (shaped / "summary.json").write_text(json.dumps({
        "totals": {"energy_j": None, "duration_s": 60.0, "domains": "lots", "kind": "measured",
                   "sources": [{"domain": "<script>alert(1)</script>", "kind": "measured"}]},
        "facts": {"checkpoints": 4},
        "notes": ["<img src=x onerror=alert(1)>"],
    }))  # fmt: skip
    (shaped / "history.jsonl").write_text(
        "".join(json.dumps({"epoch": e, "val_acc$": 0.5 + e / 100, "energy/train_epoch_j": 10})
                + "\n" for e in range(5)) + '{"epoch": -1}\n[' + "[" * 100_000 + "\n"
    )  # fmt: skip
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "summary.json").write_text('{"totals": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001)

    page = tmp_path / "report"
    report = cli("report", str(shaped), "--out", str(page))
    assert report.returncode == 0, report.stderr
    html = (page / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "totals.domains is &#x27;lots&#x27;" in html
    advice = cli("advise", str(shaped))
    assert advice.returncode == 0, advice.stderr
    assert "facts.checkpoints is 4, not a list of saves" in advice.stdout
    assert "[cannot tell] P2" in advice.stdout
    card = cli("card", str(shaped))
    assert card.returncode == 0, card.stderr
    assert "not recorded (the summary's energy_j" in card.stdout and "<" not in card.stdout
    for command in ("report", "advise", "card"):
        done = cli(command, str(deep), *(["--out", str(tmp_path / "r2")] * (command == "report")))
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "nested deeper than Python's parser follows" in done.stderr
