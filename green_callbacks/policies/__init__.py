"""Framework-free decisions that act on energy and memory figures, and their drivers.

Numbers in, a decision with a reason and a message out (``stopping``,
``checkpointing``, ``memory``); the drivers (``stop_driver``,
``save_schedule``, ``oom_driver``) own the control flow every framework
shares, and the framework adapters only translate hooks and apply decisions
(``trainer.should_stop``, ``model.stop_training``, a save).
"""

from green_callbacks.core.memory import host_memory, host_peak_rss
from green_callbacks.errors import (
    MemoryLeakWarning,
    MonitorMissingError,
    OOMFloorError,
    OOMGuardConfigError,
    PolicyConfigError,
)
from green_callbacks.policies.checkpointing import (
    CheckpointPlanConfig,
    CheckpointPlanner,
    SaveDecision,
    SaveReason,
)
from green_callbacks.policies.memory import (
    LeakWatch,
    MemoryTrend,
    OOMEvent,
    OOMPlan,
    OOMPlanConfig,
    is_out_of_memory,
    plan_after_oom,
)
from green_callbacks.policies.oom_driver import OOMDriver
from green_callbacks.policies.save_schedule import SaveSchedule, keep_newest
from green_callbacks.policies.stop_driver import EarlyStopDriver, EnergyEarlyStoppingArgs
from green_callbacks.policies.stopping import (
    StopDecision,
    StoppingConfig,
    StoppingPolicy,
    StopReason,
)

__all__ = [
    "CheckpointPlanConfig", "CheckpointPlanner", "EarlyStopDriver", "EnergyEarlyStoppingArgs",
    "LeakWatch", "MemoryLeakWarning", "MemoryTrend", "MonitorMissingError", "OOMDriver",
    "OOMEvent", "OOMFloorError", "OOMGuardConfigError", "OOMPlan",
    "OOMPlanConfig", "PolicyConfigError", "SaveDecision", "SaveReason", "SaveSchedule",
    "StopDecision", "StopReason", "StoppingConfig", "StoppingPolicy", "host_memory",
    "host_peak_rss", "is_out_of_memory", "keep_newest", "plan_after_oom",
]  # fmt: skip
