"""Runs read back from what the package and the loggers wrote, and the advice they support.

- :func:`read_run`: a run folder, an energy summary, a trace, a ``CSVLogger``
  file or a Hugging Face ``trainer_state.json``, as one :class:`RunRecord`;
- :func:`advise`: the energy patterns (P1-P8) and the diminishing-returns check
  judged on that record, each a :class:`Finding` with its evidence and the
  change to make (docs/advisor.md).

Framework-free: nothing here imports a deep-learning framework.
"""

from green_callbacks.analysis.advisor import Finding, Thresholds, advise, format_advice
from green_callbacks.analysis.run import RunReadError, RunRecord, read_run

__all__ = [
    "Finding",
    "RunReadError",
    "RunRecord",
    "Thresholds",
    "advise",
    "format_advice",
    "read_run",
]
