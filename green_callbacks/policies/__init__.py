"""Framework-free decisions that act on energy and memory figures.

Numbers in, a decision with a reason and a message out; the framework
adapters apply them (``trainer.should_stop``, ``model.stop_training``, a save).
"""

from green_callbacks.policies.checkpointing import (
    CheckpointPlanConfig,
    CheckpointPlanner,
    SaveDecision,
    SaveReason,
)
from green_callbacks.policies.memory import (
    LeakWatch,
    MemoryLeakWarning,
    MemoryTrend,
    OOMEvent,
    OOMFloorError,
    OOMGuardConfigError,
    OOMGuardState,
    OOMPlan,
    OOMPlanConfig,
    host_memory,
    host_peak_rss,
    is_out_of_memory,
    plan_after_oom,
)
from green_callbacks.policies.stopping import (
    PolicyConfigError,
    StopDecision,
    StoppingConfig,
    StoppingPolicy,
    StopReason,
)

__all__ = [
    "CheckpointPlanConfig", "CheckpointPlanner", "LeakWatch", "MemoryLeakWarning", "MemoryTrend",
    "OOMEvent", "OOMFloorError", "OOMGuardConfigError", "OOMGuardState", "OOMPlan",
    "OOMPlanConfig", "PolicyConfigError", "SaveDecision", "SaveReason", "StopDecision",
    "StopReason", "StoppingConfig", "StoppingPolicy", "host_memory", "host_peak_rss",
    "is_out_of_memory", "plan_after_oom"
]  # fmt: skip
