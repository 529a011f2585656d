"""Import optional dependencies on demand, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from green_callbacks.errors import MissingExtraError


def require(module: str, extra: str, *, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra.

    Args:
        module: importable module name, e.g. ``"pyRAPL"``.
        extra: the green-callbacks extra that installs it, e.g. ``"pyrapl"``.
        purpose: what the module is needed for, shown in the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise missing_extra(err, extra, purpose=purpose) from err


def pyplot(extra: str, *, purpose: str) -> ModuleType:
    """matplotlib's pyplot drawing to files only (no display needed), or a clear error.

    Args:
        extra: the green-callbacks extra that installs matplotlib.
        purpose: what the figure is, shown in the message.
    """
    matplotlib = require("matplotlib", extra, purpose=purpose)
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", extra, purpose=purpose)


def missing_extra(err: ImportError, extra: str, *, purpose: str) -> MissingExtraError:
    """The error for an optional dependency that failed to import, naming the extra to install."""
    return MissingExtraError(
        f"{purpose} needs a module that is not installed ({err}). "
        f"Install it with: pip install 'green-callbacks[{extra}]'"
    )
