"""One vocabulary across frameworks: docs/capabilities.md against the signatures, and old names."""

from __future__ import annotations

import importlib
import inspect
import re
from collections import defaultdict
from pathlib import Path

import pytest

from green_callbacks.errors import ConfigError, renamed

MATRIX = Path(__file__).parent.parent / "docs" / "capabilities.md"
ROW = re.compile(r"^\| ([^|]+) \| (\w+) \| `([\w.]+)` \| ([^|]+) \|$")
EXTRAS = {"lightning": "lightning", "keras": "keras", "hf": "transformers", "torch": "torch",
          "tf_keras": "tensorflow_model_optimization"}  # fmt: skip


def rows() -> list[tuple[str, str, str, set[str], set[str]]]:
    """(capability, framework, path, shared arguments, framework-only arguments) per table row."""
    found = []
    for line in MATRIX.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match is None or match.group(1) == "capability":
            continue
        capability, framework, path, arguments = match.groups()
        arguments = re.sub(r"\([^)]*\)", "", arguments)  # "(deprecated: ...)" notes
        names = [a.strip() for a in arguments.split(",")]
        only = {n.strip("*") for n in names if n.startswith("*")}
        shared = {n for n in names if not n.startswith("*")}
        found.append((capability, framework, path, shared, only))
    return found


def signature_names(path: str) -> set[str]:
    module, name = path.rsplit(".", 1)
    target = getattr(importlib.import_module(module), name)
    parameters = inspect.signature(target).parameters.values()
    skipped = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return {p.name for p in parameters if p.kind not in skipped and p.name != "self"}


@pytest.mark.parametrize(("capability", "framework", "path", "shared", "only"), rows())
def test_the_matrix_matches_the_signature(
    capability: str, framework: str, path: str, shared: set[str], only: set[str]
) -> None:
    pytest.importorskip(EXTRAS[framework], reason=f"needs the {framework} extra")
    assert signature_names(path) == shared | only, f"docs/capabilities.md, {path}"


def test_every_capability_shares_its_arguments_across_frameworks() -> None:
    by_capability: dict[str, dict[str, set[str]]] = defaultdict(dict)
    for capability, framework, _, shared, _ in rows():
        by_capability[capability][framework] = shared
    assert len(by_capability) >= 10
    for capability, frameworks in by_capability.items():
        first = next(iter(frameworks.values()))
        assert all(s == first for s in frameworks.values()), (capability, frameworks)


def test_a_former_name_still_works_and_says_the_new_one() -> None:
    @renamed(eval_loader="eval_data", **{"x,y": "pair"})
    def judge(*, eval_data: object = None, pair: object = None) -> tuple[object, object]:
        return eval_data, pair

    with pytest.warns(
        DeprecationWarning, match=r"judge\(eval_loader=\.\.\.\) is renamed eval_data="
    ):
        assert judge(eval_loader="batches") == ("batches", None)
    with pytest.warns(
        DeprecationWarning, match=r"judge\(x=\.\.\., y=\.\.\.\) is renamed pair=\(x, y\)"
    ):
        assert judge(x=1, y=2) == (None, (1, 2))
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigError, match="pass eval_data= only"):
        judge(eval_loader="a", eval_data="b")


def test_a_real_former_name_reaches_the_new_argument() -> None:
    torch_models = pytest.importorskip("green_callbacks.compress.torch_models")
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.warns(DeprecationWarning, match="method=.*renamed mode"):
        quantized = torch_models.quantize_linear(model, method="int8_weight_only")
    assert type(quantized[0].weight).__name__ != "Parameter"  # torchao's int8 weight
