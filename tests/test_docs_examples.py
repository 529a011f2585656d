"""Examples in docstrings and docs/ are executed, so they never rot."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import green_callbacks

DOCS = Path(__file__).resolve().parent.parent / "docs"
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(green_callbacks.__path__, "green_callbacks.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


GENERATED = {"api.md"}  # the docstrings' own examples, run above in their modules


@pytest.mark.parametrize(
    "path", sorted(p for p in DOCS.glob("*.md") if p.name not in GENERATED), ids=lambda p: p.name
)
def test_docs_examples(path: Path) -> None:
    result = doctest.testfile(str(path), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
