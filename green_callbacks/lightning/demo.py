"""``green-callbacks demo``: a real training run with energy next to accuracy.

Trains a small convolutional network on scikit-learn's bundled 8x8 digits (no
download) with Lightning and :class:`EnergyCallback`, prints one row per epoch
(validation accuracy, training and validation joules, average watts, where the
figures come from), and writes CSV and TensorBoard logs and a run folder
(``OUT/energy/version_N``: the JSON summary, the epoch history, a figure of
accuracy against energy, the advice and the report).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import lightning.pytorch as pl
import torch

from green_callbacks._optional import pyplot as headless_pyplot
from green_callbacks._optional import require
from green_callbacks.core import keys
from green_callbacks.errors import MissingExtraError
from green_callbacks.lightning.callback import EnergyCallback


@dataclass(frozen=True)
class DemoConfig:
    """What the demo trains and where it writes.

    Attributes:
        epochs: training epochs.
        out: folder for the CSV and TensorBoard logs and the run folders.
        meters: energy sources, as spec strings (docs/meters.md).
        batch_size: training batch size.
        seed: seed of the data split and the weights.
    """

    epochs: int = 5
    out: Path = Path("runs/demo")
    meters: Sequence[str] = ("auto",)
    batch_size: int = 32
    seed: int = 0


class DigitsCNN(pl.LightningModule):
    """Two 3x3 convolutions and a linear head for 8x8 digits; logs ``val_acc``."""

    def __init__(self, channels: int = 16, lr: float = 2e-3):
        super().__init__()
        self.lr = lr
        nn = torch.nn
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * channels * 16, 10),
        )  # fmt: skip

    def forward(self, x: Any) -> Any:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_acc", (self(x).argmax(dim=1) == y).float().mean())

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def digits_loaders(batch_size: int, seed: int) -> tuple[Any, Any]:
    """Training and validation loaders over scikit-learn's digits, 75/25 split."""
    datasets = require("sklearn.datasets", "demo", purpose="The demo's digits dataset")
    split = require("sklearn.model_selection", "demo", purpose="The demo's data split")
    digits = datasets.load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target)
    x_tr, x_va, y_tr, y_va = split.train_test_split(x, y, test_size=0.25, random_state=seed)
    data = torch.utils.data
    return (
        data.DataLoader(data.TensorDataset(x_tr, y_tr), batch_size=batch_size, shuffle=True),
        data.DataLoader(data.TensorDataset(x_va, y_va), batch_size=256),
    )


class EpochTable(pl.Callback):
    """Prints one row per epoch from the trainer's metrics; place it after EnergyCallback.

    Epochs are numbered from 0, as in the CSV and TensorBoard logs. With a
    progress bar on screen, rows are written above it.
    """

    COLUMNS = ("epoch", "val_acc", "train J", "val J", "avg W", "total J")

    def __init__(self, out: TextIO):
        self.out = out
        self.rows: list[dict[str, float]] = []

    def _print(self, trainer: Any, line: str) -> None:
        bar = trainer.progress_bar_callback
        if bar is not None and self.out is sys.stdout:
            bar.print(line)  # above the bar, not through it
        else:
            print(line, file=self.out, flush=True)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._print(trainer, "".join(f"{c:>10}" for c in self.COLUMNS))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        row = {
            "epoch": float(trainer.current_epoch),
            "val_acc": metrics.get("val_acc", float("nan")),
            "train J": metrics.get(keys.epoch_j("train"), float("nan")),
            "val J": metrics.get(keys.epoch_j("val"), float("nan")),
            "avg W": metrics.get(keys.avg_power_w("train"), float("nan")),
            "total J": metrics.get(keys.TOTAL_J, float("nan")),
        }
        self.rows.append(row)
        cells = [f"{int(row['epoch']):>10}", f"{row['val_acc']:>10.3f}"]
        cells += [f"{row[c]:>10.2f}" for c in self.COLUMNS[2:]]
        self._print(trainer, "".join(cells))


def run_demo(config: DemoConfig, out: TextIO) -> dict[str, Any]:
    """Train, print the per-epoch table, draw the figure, say where everything is.

    Returns:
        The energy summary (also written in the run folder).
    """
    loggers = require("lightning.pytorch.loggers", "demo", purpose="The demo's loggers")
    require("tensorboard", "demo", purpose="The demo's TensorBoard log")
    pl.seed_everything(config.seed, verbose=False)
    csv_logger = loggers.CSVLogger(config.out, name="csv")
    tb_logger = loggers.TensorBoardLogger(config.out, name="tensorboard")
    # out/energy/version_N, versioned as the logs are: a rerun keeps the earlier run
    energy = EnergyCallback(meters=list(config.meters), run_dir=Path(config.out) / "energy")
    table = EpochTable(out)
    trainer = pl.Trainer(
        max_epochs=config.epochs,
        accelerator="auto",
        devices=1,
        logger=[csv_logger, tb_logger],
        callbacks=[energy, table],
        enable_progress_bar=out is sys.stdout and sys.stdout.isatty(),
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=10,
    )
    train, val = digits_loaders(config.batch_size, config.seed)
    trainer.fit(DigitsCNN(), train, val)
    summary = energy.summary or {}
    print(sources_line(summary), file=out)
    kind = (summary.get("totals") or {}).get("kind", "unknown")
    print(f"CSV log:          {Path(csv_logger.log_dir) / 'metrics.csv'}", file=out)
    folder = energy.run_folder
    if folder is None:  # the run folder could not be made (a warning said why)
        return summary
    figure = draw_accuracy_against_energy(table.rows, folder / FIGURE_FILE, kind)
    print(f"energy run:       {folder} (summary.json, history.jsonl, trace.jsonl)", file=out)
    if figure is not None:
        print(f"figure:           {figure} (accuracy against cumulative energy)", file=out)
    print(f"TensorBoard logs: {tb_logger.log_dir}", file=out)
    print(f"  look at them:   tensorboard --logdir {Path(tb_logger.log_dir).parent}", file=out)
    _advise(folder, out)
    return summary


def _advise(run_dir: Path, out: TextIO) -> None:
    """The advisor's verdicts on this run and the report page (green-callbacks report/advise)."""
    from green_callbacks.analysis import advise, read_run
    from green_callbacks.analysis.report import build_report

    run = read_run(run_dir)
    findings = advise(run)
    applies = [f for f in findings if f.verdict == "applies"]
    print(f"advice:           {len(applies)} of {len(findings)} energy patterns apply", file=out)
    for finding in applies:
        print(f"  {finding.title}: {finding.reason}", file=out)
        if finding.action:
            print(f"    do: {finding.action}", file=out)
    try:
        page = build_report([run], run_dir / "report")
    except MissingExtraError:
        return
    print(f"report:           {page} (open it in a browser)", file=out)


FIGURE_FILE = "accuracy_vs_energy.png"


def draw_accuracy_against_energy(
    rows: Sequence[dict[str, float]], path: Path, kind: str
) -> Path | None:
    """The diminishing-returns curve: validation accuracy against the run's joules so far.

    ``kind`` (measured, estimated...) goes on the energy axis: a figure says where it came from.

    Returns the PNG's path, or None (with a note) when matplotlib is missing.
    """
    try:
        pyplot = headless_pyplot("demo", purpose="The demo's figure")
    except MissingExtraError:
        print("(no figure: pip install 'green-callbacks[demo]' for matplotlib)", file=sys.stderr)
        return None
    figure, axes = pyplot.subplots(figsize=(6, 4))
    joules = [row["total J"] for row in rows]
    axes.plot(joules, [row["val_acc"] for row in rows], marker="o")
    for row in rows:
        axes.annotate(f"epoch {int(row['epoch'])}", (row["total J"], row["val_acc"]),
                      textcoords="offset points", xytext=(4, -10), fontsize=8)  # fmt: skip
    axes.set_xlabel(f"energy of the run so far (J, {kind})")
    axes.margins(x=0.12, y=0.1)
    axes.set_ylabel("validation accuracy")
    axes.set_title("Accuracy against energy: where more epochs stop paying")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return path


def sources_line(summary: dict[str, Any]) -> str:
    """One line on where the figures come from: kind, then each domain's source and method.

    Example:
        >>> sources_line({"totals": {"kind": "estimated", "sources": [
        ...     {"domain": "cpu", "kind": "estimated", "source": "estimate",
        ...      "method": "utilization-model"}]}})
        'energy figures are estimated: cpu from estimate (utilization-model)'
    """
    totals = summary.get("totals") or {}
    parts = [
        f"{s['domain']} from {s['source']} ({s['method']})"
        + ("" if s["kind"] == totals.get("kind") else f", {s['kind']}")
        for s in totals.get("sources", [])
    ]
    return f"energy figures are {totals.get('kind', 'unknown')}: " + (", ".join(parts) or "none")
