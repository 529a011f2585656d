"""The serving subcommands as a user runs them: subprocesses of the console entry point."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

CLI = [sys.executable, "-m", "green_callbacks.cli"]

BAD_INPUT = [
    (["serve-sweep", "--policies", "fixed:x"], "batching policy 'fixed:x'"),
    (["serve-sweep", "--rates", "-5"], "the rate '-5' must be a positive number"),
    (["serve-sweep", "--replay", "no-such-arrivals.csv"], "no file no-such-arrivals.csv"),
    (["serve-sweep", "--model", "no_such_module:build"], "cannot import 'no_such_module'"),
    (["serve-sweep", "--model", "json:no_such_function"], "'json' has no function"),
    (["serve-sweep", "--model", "resnet"], "is not digits, tv:NAME or MODULE:FUNCTION"),
    (["serve-sweep", "--requests", "0"], "must be a positive whole number"),
    (["layers", "--factorial", "conv"], "write FACTOR=LEVEL,LEVEL"),
    (["layers", "--factorial", "conv=one"], "levels must be whole numbers"),
    (["layers", "--factorial", "depth=1,2"], "unknown architecture factor(s) ['depth']"),
    (["tokens", "--new", "1"], "new_tokens >= 2"),
    # sizes no machine holds: refused before allocating (a GPT-2 of 10^9 positions is ~1 TB)
    (["tokens", "--prompt", "1000000000"], "a GPT-2 of 1000000032 positions needs about"),
    (["tokens", "--batch-sizes", "10000000"], "at batch 10000000 needs about"),
    (["layers", "--batch-size", "1000000000"], "use a smaller --batch-size"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_with_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run([*CLI, *args, "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_zoo_without_torchvision_names_the_extra(tmp_path: Path) -> None:
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("torchvision is installed here (integrations/test_zoo.py runs the zoo)")
    done = subprocess.run([*CLI, "zoo", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'green-callbacks[zoo]'" in done.stderr


def test_layers_splits_an_inference_by_layer_type(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "layers", "--batches", "5", "--meter", "estimate", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    kinds = [line.split()[0] for line in done.stdout.splitlines()[1:] if "%" in line]
    assert {"conv", "linear", "activation"} <= set(kinds)
    assert "attributed by time" in done.stdout and "the hooks added" in done.stdout
    saved = json.loads((tmp_path / "layers.json").read_text())
    assert saved["split"] == "attributed" and saved["energy_kind"] == "estimated"


def test_layers_factorial_writes_runs_statistics_and_box_plots(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "layers", "--factorial", "conv=1,3", "linear=2", "--repetitions", "3", "--steps",
         "3", "--meter", "estimate", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "variants.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {r["variant"] for r in rows} == {"conv1-linear2-relu",
                                                               "conv3-linear2-relu"}  # fmt: skip
    assert "== conv" in done.stdout and "mann-whitney-u" in done.stdout
    assert "repetition 3/3" in done.stderr
    assert (tmp_path / "box_energy_j.png").stat().st_size > 5_000
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert "== energy and accuracy" in done.stdout and "the cheapest within 0.01" in done.stdout
    assert (tmp_path / "front.png").read_bytes()[:4] == b"\x89PNG"


def test_tokens_reports_each_batch_size(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    done = subprocess.run(
        [*CLI, "tokens", "--prompt", "8", "--new", "4", "--batch-sizes", "1", "4", "--rounds",
         "1", "--meter", "estimate", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "tokens.json").read_text())
    assert [c["batch_size"] for c in saved] == [1, 4]
    assert "J/generated token" in done.stdout and "energy: estimated" in done.stdout
