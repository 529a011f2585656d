"""torchvision's reference architectures, built with random weights, measured for real.

Runs where torchvision imports: .ci/run gives it its own environment (.venv-zoo, the
``zoo`` extra), since PyPI's torchvision needs a CUDA build of torch beside it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torchvision")

CLI = [sys.executable, "-m", "green_callbacks.cli"]


def test_the_thesis_timeline_at_a_reduced_size(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "zoo", "--image-size", "64", "--batch-size", "2", "--rounds", "1", "--meter",
         "estimate", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    entries = {e["name"]: e for e in json.loads((tmp_path / "zoo.json").read_text())}
    assert list(entries) == ["alexnet", "densenet121", "shufflenet_v2_x1_0", "vit_b_16",
                             "convnext_tiny"]  # fmt: skip
    # torchvision's own metadata for its default weights, and the papers' years.
    assert entries["alexnet"]["accuracy"] == pytest.approx(56.522)
    assert entries["convnext_tiny"]["accuracy"] == pytest.approx(82.52)
    assert [entries[n]["year"] for n in entries] == [2012, 2016, 2018, 2020, 2022]
    assert entries["alexnet"]["params"] == 61_100_840
    for entry in entries.values():
        assert entry["j_per_image"] > 0 and entry["energy_kind"] == "estimated"
        assert entry["image_size"] == 64
    # ViT-B/16 does about 20 times the work of ShuffleNetV2 per image.
    assert entries["vit_b_16"]["j_per_image"] > entries["shufflenet_v2_x1_0"]["j_per_image"]
    assert (tmp_path / "zoo.png").stat().st_size > 10_000
    assert "building vit_b_16 (64x64, random weights)" in done.stderr


def test_a_torchvision_model_served_by_the_sweep(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "serve-sweep", "--model", "tv:shufflenet_v2_x0_5", "--image-size", "64",
         "--rates", "40", "--policies", "fixed:1", "maxwait:4/30", "--requests", "40",
         "--idle-s", "0", "--warmup", "2", "--meter", "estimate", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "results.csv").read_text().count("\n") == 3
