"""The advisor's held-out suite: small real Lightning fits on digits, each built to show one
energy pattern, and healthy ones, with the truth of every rule for each.

Each run is judged from its run folder alone, as a user's would be. The
thresholds are the defaults, except two scaled to runs of seconds on a small
CPU, each well away from what the runs measure: a "long" run is 0.01 s (an
hour by default: every run but the one without checkpoints saves one), and
inference worth compressing costs ``HIGH_J_PER_SAMPLE`` (0.01 J by default;
the wide MLP costs about 0.007 J here, and the other models are too small to
compress at all). The confusion
table of verdicts against the truth is in docs/advisor.md;
``python integrations/advisor_suite.py`` prints it anew.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from green_callbacks.analysis import Thresholds, advise, read_run
from green_callbacks.analysis.advisor import APPLIES, CANNOT_TELL, DOES_NOT_APPLY
from green_callbacks.lightning import EnergyCallback
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders

HIGH_J_PER_SAMPLE = 0.001
THRESHOLDS = Thresholds(long_run_s=0.01, high_j_per_sample=HIGH_J_PER_SAMPLE)
PATTERNS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "returns")


class ResNet(DigitsCNN):
    """A small residual network: an architecture with public pre-trained weights, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(16, 16, 3, padding=1))  # fmt: skip
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 10))
        del self.net

    def forward(self, x: Any) -> Any:
        h = torch.relu(self.stem(x))
        return self.head(torch.relu(h + self.block(h)))


class Wide(DigitsCNN):
    """Four million float32 weights: costly inference, worth pruning, quantizing, distilling."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 2048), nn.ReLU(),
                                 nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))  # fmt: skip


class Leaky(DigitsCNN):
    """Keeps 8 MiB of tensors from every step: the classic leak of a list of losses."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[torch.Tensor] = []

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self.kept.append(torch.ones(2 * 2**20))  # 8 MiB of float32
        return super().training_step(batch, batch_idx)


class Looped(DigitsCNN):
    """Runs its network one sample at a time: a Python loop where one batched call would do."""

    def forward(self, x: Any) -> Any:
        return torch.cat([self.net(row.unsqueeze(0)) for row in x])


class SlowData(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Digits read one sample at a time, 1 ms each, on the training process."""

    def __init__(self, data: torch.utils.data.Dataset) -> None:  # type: ignore[type-arg]
        self.data = data

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        time.sleep(0.001)
        return self.data[index]


@dataclass(frozen=True)
class Case:
    """One run of the suite: how it is made, and the truth of every rule for it."""

    name: str
    model: Callable[[], pl.LightningModule]
    shows: tuple[str, ...] = ()
    """The patterns the run was built to show (the truth: these apply, no others)."""
    epochs: int = 4
    checkpoint: bool = True
    slow_data: bool = False
    loaded_from: str | None = None
    """Another case whose trained weights this one starts from."""
    extra: dict[str, Any] = field(default_factory=dict)

    def truth(self, pattern: str) -> str:
        return APPLIES if pattern in self.shows else DOES_NOT_APPLY


CASES = (
    Case("healthy CNN", DigitsCNN),
    Case("healthy CNN, still learning at 8 epochs", lambda: DigitsCNN(lr=5e-5), epochs=8),
    Case("ResNet from random weights", ResNet, shows=("P1",)),
    Case("ResNet fine-tuned", ResNet, loaded_from="ResNet from random weights"),
    Case("no checkpoints", DigitsCNN, shows=("P2",), checkpoint=False),
    Case("wide MLP", Wide, shows=("P3", "P4", "P5")),
    Case("slow data loading", DigitsCNN, shows=("P6",), slow_data=True),
    Case("leak", Leaky, shows=("P7",)),
    Case("per-sample loop", Looped, shows=("P8",)),
    Case("flat accuracy", lambda: DigitsCNN(lr=1e-2), shows=("returns",), epochs=12),
)


def run(case: Case, root: Path, weights: dict[str, dict[str, Any]]) -> Path:
    """Fit ``case``; its run folder. ``weights`` keeps each case's trained weights."""
    torch.manual_seed(0)
    train, val = digits_loaders(batch_size=64, seed=0)
    if case.slow_data:
        train = torch.utils.data.DataLoader(SlowData(train.dataset), batch_size=64)
    model = case.model()
    if case.loaded_from is not None:
        model.load_state_dict(weights[case.loaded_from])
    energy = EnergyCallback(meters="estimate", run_dir=root / case.name.replace(" ", "_"))
    callbacks: list[pl.Callback] = [energy]
    if case.checkpoint:
        callbacks.append(ModelCheckpoint(dirpath=root / "checkpoints" / case.name))
    trainer = pl.Trainer(max_epochs=case.epochs, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=case.checkpoint,
                         callbacks=callbacks)  # fmt: skip
    trainer.fit(model, train, val)
    weights[case.name] = model.state_dict()
    assert energy.run_folder is not None
    return energy.run_folder


def verdicts(root: Path, progress: Callable[[str], None] = lambda line: None) -> dict[str, dict]:
    """Every case's findings, by case name and pattern."""
    weights: dict[str, dict[str, Any]] = {}
    found = {}
    for number, case in enumerate(CASES, 1):
        progress(f"[{number}/{len(CASES)}] {case.name}")
        findings = advise(read_run(run(case, root, weights)), THRESHOLDS)
        found[case.name] = {f.pattern: f for f in findings}
    return found


def confusion(found: dict[str, dict]) -> dict[str, dict[str, int]]:
    """Per pattern: true and false positives and negatives, and cannot-tells."""
    table = {p: {"TP": 0, "FP": 0, "TN": 0, "FN": 0, "cannot tell": 0} for p in PATTERNS}
    for case in CASES:
        for pattern in PATTERNS:
            verdict, truth = found[case.name][pattern].verdict, case.truth(pattern)
            cell = (
                "cannot tell"
                if verdict == CANNOT_TELL
                else ("T" if (verdict == APPLIES) == (truth == APPLIES) else "F")
                + ("P" if verdict == APPLIES else "N")
            )
            table[pattern][cell] += 1
    return table


def markdown(table: dict[str, dict[str, int]]) -> str:
    """The confusion table as markdown."""
    columns = ("TP", "FP", "TN", "FN", "cannot tell")
    lines = ["| pattern | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for pattern, cells in table.items():
        lines.append(f"| {pattern} | " + " | ".join(str(cells[c]) for c in columns) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        found = verdicts(Path(folder), lambda line: print(line, file=sys.stderr, flush=True))
    for name, findings in found.items():
        print(name, "|", ", ".join(f"{p}: {f.verdict}" for p, f in findings.items()))
    print(markdown(confusion(found)))
