"""Runs read back from each format, including the broken ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from green_callbacks.analysis import RunReadError, read_run
from green_callbacks.core import EnergyTracker
from green_callbacks.testing import FakeClock, FakeMeter


def tracked_run(folder: Path) -> float:
    """A real tracker writes the trace and the summary: 2 epochs of 1.5 s at 80 W."""
    clock = FakeClock()
    tracker = EnergyTracker([FakeMeter({"cpu:0": 80.0}, clock=clock)], sample_interval_s=None,
                            trace_path=folder / "trace.jsonl", clock=clock).start()  # fmt: skip
    for _ in range(2):
        window = tracker.open("epoch", "train")
        clock.advance(1.5)
        tracker.close(window)
    tracker.stop()
    (folder / "summary.json").write_text(json.dumps(tracker.summary()), encoding="utf-8")
    return 240.0


def test_a_run_folder_gives_totals_provenance_windows_and_history(tmp_path: Path) -> None:
    total = tracked_run(tmp_path)
    (tmp_path / "history.csv").write_text(
        "epoch,val_acc,energy/train_epoch_j\n0,0.5,120\n1,0.8,120\n", encoding="utf-8"
    )
    run = read_run(tmp_path)
    assert run.formats == ["summary", "trace", "csv-log"]
    assert run.total_j == total and run.duration_s == 3.0
    assert run.energy_kind == "measured" and run.by_domain == {"cpu:0": total}
    assert run.energy_source == "cpu:0=measured (fake scripted-power)"
    assert [w["energy_j"] for w in run.windows if w["level"] == "epoch"] == [120.0, 120.0]
    assert run.series("val_acc") == [(0, 0.5), (1, 0.8)]
    assert run.missing == []


def test_lightning_csv_rows_of_one_epoch_are_merged(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(
        "energy/train_step_j,epoch,step,train_loss,val_acc,energy/train_epoch_j\n"
        "0.1,0,9,2.0,,\n,0,9,,0.6,\n,0,9,,,50.5\n0.1,1,19,1.5,,\n,1,19,,0.7,51.0\n",
        encoding="utf-8",
    )
    run = read_run(path)
    assert run.epochs == [
        {"epoch": 0, "energy/train_step_j": 0.1, "train_loss": 2.0, "val_acc": 0.6,
         "energy/train_epoch_j": 50.5},
        {"epoch": 1, "energy/train_step_j": 0.1, "train_loss": 1.5, "val_acc": 0.7,
         "energy/train_epoch_j": 51.0},
    ]  # fmt: skip
    assert run.total_j == 101.5  # summed from the epochs, and said so
    assert "total energy summed from the logged epochs (no energy/total_j)" in run.missing


def test_a_hugging_face_trainer_state_from_an_output_folder(tmp_path: Path) -> None:
    state = {"log_history": [
        {"epoch": 0.5, "step": 5, "loss": 2.0, "energy/train_step_j": 0.2},
        {"epoch": 1.0, "step": 10, "eval_accuracy": 0.6, "energy/train_epoch_j": 30.0},
        {"epoch": 2.0, "step": 20, "eval_accuracy": 0.7, "energy/train_epoch_j": 31.0},
    ]}  # fmt: skip
    for step in (10, 20):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
    state["log_history"] = state["log_history"][:2]
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text(json.dumps(state))
    run = read_run(tmp_path)  # the newest checkpoint's state is read
    assert run.formats == ["hf-state"]
    assert run.series("eval_accuracy") == [(0, 0.6), (1, 0.7)]
    assert run.quality_key == "eval_accuracy"
    assert run.epochs[0]["loss"] == 2.0  # the half-epoch log belongs to the first epoch


def test_a_truncated_trace_keeps_the_windows_before_the_cut(tmp_path: Path) -> None:
    tracked_run(tmp_path)
    trace = tmp_path / "trace.jsonl"
    trace.write_text(trace.read_text() + '{"level": "epoch", "energy', encoding="utf-8")
    run = read_run(trace)
    assert len(run.windows) == 3  # two epochs and the run
    assert any("last line is cut short" in note for note in run.notes)


def test_a_summary_from_before_totals_existed_is_read_for_what_it_has(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"totals": None, "notes": ["interrupted"]}), encoding="utf-8")
    run = read_run(path)
    assert run.total_j is None and "interrupted" in run.notes
    assert any("no totals" in note for note in run.notes)
    # damaged beyond that: totals that are no mapping, a job part that is no mapping
    path.write_text(json.dumps({"totals": [1, 2], "distributed": "?", "notes": []}), "utf-8")
    assert any("no totals" in note for note in read_run(path).notes)


def test_a_cut_summary_is_a_note_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text('{"totals": {"energy_j": 1', encoding="utf-8")
    (tmp_path / "history.csv").write_text("epoch,val_acc\n0,0.5\n", encoding="utf-8")
    run = read_run(tmp_path)
    assert run.formats == ["csv-log"] and any("not complete JSON" in n for n in run.notes)
    assert "no energy summary: totals from the logged figures, provenance unknown" in run.missing


def test_paths_with_nothing_readable_say_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(RunReadError, match="does not exist"):
        read_run(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(RunReadError, match=r"holds no run .*trainer_state.json"):
        read_run(tmp_path)
    csv_file = tmp_path / "other.csv"
    csv_file.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(RunReadError, match="holds no run"):
        read_run(csv_file)


HOSTILE_SUMMARY = {
    "totals": {"energy_j": None, "duration_s": "x", "domains": "lots", "sources": 5, "kind": 3},
    "notes": 7,
    "facts": {"params": "many", "checkpoints": 4, "oom_events": [1], "architecture": "Net"},
}


def test_a_summary_of_the_wrong_shape_gives_a_note_per_field(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(HOSTILE_SUMMARY), encoding="utf-8")
    run = read_run(path)
    assert (run.total_j, run.duration_s, run.by_domain, run.energy_kind) == (None, None, {}, None)
    assert run.facts == {"architecture": "Net"}  # the one fact of the right shape
    assert [n.removeprefix(f"{path}: ") for n in run.notes] == [
        "totals.energy_j is None, not a finite number >= 0; left out",
        "totals.duration_s is 'x', not a finite number >= 0; left out",
        "totals.kind is 3, not text; left out",
        "totals.domains is 'lots', not a mapping of domain to joules; left out",
        "totals.sources is 5, not a list of sources; left out",
        "notes is 7, not a list; left out",
        "facts.params is 'many', not a count; left out",
        "facts.checkpoints is 4, not a list of saves; left out",
        "facts.oom_events is [1], not a list of events; left out",
    ]
    from green_callbacks.analysis import advise

    verdicts = {f.pattern: f.verdict for f in advise(run)}
    assert verdicts["P2"] == "cannot tell" and verdicts["P7"] == "cannot tell"


def test_impossible_figures_are_left_out_not_believed(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(  # 1e400 reads as infinity
        '{"totals": {"energy_j": -5, "duration_s": 1e400, "domains": {"gpu:0": "NaN", '
        '"cpu:0": 12.5}}}',
        encoding="utf-8",
    )
    (tmp_path / "history.jsonl").write_text(
        '{"epoch": 0, "energy/train_epoch_j": -3, "val_loss": -0.5}\n'
        '{"epoch": -1, "val_acc": 0.9}\n{"epoch": "x"}\n{"epoch": 1e300}\n[]\n"text"\n'
        '{"epoch": 1, "energy/train_epoch_j": 4, "val_acc": "nan"}\n',
        encoding="utf-8",
    )
    run = read_run(tmp_path)
    assert run.total_j is None and run.duration_s is None and run.by_domain == {"cpu:0": 12.5}
    assert run.epochs == [{"epoch": 0, "val_loss": -0.5},  # a loss may be negative
                          {"epoch": 1, "energy/train_epoch_j": 4.0}]  # fmt: skip
    history = tmp_path / "history.jsonl"
    assert f"{history}: 3 entries with an epoch that is not a number from 0 were left out" in (
        run.notes
    )
    assert f"{history}: energy/train_epoch_j was negative in 1 entries; those left out" in (
        run.notes
    )


def test_json_nested_past_the_parser_is_a_note(tmp_path: Path) -> None:
    deep = '{"totals": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001
    (tmp_path / "summary.json").write_text(deep, encoding="utf-8")
    (tmp_path / "trace.jsonl").write_text("[" * 100_000 + "\n", encoding="utf-8")
    (tmp_path / "history.jsonl").write_text('{"epoch": 0, "val_acc": 0.5}\n', encoding="utf-8")
    run = read_run(tmp_path)
    assert run.series("val_acc") == [(0, 0.5)]
    assert any("nested deeper than Python's parser follows" in n for n in run.notes)
    assert any("last line is cut short or not JSON" in n for n in run.notes)


def test_a_long_log_is_read_in_groups_whose_energy_adds_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from green_callbacks.analysis import run as reader

    monkeypatch.setattr(reader, "MAX_EPOCH_ROWS", 10)
    lines = ["epoch,energy/train_epoch_j,energy/total_j,val_acc"]
    for epoch in range(100):  # two rows an epoch, as Lightning's CSVLogger writes
        lines += [f"{epoch},{epoch + 1},{(epoch + 1) * (epoch + 2) / 2},", f"{epoch},,,{epoch}"]
    (tmp_path / "metrics.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = read_run(tmp_path)
    assert run.epoch_stride == 16 and len(run.epochs) == 7  # 100 epochs in groups of 16
    assert [row["epoch"] for row in run.epochs] == [15, 31, 47, 63, 79, 95, 99]
    assert sum(j for _, j in run.epoch_energy()) == sum(range(1, 101))  # every joule once
    assert run.epochs[0]["energy/train_epoch_j"] == sum(range(1, 17))
    assert run.epochs[-1]["energy/total_j"] == 5050 and run.epochs[-1]["val_acc"] == 99
    assert any("100 epochs, read as groups of 16 consecutive epochs" in n for n in run.notes)


def test_a_long_trace_keeps_its_energy_in_merged_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from green_callbacks.analysis import run as reader

    monkeypatch.setattr(reader, "MAX_WINDOWS", 8)
    rows = [{"level": "batch", "name": "train", "start_s": i * 0.5, "duration_s": 0.5,
             "energy_j": 10.0 + i} for i in range(50)]  # fmt: skip
    rows.append({"level": "epoch", "name": "train", "start_s": 0.0, "duration_s": 25.0,
                 "energy_j": sum(r["energy_j"] for r in rows)})  # fmt: skip
    (tmp_path / "trace.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    run = read_run(tmp_path / "trace.jsonl")
    steps = [w for w in run.windows if w["level"] == "batch"]
    assert len(steps) <= 9 and sum(w["energy_j"] for w in steps) == sum(10.0 + i for i in range(50))
    assert sum(w["duration_s"] for w in steps) == 25.0
    assert any("50 step windows, drawn as groups of 8 neighbours" in n for n in run.notes)


def test_an_output_folder_as_a_user_has_it_is_found_and_joined(tmp_path: Path) -> None:
    """OUT/energy_summary.json beside the loggers' own folders (OUT/csv/version_N/,
    TensorBoard's): the summary and the newest CSV log are read as one run."""
    out = tmp_path / "out"
    out.mkdir()
    total = tracked_run(out)
    (out / "summary.json").rename(out / "energy_summary.json")
    for version, accuracy in ((0, 0.1), (1, 0.8)):  # an older fit's log, then this one's
        folder = out / "csv" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(
            f"epoch,step,val_acc,energy/train_epoch_j\n0,9,{accuracy},120\n", encoding="utf-8"
        )
    (out / ".cache" / "x").mkdir(parents=True)  # hidden: not looked into
    (out / ".cache" / "x" / "metrics.csv").write_text("epoch,val_acc\n0,0.99\n")

    run = read_run(out)
    assert run.formats == ["summary", "trace", "csv-log"]
    assert run.total_j == total and run.series("val_acc") == [(0, 0.8)]
    assert any("joined into one run: ., csv/version_1" in note for note in run.notes)
    assert any("the newest of 2 runs" in note for note in run.notes)
    assert run.source == str(out)  # where advice about the joined run goes


def test_parts_of_one_run_in_several_places_are_joined(tmp_path: Path) -> None:
    (tmp_path / "energy").mkdir()
    total = tracked_run(tmp_path / "energy")
    log = tmp_path / "elsewhere" / "metrics.csv"
    log.parent.mkdir()
    log.write_text("epoch,step,val_acc\n0,9,0.5\n1,19,0.7\n", encoding="utf-8")

    run = read_run(tmp_path / "energy", log)
    assert run.formats == ["summary", "trace", "csv-log"] and run.total_j == total
    assert run.series("val_acc") == [(0, 0.5), (1, 0.7)]
    assert f"joined from {tmp_path / 'energy'}, {log}" in run.notes
    with pytest.raises(RunReadError, match="does not exist"):
        read_run(tmp_path / "energy", tmp_path / "missing")


@pytest.mark.parametrize(("share", "kept"), [(0.0, True), (1.0, True), (1.5, False), ("x", False)])
def test_a_python_time_share_is_kept_from_0_to_1(tmp_path: Path, share: object, kept: bool) -> None:
    path = tmp_path / "summary.json"
    summary = {"totals": {"energy_j": 1.0}, "facts": {"python_time_share": share}}
    path.write_text(json.dumps(summary), encoding="utf-8")
    run = read_run(path)
    assert ("python_time_share" in run.facts) is kept
    assert bool(run.notes) is not kept
