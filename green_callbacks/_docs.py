r"""Docstrings that share an argument list: written once, shown on every class that takes it.

Example:
    >>> class Base:
    ...     __doc__ = "Base.\n\n    Args:\n        x: a number. Units: J.\n    "
    >>> @with_arguments_of(Base)
    ... class Adapter(Base):
    ...     "An adapter of Base."
    >>> print(Adapter.__doc__.strip())
    An adapter of Base.
    <BLANKLINE>
        Args:
            x: a number. Units: J.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def arguments_section(doc: str) -> str:
    """The ``Args:`` section of a class docstring (indented as written), or ``""``."""
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Args:"), None)
    if start is None:
        return ""
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and (
        not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent
    ):
        end += 1
    return "\n".join(lines[start:end]).rstrip()


def with_arguments_of(base: type) -> Callable[[T], T]:
    """Class decorator: append ``base``'s ``Args:`` section to the class's own docstring,
    so ``help()`` on a framework's adapter lists the arguments it shares with the others."""

    def decorate(cls: T) -> T:
        own = (cls.__doc__ or "").rstrip()
        cls.__doc__ = f"{own}\n\n{arguments_section(base.__doc__ or '')}\n"
        return cls

    return decorate


API_MODULES = (
    "green_callbacks", "green_callbacks.core", "green_callbacks.meters",
    "green_callbacks.policies", "green_callbacks.lightning", "green_callbacks.keras",
    "green_callbacks.hf", "green_callbacks.compress", "green_callbacks.study",
    "green_callbacks.optuna", "green_callbacks.hpo", "green_callbacks.serving",
    "green_callbacks.analysis", "green_callbacks.tf_keras",
)  # fmt: skip
"""The modules whose ``__all__`` is the public API (the frameworks' need their extras)."""


def api_page() -> str:
    """docs/api.md: every public class and function, its signature and its docstring.

    Regenerate with ``python -m green_callbacks._docs > docs/api.md``;
    ``tests/test_docstrings.py`` fails when the page and the code differ.
    """
    import enum
    import importlib
    import inspect

    out = [
        "# API reference",
        "",
        "Generated from the docstrings by `python -m green_callbacks._docs > docs/api.md`",
        "(tests/test_docstrings.py checks that it matches the code). Every argument is",
        "listed with its units; the guides in docs/ say how the pieces fit together.",
    ]
    for module_name in API_MODULES:
        module = importlib.import_module(module_name)
        out += ["", f"## `{module_name}`", ""]
        summary = inspect.getdoc(module) or ""
        out.append(summary.split("\n\n")[0])
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            try:
                signature = str(inspect.signature(obj))
            except (TypeError, ValueError):
                signature = "(...)"
            if inspect.isclass(obj) and issubclass(obj, enum.Enum):
                signature = ": " + ", ".join(member.name for member in obj)
            kind = "class" if inspect.isclass(obj) else "def"
            out += ["", f"### `{name}`", "", "```python", f"{kind} {name}{signature}", "```", ""]
            out.append(inspect.getdoc(obj) or "(no docstring)")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(api_page())
