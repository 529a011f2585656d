"""EnergyCallback on real tiny Lightning models, read back from real loggers."""

from __future__ import annotations

import csv
import json
import pickle
import threading
import time
from pathlib import Path

import pytest

pl = pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
torch = pytest.importorskip("torch", reason="needs the 'lightning' extra")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from green_callbacks.errors import (  # noqa: E402
    EnergySourceWarning,
    MeterReadError,
    OutputError,
    OutputFailureWarning,
)
from green_callbacks.lightning import EnergyCallback  # noqa: E402
from green_callbacks.testing import FakeMeter, constant_power_trace  # noqa: E402

POWER_W = 150.0


class TinyModel(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 2)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.layer(x), y))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def predict_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        return self.layer(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=generator)
    y = torch.randint(0, 2, (64,), generator=generator)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


@pytest.fixture
def trace(tmp_path: Path) -> str:
    return constant_power_trace(tmp_path, POWER_W)


def trainer(
    tmp_path: Path, callback: EnergyCallback, epochs: int = 2, **kwargs: object
) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=CSVLogger(tmp_path, name="logs", version=0),
        callbacks=[callback],
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **{"log_every_n_steps": 1, "enable_progress_bar": False, **kwargs},  # type: ignore[arg-type]
    )


def metric_rows(tmp_path: Path) -> list[dict[str, str]]:
    with (tmp_path / "logs" / "version_0" / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key)]


def test_fit_logs_epoch_energy_next_to_the_loss(tmp_path: Path, trace: str) -> None:
    trainer(tmp_path, EnergyCallback(meters=trace)).fit(TinyModel(), loader(), loader())
    rows = metric_rows(tmp_path)

    train, val, total = (
        column(rows, k) for k in ("energy/train_epoch_j", "energy/val_epoch_j", "energy/total_j")
    )
    assert len(train) == 2 and len(val) == 2
    assert min(train + val) > 0
    assert column(rows, "power/train_avg_w") == pytest.approx([POWER_W] * 2)  # val excluded
    assert column(rows, "power/val_avg_w") == pytest.approx([POWER_W] * 2)
    assert column(rows, "energy/train_j_per_sample")[0] == pytest.approx(train[0] / 64)
    assert sum(train + val) <= max(total) and total == sorted(total)
    assert any(column(rows, "train_loss"))


@pytest.mark.parametrize(("every", "accumulate"), [(2, 1), (1, 2), (2, 2)])
def test_step_figures_are_logged_at_the_steps_lightning_logs_the_loss_at(
    tmp_path: Path, trace: str, every: int, accumulate: int
) -> None:
    callback = EnergyCallback(meters=trace, granularity="batch")
    trainer(
        tmp_path, callback, epochs=1, log_every_n_steps=every, accumulate_grad_batches=accumulate
    ).fit(TinyModel(), loader())  # 4 batches

    rows = metric_rows(tmp_path)
    energy_steps = [r["step"] for r in rows if r.get("energy/train_step_j")]
    loss_steps = [r["step"] for r in rows if r.get("train_loss")]
    # (2, 1): 2 of 4 steps; (1, 2): 2 steps of 2 batches each; (2, 2): the second step
    assert energy_steps == loss_steps == {(2, 1): ["1", "3"], (1, 2): ["0", "1"],
                                          (2, 2): ["1"]}[(every, accumulate)]  # fmt: skip
    if accumulate == 2 and every == 1:  # a step's figure spans its two batches
        figures = column(rows, "energy/train_step_j")
        assert sum(figures) == pytest.approx(column(rows, "energy/train_epoch_j")[0], rel=0.1)


def test_a_lightning_without_the_step_counter_logs_epochs_and_says_why_steps_are_not(
    tmp_path: Path, trace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from green_callbacks.lightning import _compat

    monkeypatch.setattr(_compat, "step_counter", lambda trainer: None)  # a release without it
    with pytest.warns(OutputFailureWarning, match="no step's energy is logged"):
        trainer(tmp_path, EnergyCallback(meters=trace), epochs=1).fit(TinyModel(), loader())

    rows = metric_rows(tmp_path)
    assert (
        not column(rows, "energy/train_step_j") and len(column(rows, "energy/train_epoch_j")) == 1
    )


def test_batch_granularity_logs_each_step(tmp_path: Path, trace: str) -> None:
    trainer(tmp_path, EnergyCallback(meters=trace, granularity="batch"), epochs=1).fit(
        TinyModel(), loader()
    )
    rows = metric_rows(tmp_path)

    steps = column(rows, "energy/train_step_j")
    assert len(steps) == 4
    assert all(s > 0 for s in steps)
    assert sum(steps) == pytest.approx(column(rows, "energy/train_epoch_j")[0], rel=0.25)


def test_test_and_predict_report_their_energy(tmp_path: Path, trace: str) -> None:
    fitted = trainer(tmp_path, EnergyCallback(meters=trace), epochs=1)
    model = TinyModel()
    fitted.fit(model, loader())

    results = fitted.test(model, loader(), verbose=False)
    fitted.predict(model, loader())

    assert results[0]["energy/test_j"] > 0
    assert results[0]["power/test_avg_w"] == pytest.approx(POWER_W)
    predict = column(metric_rows(tmp_path), "energy/predict_j_per_sample")
    assert len(predict) == 1 and predict[0] > 0


def test_provenance_is_logged_once_as_hyperparameters(tmp_path: Path, trace: str) -> None:
    trainer(tmp_path, EnergyCallback(meters=trace), epochs=1).fit(TinyModel(), loader())

    hparams = (tmp_path / "logs" / "version_0" / "hparams.yaml").read_text()
    assert "energy_source/replay: replayed (replay trace)" in hparams
    assert "energy_source/kind: replayed" in hparams


def test_resumed_fit_continues_the_energy_total(tmp_path: Path, trace: str) -> None:
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=CSVLogger(tmp_path, name="first"),
        callbacks=[EnergyCallback(meters=trace), checkpoints],
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    first.fit(TinyModel(), loader())
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    state = next(v for k, v in saved["callbacks"].items() if "EnergyCallback" in k)

    resumed_cb = EnergyCallback(meters=trace, summary_path=tmp_path / "summary.json")
    second = trainer(tmp_path, resumed_cb, epochs=2)
    second.fit(TinyModel(), loader(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    rows = metric_rows(tmp_path)

    second_epoch = column(rows, "energy/train_epoch_j")
    assert len(second_epoch) == 1  # only the epoch left to run
    assert max(column(rows, "energy/total_j")) >= state["energy_j"]["replay"] + second_epoch[0]
    assert '"resumed": true' in (tmp_path / "summary.json").read_text()


def test_callback_pickles_before_and_after_a_run(tmp_path: Path, trace: str) -> None:
    callback = EnergyCallback(meters=trace, granularity="batch")
    pickle.loads(pickle.dumps(callback))
    trainer(tmp_path, callback, epochs=1).fit(TinyModel(), loader())

    restored = pickle.loads(pickle.dumps(callback))

    assert restored.config == callback.config


def test_a_failing_source_warns_at_the_users_fit_line_and_training_goes_on(tmp_path: Path) -> None:
    failing = FakeMeter({"gpu:0": 100.0}, fail_after=1)

    with pytest.warns(EnergySourceWarning, match="dropped") as caught:
        trainer(tmp_path, EnergyCallback(meters=[failing]), epochs=1).fit(TinyModel(), loader())

    ours = [w for w in caught if issubclass(w.category, EnergySourceWarning)]
    assert len(ours) == 1 and ours[0].filename == __file__
    # it failed at its first read: nothing measured, and the logged 0 J says it is no measurement
    assert column(metric_rows(tmp_path), "energy/train_epoch_j") == [0.0]
    assert column(metric_rows(tmp_path), "energy/train_held_j") == [0.0]
    assert "measured nothing before" in str(ours[0].message)


class BrokenLogger(CSVLogger):  # type: ignore[misc]
    """A logger whose service goes down: hyperparameters always fail, metrics once told to."""

    metrics_down = False

    def log_hyperparams(self, params: object, *args: object, **kwargs: object) -> None:
        raise ConnectionError("tracking server unreachable")

    def log_metrics(self, metrics: object, step: object = None) -> None:
        if self.metrics_down:
            raise ConnectionError("tracking server unreachable")
        super().log_metrics(metrics, step)


def test_a_failing_logger_warns_and_training_and_prediction_go_on(
    tmp_path: Path, trace: str
) -> None:
    callback, logger = EnergyCallback(meters=trace), BrokenLogger(tmp_path)
    fitting = pl.Trainer(
        max_epochs=1, logger=logger, callbacks=[callback],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        log_every_n_steps=1,
    )  # fmt: skip
    with pytest.warns(OutputFailureWarning, match="BrokenLogger could not take the energy"):
        fitting.fit(TinyModel(), loader())  # without the guard: dead at step 0 in setup
    logger.metrics_down = True
    with pytest.warns(OutputFailureWarning, match="ConnectionError"):
        predictions = fitting.predict(TinyModel(), loader())  # without it: predictions lost

    assert fitting.current_epoch == 1 and predictions is not None and len(predictions) == 4
    assert callback.summary is not None and callback.summary["totals"]["energy_j"] > 0


def test_in_strict_mode_a_failing_logger_or_sensor_ends_the_fit(tmp_path: Path, trace: str) -> None:
    strict = EnergyCallback(meters=trace, strict=True, summary_path=tmp_path / "summary.json")
    fitting = pl.Trainer(
        max_epochs=1, logger=BrokenLogger(tmp_path), callbacks=[strict],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    with pytest.raises(OutputError, match="strict mode: BrokenLogger could not take"):
        fitting.fit(TinyModel(), loader())
    assert strict.session is None and (tmp_path / "summary.json").is_file()  # closed all the same

    failing = FakeMeter({"gpu:0": 100.0}, fail_after=3)
    sensor = EnergyCallback(meters=[failing], strict=True)
    with pytest.raises(MeterReadError, match="strict mode: source 'fake'"):
        trainer(tmp_path, sensor, 1).fit(TinyModel(), loader())
    # raised, and closed all the same: the record kept, no thread left running
    assert sensor.session is None and sensor.summary is not None
    assert "scripted failure" in sensor.summary["notes"][0]
    assert not [t for t in threading.enumerate() if t.name.startswith("green-callbacks")]


@pytest.mark.parametrize(("progress_bar", "has_bar"), [(True, True), (False, True), (True, False)])
def test_the_progress_bar_shows_energy_so_far_and_power_not_the_loggers(
    tmp_path: Path, trace: str, progress_bar: bool, has_bar: bool
) -> None:
    callback = EnergyCallback(meters=trace, progress_bar=progress_bar)
    fitting = trainer(
        tmp_path, callback, epochs=1, log_every_n_steps=1, enable_progress_bar=has_bar
    )
    fitting.fit(TinyModel(), loader())

    bar = {k: float(v) for k, v in fitting.progress_bar_metrics.items()}
    if progress_bar and has_bar:  # without a bar nothing is put on it (a log call costs ~1 ms)
        assert bar["power_w"] == pytest.approx(POWER_W, rel=0.05)
        total = column(metric_rows(tmp_path), "energy/total_j")[-1]
        assert 0 < bar["energy_j"] <= total  # the last step's figure, before the epoch's end
    else:
        assert not {"energy_j", "power_w"} & set(bar)
    assert not {"energy_j", "power_w"} & set(metric_rows(tmp_path)[0])


class SlowLoader(torch.utils.data.Dataset):  # type: ignore[misc]
    """Each item takes 5 ms to load: a data pipeline slower than the step."""

    def __init__(self) -> None:
        self.inner = loader().dataset

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        time.sleep(0.005)
        return self.inner[index]


def test_run_dir_holds_history_facts_and_checkpoints_for_the_advisor(
    tmp_path: Path, trace: str
) -> None:
    from green_callbacks.analysis import advise, read_run

    slow = torch.utils.data.DataLoader(SlowLoader(), batch_size=16)
    callback = EnergyCallback(meters=trace, run_dir=tmp_path / "run")
    trainer(tmp_path, callback, epochs=3, enable_checkpointing=True,
            default_root_dir=tmp_path).fit(TinyModel(), slow, loader())  # fmt: skip
    run = read_run(tmp_path / "run")
    assert run.formats == ["summary", "trace", "history"]
    assert [row["epoch"] for row in run.epochs] == [0, 1, 2]
    for row in run.epochs:
        assert {"val_loss", "energy/train_epoch_j", "energy/val_epoch_j"} <= set(row)
        assert row["time/data_wait_fraction"] > 0.5  # 80 ms of loading per epoch, tiny steps
        assert row["memory/host_rss_mib"] > 50
        assert 0 < row["cpu/process_utilization"] <= 1
    assert run.facts["params"] == 18 and run.facts["dtypes"] == ["float32"]
    assert run.facts["architecture"] == "TinyModel" and len(run.facts["checkpoints"]) == 3
    # the validation loop's energy per sample stands for inference (64 samples a loop)
    val_j = [row["energy/val_epoch_j"] for row in run.epochs]
    assert run.facts["inference_loop"] == "val"
    assert run.facts["inference_j_per_sample"] == pytest.approx(val_j[-1] / 64)
    findings = {f.pattern: f for f in advise(run)}
    by_pattern = {pattern: f.verdict for pattern, f in findings.items()}
    assert by_pattern["P6"] == "applies" and by_pattern["P2"] == "does not apply"
    for pattern in ("P3", "P4"):  # decided now, from the validation loop's figure
        assert by_pattern[pattern] != "cannot tell"
        assert "(the val loop, at its batch size)" in findings[pattern].evidence["inference"]
    # the loggers got the same wait figure
    assert len(column(metric_rows(tmp_path), "time/data_wait_fraction")) == 3


def test_each_callback_gets_its_own_version_and_fit_then_test_keeps_it(
    tmp_path: Path, trace: str
) -> None:
    root = tmp_path / "run"
    first = EnergyCallback(meters=trace, run_dir=root)
    fitted = trainer(tmp_path, first, epochs=2)
    model = TinyModel()
    fitted.fit(model, loader(), loader())
    fitted.test(model, loader(), verbose=False)  # continues the totals: the same folder
    assert first.run_folder == root / "version_0"
    second = EnergyCallback(meters=trace, run_dir=root)
    trainer(tmp_path, second, epochs=1).fit(TinyModel(), loader(), loader())
    assert second.run_folder == root / "version_1"
    assert sorted(p.name for p in root.iterdir()) == ["version_0", "version_1"]

    from green_callbacks.analysis import read_run

    assert [row["epoch"] for row in read_run(root / "version_0").epochs] == [0, 1]
    assert [row["epoch"] for row in read_run(root).epochs] == [0]  # the newest, alone
    summary = json.loads((root / "version_0" / "summary.json").read_text())
    assert summary["totals"]["energy_j"] == first.summary["totals"]["energy_j"]  # fit + test


def test_a_second_energy_callback_is_refused_with_what_to_do(tmp_path: Path, trace: str) -> None:
    from green_callbacks.errors import CallbackConfigError

    with pytest.raises(RuntimeError, match="more than one stateful callback of type `EnergyCal"):
        pl.Trainer(callbacks=[EnergyCallback(meters=trace), EnergyCallback(meters=trace)])
    added_later = trainer(tmp_path, EnergyCallback(meters=trace), epochs=1)
    added_later.callbacks.append(EnergyCallback(meters=trace))
    with pytest.raises(CallbackConfigError, match="2 EnergyCallbacks; .*meters=\\[...\\]"):
        added_later.fit(TinyModel(), loader())


@pytest.mark.parametrize("how", ["fresh", "load_state_dict", "part", "ckpt_path", "copied"])
def test_the_summary_says_whether_the_weights_were_loaded(
    tmp_path: Path, trace: str, how: str
) -> None:
    import copy

    saved = TinyModel()
    first = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False,
                       enable_checkpointing=False)  # fmt: skip
    first.fit(saved, loader())
    checkpoint = tmp_path / "saved.ckpt"
    first.save_checkpoint(checkpoint)
    model = TinyModel()
    if how == "load_state_dict":
        model.load_state_dict(saved.state_dict())
    elif how == "part":  # a backbone's weights, as transfer learning loads them
        model.layer.load_state_dict(saved.layer.state_dict())
    elif how == "copied":  # made before anything watched it: a load cannot be ruled out
        model = copy.deepcopy(model)
    energy = EnergyCallback(meters=trace, summary_path=tmp_path / "summary.json")
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, callbacks=[energy])  # fmt: skip
    trainer.fit(model, loader(), ckpt_path=checkpoint if how == "ckpt_path" else None)

    facts = energy.summary["facts"]  # type: ignore[index]
    assert facts["loaded_weights"] == {"fresh": False, "copied": None}.get(how, True)
    assert facts["architecture"] == "TinyModel"


def test_a_lightning_without_the_bars_dict_gets_the_figures_logged_to_the_bar(
    tmp_path: Path, trace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from green_callbacks.lightning import _compat

    monkeypatch.setattr(_compat, "progress_bar_metrics", lambda trainer: None)
    fitting = trainer(tmp_path, EnergyCallback(meters=trace), epochs=1, log_every_n_steps=1,
                      enable_progress_bar=True)  # fmt: skip
    fitting.fit(TinyModel(), loader())
    bar = {k: float(v) for k, v in fitting.progress_bar_metrics.items()}
    assert bar["power_w"] == pytest.approx(POWER_W, rel=0.05)
