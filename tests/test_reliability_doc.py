"""docs/reliability.md names, for each fault, the tests that prove it: they must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAGE = ROOT / "docs" / "reliability.md"
REFERENCE = re.compile(r"`((?:tests|integrations)/[\w/]+\.py)::(test_\w+)`")


def references() -> list[tuple[str, str]]:
    return REFERENCE.findall(PAGE.read_text(encoding="utf-8"))


def test_every_row_of_the_table_names_a_test() -> None:
    rows = [line for line in PAGE.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    body = rows[2:]  # after the header and its rule
    assert len(body) >= 15
    assert [row for row in body if not REFERENCE.search(row)] == []


@pytest.mark.parametrize(("path", "name"), references(), ids=lambda value: str(value))
def test_the_named_test_exists(path: str, name: str) -> None:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert name in defined, f"docs/reliability.md names {path}::{name}, which does not exist"
