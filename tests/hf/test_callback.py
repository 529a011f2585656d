"""EnergyCallback in a real transformers.Trainer, on a tiny model built in code (no download)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="needs the 'hf' extra")
transformers = pytest.importorskip("transformers", reason="needs the 'hf' extra")

from green_callbacks.hf import STATE_FILE, EnergyCallback, attach  # noqa: E402
from green_callbacks.testing import constant_power_trace  # noqa: E402

POWER_W = 150.0


class TinyClassifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 2)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        logits = self.layer(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits, labels)
        return out


def dataset() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 8, generator=generator)
    y = torch.randint(0, 2, (32,), generator=generator)
    return [{"x": x[i], "labels": y[i]} for i in range(32)]


@pytest.fixture
def trace(tmp_path: Path) -> str:
    return constant_power_trace(tmp_path, POWER_W)


def make_trainer(
    tmp_path: Path, epochs: int, callbacks: list[Any] | None = None, **args: Any
) -> Any:
    settings = {
        "output_dir": str(tmp_path / "out"), "num_train_epochs": epochs,
        "per_device_train_batch_size": 8, "logging_strategy": "epoch", "eval_strategy": "epoch",
        "save_strategy": "no", "report_to": [], "use_cpu": True, "disable_tqdm": True,
    }  # fmt: skip
    arguments = transformers.TrainingArguments(**{**settings, **args})
    return transformers.Trainer(
        model=TinyClassifier(),
        args=arguments,
        train_dataset=dataset(),
        eval_dataset=dataset(),
        callbacks=callbacks,
    )


def entries(trainer: Any, key: str) -> list[float]:
    return [e[key] for e in trainer.state.log_history if key in e]


def test_train_logs_energy_next_to_the_loss(tmp_path: Path, trace: str) -> None:
    trainer = make_trainer(tmp_path, 2, [EnergyCallback(meters=trace)])
    trainer.train()

    train, val = entries(trainer, "energy/train_epoch_j"), entries(trainer, "energy/val_epoch_j")
    assert len(train) == 2 and len(val) == 2 and min(train + val) > 0
    assert entries(trainer, "power/train_avg_w") == pytest.approx([POWER_W] * 2, rel=0.01)
    assert entries(trainer, "energy/train_j_per_sample")[0] == pytest.approx(train[0] / 32)
    loss_entries = [
        e for e in trainer.state.log_history if "loss" in e and "energy/train_epoch_j" in e
    ]
    assert len(loss_entries) == 2  # in the same log entry as the training loss
    totals = entries(trainer, "energy/total_j")
    assert totals == sorted(totals)


def test_attach_puts_the_callback_before_reporting_integrations(tmp_path: Path, trace: str) -> None:
    trainer = make_trainer(tmp_path, 1)
    callback = attach(trainer, EnergyCallback(meters=trace))

    names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert names.index("EnergyCallback") == 1 and names[0] == "DefaultFlowCallback"
    assert callback.attached


def test_unattached_callback_warns_when_report_to_is_set(tmp_path: Path, trace: str) -> None:
    trainer = make_trainer(tmp_path, 1, [EnergyCallback(meters=trace)])
    trainer.args.report_to = ["mlflow"]  # as if set: integrations were resolved at init

    with pytest.warns(UserWarning, match="attach"):
        trainer.train()


def test_resume_from_checkpoint_continues_the_total(tmp_path: Path, trace: str) -> None:
    first = make_trainer(tmp_path, 1, [EnergyCallback(meters=trace)], save_strategy="epoch")
    first.train()
    saved = tmp_path / "out" / "checkpoint-4" / STATE_FILE
    assert saved.is_file()
    first_total = entries(first, "energy/total_j")[-1]

    second = make_trainer(tmp_path, 2, [EnergyCallback(meters=trace)], save_strategy="epoch")
    second.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))

    epoch2 = entries(second, "energy/train_epoch_j")[-1]
    assert entries(second, "energy/total_j")[-1] >= first_total + epoch2 * 0.99


def test_attached_callback_meters_evaluate_and_predict_outside_train(
    tmp_path: Path, trace: str
) -> None:
    trainer = make_trainer(tmp_path, 1)
    callback = attach(trainer, EnergyCallback(meters=trace))
    trainer.train()
    trained_total = callback.summary["totals"]["energy_j"]  # type: ignore[index]

    metrics = trainer.evaluate()
    assert metrics["energy/test_j"] > 0 and "eval_loss" in metrics
    assert metrics["energy/test_j_per_sample"] == pytest.approx(metrics["energy/test_j"] / 32)
    assert trainer.state.log_history[-1]["energy/test_j"] == metrics["energy/test_j"]
    assert metrics["energy/total_j"] >= trained_total + metrics["energy/test_j"] * 0.99

    output = trainer.predict(dataset()[:20])
    assert output.predictions.shape[0] == 20
    assert output.metrics["energy/predict_j"] > 0
    assert output.metrics["energy/predict_j_per_sample"] == pytest.approx(
        output.metrics["energy/predict_j"] / 20
    )
    assert callback.summary["totals"]["kind"] == "replayed"  # type: ignore[index]


class Broken(RuntimeError):
    pass


class FailingForward(TinyClassifier):
    calls = 0

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        FailingForward.calls += 1
        if FailingForward.calls == 3:
            raise Broken("a step failed")
        return super().forward(x, labels)


class FailingCallback(transformers.TrainerCallback):  # type: ignore[misc]
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 2:
            raise Broken("another callback failed")


@pytest.mark.parametrize("where", ["step", "another callback"])
def test_a_failed_train_is_closed_with_its_summary_as_soon_as_it_ends(
    tmp_path: Path, trace: str, where: str
) -> None:
    import threading
    import time

    from green_callbacks.errors import InterruptedRunWarning

    energy = EnergyCallback(meters=trace, summary_path=tmp_path / "summary.json")
    trainer = make_trainer(tmp_path, 2, [energy] + ([FailingCallback()] if where != "step" else []))
    if where == "step":
        FailingForward.calls = 0
        trainer.model = FailingForward()
    with pytest.raises(Broken):
        trainer.train()
    with pytest.warns(InterruptedRunWarning, match=r"train\(\) ended without its end hook"):
        deadline = time.monotonic() + 5.0
        while energy.session is not None and time.monotonic() < deadline:
            time.sleep(0.02)
    assert energy.session is None
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["totals"]["energy_j"] > 0 and written["totals"]["duration_s"] < 5.0
    assert any("ended without its end hook" in note for note in written["notes"])
    names = {t.name for t in threading.enumerate()}
    assert not {"green-callbacks-sampler", "green-callbacks-watch"} & names


def test_run_dir_holds_the_history_and_the_saves(tmp_path: Path, trace: str) -> None:
    from green_callbacks.analysis import read_run

    trainer = make_trainer(tmp_path, 2, [EnergyCallback(meters=trace, run_dir=tmp_path / "run")],
                           save_strategy="epoch")  # fmt: skip
    trainer.train()
    run = read_run(tmp_path / "run")
    assert [row["epoch"] for row in run.epochs] == [0, 1]
    for row in run.epochs:
        assert {"eval_loss", "energy/val_epoch_j", "energy/train_epoch_j",
                "time/data_wait_fraction", "memory/host_rss_mib"} <= set(row)  # fmt: skip
    assert run.facts["params"] == 18 and run.facts["architecture"] == "TinyClassifier"
    assert [c["path"] for c in run.facts["checkpoints"]] == ["checkpoint-4", "checkpoint-8"]


def tiny_bert_trainer(tmp_path: Path, callbacks: list[Any] | None = None) -> Any:
    """A BERT built from a config (random weights, nothing downloaded) and its Trainer."""
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=16)  # fmt: skip
    data = [{"input_ids": torch.tensor([1, 2, 3, 4]), "labels": torch.tensor(i % 2)}
            for i in range(8)]  # fmt: skip
    arguments = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=4,
        save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config)
    return transformers.Trainer(model=model, args=arguments, train_dataset=data,
                                callbacks=callbacks)  # fmt: skip


def test_a_standard_model_built_from_a_config_is_told_to_start_pretrained(
    tmp_path: Path, trace: str
) -> None:
    from green_callbacks.analysis import advise, read_run

    tiny_bert_trainer(tmp_path, [EnergyCallback(meters=trace, run_dir=tmp_path / "run")]).train()
    run = read_run(tmp_path / "run")
    assert run.facts["architecture"] == "bert" and run.facts["loaded_weights"] is False
    [p1] = [f for f in advise(run) if f.pattern == "P1"]
    assert p1.verdict == "applies" and "bert was trained from random weights" in p1.reason


def test_the_model_card_gets_the_training_energy(tmp_path: Path, trace: str) -> None:
    from green_callbacks.hf import attach

    trainer = tiny_bert_trainer(tmp_path)
    energy = attach(trainer, EnergyCallback(meters=trace))
    trainer.train()
    trainer.create_model_card(model_name="tiny-bert")  # offline: nothing is pushed
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert energy.summary is not None
    total = energy.summary["totals"]["energy_j"]
    assert "## Energy" in card and f"({total:.3g} J)" in card
    assert "| how it was obtained | replayed (a recorded or synthetic power trace) |" in card
    assert card.index("## Training procedure") < card.index("## Energy")  # after HF's own


def test_only_the_steps_trainer_logs_are_metered(tmp_path: Path, trace: str) -> None:
    """logging_steps=2 over 4 steps: steps 2 and 4 are logged with their own figure, step 1
    (the epoch's first) is metered in case it is logged, step 3 costs no window at all."""
    windows = tmp_path / "trace.jsonl"
    energy = EnergyCallback(meters=trace, trace_path=windows)
    trainer = make_trainer(tmp_path, 1, [energy], logging_strategy="steps", logging_steps=2,
                           eval_strategy="no")  # fmt: skip
    trainer.train()

    lines = [json.loads(line) for line in windows.read_text().splitlines()]
    batches = [w for w in lines if w.get("level") == "batch"]
    assert len(batches) == 3  # steps 1, 2 and 4
    logged = [e["step"] for e in trainer.state.log_history if "energy/train_step_j" in e]
    assert logged == [2, 4]


def test_with_logging_strategy_no_no_step_is_metered(tmp_path: Path, trace: str) -> None:
    """Nothing is logged, so no step gets a window; the epoch's figures are all there."""
    windows = tmp_path / "trace.jsonl"
    energy = EnergyCallback(meters=trace, trace_path=windows)
    trainer = make_trainer(tmp_path, 1, [energy], logging_strategy="no", eval_strategy="no")
    trainer.train()

    lines = [json.loads(line) for line in windows.read_text().splitlines()]
    assert [w for w in lines if w.get("level") == "batch"] == []
    assert [w["level"] for w in lines if w.get("level") == "epoch"] == ["epoch"]
    assert energy.summary is not None and energy.summary["totals"]["energy_j"] > 0
