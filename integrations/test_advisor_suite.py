"""The advisor against the truth on its held-out suite (integrations/advisor_suite.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch")

import advisor_suite as suite  # this folder: pytest puts it on the path

from green_callbacks.analysis.advisor import APPLIES


def test_no_false_positive_on_a_healthy_run_and_every_pattern_found(tmp_path: Path) -> None:
    found = suite.verdicts(tmp_path)
    table = suite.confusion(found)
    print(suite.markdown(table))  # the table of docs/advisor.md

    for case in suite.CASES:  # each run built to show a pattern shows it...
        for pattern in case.shows:
            assert found[case.name][pattern].verdict == APPLIES, (case.name, pattern)
    false_positives = [
        (case.name, pattern, found[case.name][pattern].reason)
        for case in suite.CASES
        for pattern in suite.PATTERNS
        if pattern not in case.shows and found[case.name][pattern].verdict == APPLIES
    ]
    assert false_positives == []  # ...and nothing applies that the run was not built to show
    assert all(cells["FN"] == 0 and cells["FP"] == 0 for cells in table.values()), table
    assert {p: sum(c.values()) for p, c in table.items()} == dict.fromkeys(
        suite.PATTERNS, len(suite.CASES)
    )
