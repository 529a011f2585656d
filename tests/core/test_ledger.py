"""The run ledger: records keyed by what produced them, one writer, damaged lines survived."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from green_callbacks import __version__
from green_callbacks.core.ledger import (
    LEDGER,
    Ledger,
    LedgerLockedError,
    LedgerMismatchError,
    read_ledger,
)

DEFINITION = {"model": "mlp", "limits": {"max_s": 30.0}}


def test_a_reopened_ledger_gives_back_exactly_the_records_of_its_definition(tmp_path) -> None:
    with Ledger.open(tmp_path, "sweep", DEFINITION) as ledger:
        ledger.append({"policy": "fixed:1"}, {"energy_j": 2.5})
        ledger.append({"policy": "fixed:8"}, {"energy_j": 1.25})
    with Ledger.open(tmp_path, "sweep", DEFINITION) as again:
        assert again.get({"policy": "fixed:8"})["energy_j"] == 1.25
        assert again.get({"policy": "fixed:16"}) is None
        assert [r["energy_j"] for r in again.records()] == [2.5, 1.25]
    header = json.loads((tmp_path / LEDGER).read_text().splitlines()[0])
    assert header["definition"] == {**DEFINITION, "package_version": __version__}


def test_another_definition_is_refused_naming_each_difference(tmp_path) -> None:
    Ledger.open(tmp_path, "sweep", DEFINITION).close()
    changed = {"model": "cnn", "limits": {"max_s": 5.0}}
    with pytest.raises(LedgerMismatchError) as caught:
        Ledger.open(tmp_path, "sweep", changed)
    message = str(caught.value)
    assert "model: 'mlp' in the folder, 'cnn' now" in message
    assert "limits.max_s: 30.0 in the folder, 5.0 now" in message
    assert "--force-new" in message


def test_force_new_writes_a_new_version_beside_the_folder(tmp_path) -> None:
    out = tmp_path / "sweep"
    with Ledger.open(out, "sweep", DEFINITION) as first:
        first.append({"policy": "fixed:1"}, {"energy_j": 2.5})
    with Ledger.open(out, "sweep", {"model": "cnn"}, force_new=True) as second:
        assert second.folder == tmp_path / "sweep-v2"
        assert list(second.records()) == []
    with Ledger.open(out, "sweep", {"model": "cnn"}, force_new=True) as third:
        assert third.folder == tmp_path / "sweep-v3"
    assert len(read_ledger(out).records) == 1  # the first folder untouched


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path) -> None:
    holder = f"another process \\(PID {os.getpid()}\\)"
    with Ledger.open(tmp_path, "study", DEFINITION), pytest.raises(LedgerLockedError, match=holder):
        Ledger.open(tmp_path, "study", DEFINITION)
    Ledger.open(tmp_path, "study", DEFINITION).close()  # released on close


def test_a_torn_last_line_is_measured_again_and_the_next_record_starts_a_fresh_line(
    tmp_path,
) -> None:
    with Ledger.open(tmp_path, "study", DEFINITION) as ledger:
        ledger.append({"index": 0}, {"status": "ok"})
    with open(tmp_path / LEDGER, "a") as handle:
        handle.write('{"status": "ok", "key": {"ind')  # the process died mid-write
    with Ledger.open(tmp_path, "study", DEFINITION) as ledger:
        assert ledger.notes == [f"{tmp_path / LEDGER} line 3 is cut short (a crash mid-write): "
                                "left out, measured again"]  # fmt: skip
        ledger.append({"index": 1}, {"status": "ok"})
    contents = read_ledger(tmp_path)
    assert [r["key"] for r in contents.records] == [{"index": 0}, {"index": 1}]


@pytest.mark.parametrize(
    ("line", "note"),
    [
        ("[1, 2]", "line 2 is not a JSON object"),
        ('{"energy_j": 3}', "line 2 has no key or fingerprint"),
        ("{{{", "line 2 is not JSON"),
    ],
)
def test_a_damaged_line_becomes_a_note(tmp_path: Path, line: str, note: str) -> None:
    Ledger.open(tmp_path, "study", DEFINITION).close()
    with open(tmp_path / LEDGER, "a") as handle:
        handle.write(line + "\n")
    contents = read_ledger(tmp_path)
    assert contents.records == [] and note in contents.notes[0]


def test_a_record_whose_fingerprint_was_edited_is_measured_again(tmp_path) -> None:
    with Ledger.open(tmp_path, "study", DEFINITION) as ledger:
        ledger.append({"index": 0}, {"energy_j": 1.0})
    text = (tmp_path / LEDGER).read_text().replace('"index": 0', '"index": 7')
    (tmp_path / LEDGER).write_text(text)
    with Ledger.open(tmp_path, "study", DEFINITION) as ledger:
        assert ledger.get({"index": 7}) is None and ledger.get({"index": 0}) is None
        assert "does not match its fingerprint" in ledger.notes[0]


def test_a_log_without_a_header_is_refused(tmp_path) -> None:
    (tmp_path / LEDGER).write_text('{"index": 0, "status": "ok"}\n')
    with pytest.raises(LedgerMismatchError, match="has no ledger header"):
        Ledger.open(tmp_path, "study", DEFINITION)
