"""Every public class and function documents each of its arguments (``help()`` shows them)."""

from __future__ import annotations

import enum
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest

PUBLIC = (
    "green_callbacks", "green_callbacks.core", "green_callbacks.meters", "green_callbacks.policies",
    "green_callbacks.lightning", "green_callbacks.keras", "green_callbacks.hf",
    "green_callbacks.compress", "green_callbacks.study", "green_callbacks.optuna",
    "green_callbacks.hpo", "green_callbacks.serving", "green_callbacks.analysis",
    "green_callbacks.tf_keras",
)  # fmt: skip
OPTIONAL = {"green_callbacks.lightning": "lightning", "green_callbacks.keras": "keras",
            "green_callbacks.hf": "transformers", "green_callbacks.optuna": "optuna",
            "green_callbacks.hpo": "optuna", "green_callbacks.tf_keras": "tf_keras"}  # fmt: skip


def public_objects() -> list[tuple[str, Any]]:
    found = []
    for module_name in PUBLIC:
        if module_name in OPTIONAL:
            pytest.importorskip(OPTIONAL[module_name])
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, enum.Enum):
                continue  # members, not arguments
            if inspect.isclass(obj) or inspect.isfunction(obj):
                found.append((f"{module_name}.{name}", obj))
    return found


def undocumented(obj: Any) -> list[str]:
    """The arguments of ``obj`` that its docstring (or its ``__init__``'s) does not describe."""
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return []
    doc = obj.__doc__ or ""
    if inspect.isclass(obj) and obj.__init__ is not object.__init__:
        doc += obj.__init__.__doc__ or ""
    described = {line.strip().split(":")[0] for line in doc.splitlines() if ":" in line}
    described |= {
        name.strip() for line in doc.splitlines() if ":" in line
        for name in line.strip().split(":")[0].split(",")
    }  # fmt: skip
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in parameters if p.kind not in skip and p.name not in described]


def test_every_public_argument_is_documented() -> None:
    missing = {name: absent for name, obj in public_objects() if (absent := undocumented(obj))}
    assert missing == {}


def test_an_adapter_lists_the_arguments_it_shares() -> None:
    lightning = pytest.importorskip("green_callbacks.lightning")
    doc = inspect.getdoc(lightning.EnergyCallback) or ""
    assert "Args:" in doc and "summary_path: JSON file" in doc and "strict:" in doc


def test_the_api_page_matches_the_code() -> None:
    for extra in OPTIONAL.values():
        pytest.importorskip(extra)
    from green_callbacks._docs import api_page

    page = (Path(__file__).parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    assert page == api_page(), "regenerate: python -m green_callbacks._docs > docs/api.md"
