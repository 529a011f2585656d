"""Runs read back from the loggers that need their own library: TensorBoard and MLflow.

Both give scalars by step; an ``epoch`` scalar logged at the same steps (as
Lightning's loggers do) maps each step to its epoch, and the last value of
each metric in an epoch is that epoch's. Without an ``epoch`` scalar each
step is taken as an epoch (Keras's TensorBoard callback logs epoch figures at
step = epoch). The provenance that ``EnergyCallback`` logs as hyperparameters
(``energy_source/kind``, ``energy_source/<domain>``) comes back from MLflow's
parameters.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from green_callbacks._optional import require
from green_callbacks.analysis.run import RunReadError, RunRecord, merge_epochs

MLFLOW_PREFIX = "mlflow:"
"""A run on an MLflow tracking server: ``mlflow:RUN_ID@TRACKING_URI``."""


def by_epoch(series: Mapping[str, Iterable[tuple[int, float]]]) -> list[dict[str, float]]:
    """Per-step scalars as one row per epoch (the last value of each metric in its epoch).

    Args:
        series: metric name -> (step, value) pairs; ``epoch`` maps steps to epochs.

    Example:
        >>> by_epoch({"epoch": [(9, 0.0), (19, 1.0)], "val_acc": [(9, 0.5), (19, 0.7)]})
        [{'epoch': 0, 'val_acc': 0.5}, {'epoch': 1, 'val_acc': 0.7}]
    """
    marks = sorted((step, int(value)) for step, value in series.get("epoch", []))
    steps = [step for step, _ in marks]
    rows: dict[int, dict[str, float]] = {}
    for name, points in series.items():
        if name == "epoch":
            continue
        for step, value in sorted(points):
            if marks:  # the epoch of the first mark at or after this step
                at = min(bisect.bisect_left(steps, step), len(marks) - 1)
                epoch = marks[at][1]
            else:
                epoch = int(step)
            rows.setdefault(epoch, {"epoch": epoch})[name] = float(value)
    return [rows[k] for k in sorted(rows)]


def read_tensorboard(folder: Path, run: RunRecord) -> bool:
    """Add the scalars of the TensorBoard event files in ``folder`` to ``run``; False if none.

    Args:
        folder: a folder holding ``events.out.tfevents.*`` files.
        run: the record to fill.
    """
    if not any(folder.glob("events.out.tfevents.*")):
        return False
    accumulator = require(
        "tensorboard.backend.event_processing.event_accumulator", "tensorboard",
        purpose="Reading a TensorBoard log",
    )  # fmt: skip
    events = accumulator.EventAccumulator(str(folder), size_guidance={accumulator.SCALARS: 0})
    events.Reload()
    tags = events.Tags().get("scalars", [])
    series = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags}
    merge_epochs(run, by_epoch(series))
    run.formats.append("tensorboard")
    return True


def read_mlflow(spec: str) -> RunRecord:
    """A run from an MLflow tracking server: ``mlflow:RUN_ID@TRACKING_URI``.

    Args:
        spec: the run id and the tracking URI (``http://host:port``, ``sqlite:///file.db``).

    Raises:
        RunReadError: the spec is malformed or the server has no such run.
    """
    run_id, _, uri = spec.removeprefix(MLFLOW_PREFIX).partition("@")
    if not run_id or not uri:
        raise RunReadError(
            f"{spec!r}: write an MLflow run as mlflow:RUN_ID@TRACKING_URI "
            "(e.g. mlflow:3f2a9c@http://127.0.0.1:5000)"
        )
    tracking = require("mlflow.tracking", "mlflow", purpose="Reading an MLflow run")
    client = tracking.MlflowClient(tracking_uri=uri)
    try:
        found = client.get_run(run_id)
    except Exception as err:  # MlflowException, or the server's connection error
        raise RunReadError(f"MLflow at {uri} has no readable run {run_id!r} ({err})") from err
    series = {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in found.data.metrics
    }
    record = RunRecord(spec, ["mlflow"])
    merge_epochs(record, by_epoch(series))
    params: dict[str, Any] = dict(found.data.params)
    record.energy_kind = params.get("energy_source/kind")
    sources = {k.removeprefix("energy_source/"): v for k, v in params.items()
               if k.startswith("energy_source/") and k != "energy_source/kind"}  # fmt: skip
    record.energy_source = ", ".join(f"{d}={label}" for d, label in sorted(sources.items())) or None
    return record
