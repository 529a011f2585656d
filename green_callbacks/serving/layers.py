"""Where a torch model's joules go: each batch's energy split over its modules by time.

Hooks time every module's forward pass (and backward pass when training); a
module's own time is its time minus its children's, so nothing is counted twice
and the ops a ``forward`` runs outside any child (a matmul in an attention
block, a flatten) belong to the module that runs them. Each batch's energy,
read from the meters at its ends, is shared out in proportion to those times,
and what no hook saw (the optimizer step, Python between modules) is left as
``(outside modules)``. The shares are **attributed**, never measured: no meter
sees a layer. On a GPU the hooks synchronise, so times are the kernels' own.

The hooks cost time: batches run once without them and once with them, and the
difference is reported (``hook_overhead``). They are removed afterwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from green_callbacks.core.tracker import EnergyTracker
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock
from green_callbacks.serving.stream import ServingConfigError

OUTSIDE = "(outside modules)"
DISTORTING_OVERHEAD = 0.2
"""Hooks adding more than this share of a batch's time make the split a caution case."""
TYPES = (
    ("attention", ("attention", "attn")),
    ("normalisation", ("norm",)),
    ("conv", ("conv",)),
    ("linear", ("linear", "bilinear")),
    ("embedding", ("embedding",)),
    ("pooling", ("pool",)),
    ("activation", ("relu", "gelu", "silu", "sigmoid", "tanh", "softmax", "hardswish", "elu",
                    "mish", "softplus", "hardtanh", "glu", "prelu", "swish", "act")),
    ("dropout", ("dropout",)),
)  # fmt: skip
"""Layer types by the lower-case class name's first matching fragment, in this order."""


def layer_type(module: Any) -> str:
    """The layer type of a module: ``conv``, ``linear``, ``attention``... or ``other``.

    Args:
        module: a torch module (its class name decides; Hugging Face's ``Conv1D``
            is a linear layer).

    Example:
        >>> class Conv2d: pass
        >>> class LayerNorm: pass
        >>> layer_type(Conv2d()), layer_type(LayerNorm())
        ('conv', 'normalisation')
    """
    cls = type(module)
    name = cls.__name__.lower()
    if name == "conv1d" and cls.__module__.startswith("transformers"):
        return "linear"
    for kind, fragments in TYPES:
        if any(fragment in name for fragment in fragments):
            return kind
    return "other"


@dataclass(frozen=True)
class Attribution:
    """A model's energy per module and per layer type.

    Attributes:
        by_module: module path (``features.0``; the root is ``""``) -> attributed J.
        by_type: layer type -> attributed J, ``(outside modules)`` included.
        seconds_by_module: module path -> its own time. Units: s.
        module_types: module path -> its layer type.
        energy_j: the batches' measured energy, all of it. Units: J.
        batches: batches run with the hooks.
        hook_overhead: (time with hooks - time without) / time without, per batch.
        energy_kind: provenance of ``energy_j``; the split is always ``attributed``.
        energy_source: the meters, as ``domain=label`` pairs.
        split: how the energy was divided: always ``attributed`` (by time, not metered).
    """

    by_module: dict[str, float]
    by_type: dict[str, float]
    seconds_by_module: dict[str, float]
    module_types: dict[str, str]
    energy_j: float
    batches: int
    hook_overhead: float
    energy_kind: str
    energy_source: str
    split: str = field(default="attributed")

    @property
    def caution(self) -> str | None:
        """A warning when the hooks' own cost is large enough to distort the shares."""
        if self.hook_overhead <= DISTORTING_OVERHEAD:
            return None
        return (
            f"the timing hooks added {self.hook_overhead:.0%} time: on modules this fast their "
            "own cost (counted in the parents' own time) distorts the shares; use larger "
            "batches or read the shares of the larger layers only"
        )

    def shares(self) -> dict[str, float]:
        """Each layer type's share of the energy, largest first."""
        total = sum(self.by_type.values()) or 1.0
        ordered = sorted(self.by_type.items(), key=lambda item: -item[1])
        return {kind: joules / total for kind, joules in ordered}


class _Timer:
    """Own time per module from pre/post hooks, with a stack for nesting."""

    def __init__(self, clock: Clock, synchronize: Callable[[], None] | None):
        self.clock, self.synchronize = clock, synchronize
        self.stack: list[list[Any]] = []  # [name, start, children's time]
        self.own: dict[str, float] = {}

    def now(self) -> float:
        if self.synchronize is not None:
            self.synchronize()
        return self.clock()

    def enter(self, name: str) -> None:
        self.stack.append([name, self.now(), 0.0])

    def leave(self, name: str) -> None:
        while self.stack:  # a module that raised leaves its frame: pop up to this name
            frame = self.stack.pop()
            if frame[0] == name:
                break
        else:
            return
        elapsed = self.now() - frame[1]
        self.own[name] = self.own.get(name, 0.0) + elapsed - frame[2]
        if self.stack:
            self.stack[-1][2] += elapsed


@contextmanager
def _hooked(model: Any, timer: _Timer, backward: bool) -> Iterator[dict[str, Any]]:
    modules = dict(model.named_modules())
    handles = []
    for name, module in modules.items():
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: timer.enter(n)))
        handles.append(module.register_forward_hook(lambda m, a, o, n=name: timer.leave(n)))
        if backward and not any(True for _ in module.children()):  # leaves: no nesting to undo
            label = f"{name} (backward)"
            handles.append(module.register_full_backward_pre_hook(
                lambda m, g, n=label: timer.enter(n)))  # fmt: skip
            handles.append(module.register_full_backward_hook(
                lambda m, gi, go, n=label: timer.leave(n)))  # fmt: skip
    try:
        yield modules
    finally:
        for handle in handles:
            handle.remove()


def attribute(
    model: Any,
    step: Callable[[], Any],
    *,
    batches: int = 20,
    backward: bool = False,
    meters: Any = "auto",
    clock: Clock = DEFAULT_CLOCK,
) -> Attribution:
    """Run ``step`` ``batches`` times with and without hooks and split its energy by module.

    Args:
        model: the torch module whose submodules are timed.
        step: one batch of work: inference (``model(x)``) or a training step
            (forward, loss, backward, optimizer step).
        batches: batches per pass (one pass without hooks, one with).
        backward: also time each leaf module's backward pass (a training step).
        meters: as :class:`~green_callbacks.core.EnergyTracker`.
        clock: monotonic clock (tests pass a fake one).

    Raises:
        ServingConfigError: ``batches`` is below 1, or ``model`` is not a torch module.
    """
    if batches < 1:
        raise ServingConfigError(f"batches must be >= 1, got {batches}")
    if not hasattr(model, "named_modules"):
        raise ServingConfigError(f"attribution needs a torch module, got {type(model).__name__}")
    import torch

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    synchronize = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    step()  # warm-up
    timer = _Timer(clock, synchronize)
    tracker = EnergyTracker(meters, sample_interval_s=None, clock=clock).start()
    try:
        plain_s = _timed(step, batches, timer)
        with _hooked(model, timer, backward) as modules, warnings.catch_warnings():
            # The first layer's inputs need no gradient, so torch fires its backward hook
            # with the pre-hook and says so on every batch: its backward time reads as 0.
            warnings.filterwarnings("ignore", "Full backward hook is firing", UserWarning)
            types = {name: layer_type(module) for name, module in modules.items()}
            by_module, energy_j, hooked_s = _split(step, batches, timer, tracker)
        kind = tracker.kind
        source = tracker.source
    finally:
        tracker.stop()
    by_type: dict[str, float] = {}
    for name, joules in by_module.items():
        kind_of = OUTSIDE if name == OUTSIDE else types[name.removesuffix(" (backward)")]
        by_type[kind_of] = by_type.get(kind_of, 0.0) + joules
    types.update({n: types[n.removesuffix(" (backward)")]
                  for n in by_module if n.endswith(" (backward)")})  # fmt: skip
    return Attribution(
        by_module, by_type, dict(timer.own), {n: types.get(n, OUTSIDE) for n in by_module},
        energy_j, batches, (hooked_s - plain_s) / plain_s if plain_s > 0 else 0.0, kind, source,
    )  # fmt: skip


def _timed(step: Callable[[], Any], batches: int, timer: _Timer) -> float:
    start = timer.now()
    for _ in range(batches):
        step()
    return timer.now() - start


def _split(
    step: Callable[[], Any], batches: int, timer: _Timer, tracker: EnergyTracker
) -> tuple[dict[str, float], float, float]:
    """Each batch's energy shared by its modules' own times; the rest outside them."""
    by_module: dict[str, float] = {}
    total_j = total_s = 0.0
    for _ in range(batches):
        before = dict(timer.own)
        window = tracker.open("batch", "attribute", exact=True)
        step()
        timer.now()  # the batch's work is done (GPU) before its window closes
        result = tracker.close(window, exact=True)
        total_j += result.energy_j
        total_s += result.duration_s
        if result.duration_s <= 0:
            continue
        per_s = result.energy_j / result.duration_s
        seen = 0.0
        for name, seconds in timer.own.items():
            spent = seconds - before.get(name, 0.0)
            if spent > 0:
                by_module[name] = by_module.get(name, 0.0) + spent * per_s
                seen += spent
        by_module[OUTSIDE] = (
            by_module.get(OUTSIDE, 0.0) + max(result.duration_s - seen, 0.0) * per_s
        )
    return by_module, total_j, total_s
