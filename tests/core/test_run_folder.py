"""The run folder a session writes: summary, trace, history with data wait and memory, facts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from green_callbacks.analysis import advise, read_run
from green_callbacks.core.run_folder import RunFolder, versions
from green_callbacks.core.session import CallbackConfig, EnergySession
from green_callbacks.testing import FakeClock, FakeMeter


def session_in(folder: Path, clock: FakeClock, **options) -> EnergySession:
    config = CallbackConfig(meters=[FakeMeter({"cpu:0": 50.0}, clock=clock)], run_dir=folder,
                            granularity="epoch", **options)  # fmt: skip
    return EnergySession(config, clock=clock, sample_interval_s=None).start()


def epoch(session: EnergySession, clock: FakeClock, wait_s: float, step_s: float, steps: int):
    session.epoch_start("train")
    for _ in range(steps):
        clock.advance(wait_s)  # the loader
        session.batch_start("train")
        clock.advance(step_s)  # the step
        session.batch_end("train", 8)
    return session.epoch_end("train")


def test_the_data_wait_fraction_is_the_time_between_steps(tmp_path: Path) -> None:
    clock = FakeClock()
    session = session_in(tmp_path, clock)
    metrics = epoch(session, clock, wait_s=0.3, step_s=0.1, steps=5)
    assert metrics["time/data_wait_fraction"] == pytest.approx(0.75)
    assert epoch(session, clock, wait_s=0.0, step_s=0.1, steps=5)["time/data_wait_fraction"] == 0
    session.stop()


def test_without_batch_starts_no_wait_figure_is_invented(tmp_path: Path) -> None:
    clock = FakeClock()
    session = session_in(tmp_path, clock)
    session.epoch_start("train")
    clock.advance(1.0)
    session.batch_end("train", 8)
    assert "time/data_wait_fraction" not in session.epoch_end("train")
    session.stop()


def test_the_folder_holds_summary_trace_history_and_facts(tmp_path: Path) -> None:
    clock = FakeClock()
    session = session_in(tmp_path / "run", clock)
    session.facts.update(params=1234, dtypes=["float32"], checkpoints=[])
    for index, accuracy in enumerate([0.5, 0.6]):
        epoch(session, clock, wait_s=0.1, step_s=0.1, steps=2)
        session.record_epoch(index, {"val_acc": accuracy, "note": "text is left out"})
    session.note_checkpoint("epoch=1.ckpt")
    session.stop()
    folder = tmp_path / "run" / "version_0"
    assert session.folder is not None and session.folder.root == folder
    assert sorted(p.name for p in folder.iterdir()) == ["history.jsonl", "summary.json",
                                                          "trace.jsonl"]  # fmt: skip
    rows = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1] and rows[1]["val_acc"] == 0.6
    assert rows[0]["energy/train_epoch_j"] == pytest.approx(20.0)  # 0.4 s at 50 W
    assert rows[0]["time/data_wait_fraction"] == pytest.approx(0.5)
    assert rows[0]["memory/host_rss_mib"] > 10 and "note" not in rows[0]
    facts = json.loads((folder / "summary.json").read_text())["facts"]
    assert facts["params"] == 1234 and facts["checkpoints"][0]["path"] == "epoch=1.ckpt"
    run = read_run(folder)
    assert run.formats == ["summary", "trace", "history"]
    assert run.series("val_acc") == [(0, 0.5), (1, 0.6)] and run.total_j == pytest.approx(40.0)
    by_pattern = {f.pattern: f for f in advise(run)}
    assert by_pattern["P6"].verdict == "applies"  # half of every epoch waited for data
    assert by_pattern["P2"].verdict == "does not apply"  # it saved a checkpoint


def test_an_explicit_summary_path_wins_over_the_folder(tmp_path: Path) -> None:
    clock = FakeClock()
    session = session_in(tmp_path / "run", clock, summary_path=tmp_path / "mine.json")
    session.stop()
    assert (tmp_path / "mine.json").is_file()
    assert not (tmp_path / "run" / "version_0" / "summary.json").exists()


def test_each_run_gets_the_next_version_and_reading_the_root_reads_the_newest(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    root = tmp_path / "run"
    (root / "version_7x").mkdir(parents=True)  # not a version: ignored
    for accuracies in ([0.5, 0.6], [0.7]):
        session = session_in(root, clock)
        for index, accuracy in enumerate(accuracies):
            epoch(session, clock, wait_s=0.1, step_s=0.1, steps=2)
            session.record_epoch(index, {"val_acc": accuracy})
        session.stop()
    assert [n for n, _ in versions(root)] == [0, 1]
    first = read_run(root / "version_0")
    assert first.series("val_acc") == [(0, 0.5), (1, 0.6)] and not first.notes
    newest = read_run(root)
    assert newest.source == str(root / "version_1")
    assert newest.series("val_acc") == [(0, 0.7)]  # its own epochs only, not appended
    assert newest.notes == [
        f"read {root / 'version_1'}, the newest of 2 runs in {root} "
        "(give a version folder to read another)"
    ]


def test_runs_claiming_at_once_get_distinct_folders(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        claimed = list(pool.map(lambda _: RunFolder.claim(tmp_path / "run").version, range(32)))
    assert sorted(claimed) == list(range(32))


def test_a_run_folder_that_cannot_be_made_warns_and_the_run_goes_on(tmp_path: Path) -> None:
    from green_callbacks.errors import OutputError, OutputFailureWarning

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    clock = FakeClock()
    config = CallbackConfig(meters=[FakeMeter({"cpu:0": 1.0}, clock=clock)], run_dir=blocker,
                            summary_path=tmp_path / "summary.json")  # fmt: skip
    with pytest.warns(OutputFailureWarning, match=f"run folder under {blocker} cannot be made"):
        session = EnergySession(config, clock=clock, sample_interval_s=None).start()
    assert session.folder is None
    epoch(session, clock, wait_s=0.1, step_s=0.1, steps=2)
    session.record_epoch(0, {"val_acc": 0.5})  # nowhere to write: nothing, no error
    session.stop()
    assert (tmp_path / "summary.json").is_file()
    with pytest.raises(OutputError, match="run folder under"):
        EnergySession(replace(config, strict=True), clock=clock, sample_interval_s=None)


def test_a_history_that_cannot_be_written_warns_and_training_goes_on(tmp_path: Path) -> None:
    from green_callbacks.errors import OutputError, OutputFailureWarning

    clock = FakeClock()

    def session(strict: bool) -> EnergySession:
        config = CallbackConfig(
            meters=[FakeMeter({"cpu:0": 1.0}, clock=clock)],
            run_dir=tmp_path / f"run-{strict}",
            strict=strict,
            trace_path=tmp_path / f"{strict}.jsonl",
            summary_path=tmp_path / f"{strict}.json",
        )
        return EnergySession(config, clock=clock, sample_interval_s=None).start()

    lenient, strict = session(False), session(True)
    for run in (lenient, strict):  # the folder is replaced by a file during the run
        assert run.folder is not None
        run.folder.root.rmdir()
        run.folder.root.write_text("not a folder")
    with pytest.warns(OutputFailureWarning, match="run history .* cannot be written"):
        lenient.record_epoch(0, {"val_acc": 0.5})
    lenient.stop()
    assert (tmp_path / "False.json").is_file()  # the summary is kept
    with pytest.raises(OutputError, match="run history"):
        strict.record_epoch(0, {})
    strict.stop()
