"""What every framework's EnergyCallback shares: training events in, metric dicts out.

The adapters (``green_callbacks.lightning``, ``.keras``, ``.hf``) only translate
their framework's hooks into these calls and put the returned dicts into the
framework's own logging path, so every framework logs the same keys
(:mod:`green_callbacks.core.keys`) computed the same way.

Example:
    >>> from green_callbacks.testing import FakeClock, FakeMeter
    >>> clock = FakeClock()
    >>> config = CallbackConfig(meters=[FakeMeter({"gpu:0": 100.0}, clock=clock)])
    >>> session = EnergySession(config, clock=clock, sample_interval_s=None).start()
    >>> session.epoch_start("train")
    >>> clock.advance(3.0)
    >>> session.epoch_start("val")          # validation inside the training epoch
    >>> clock.advance(1.0)
    >>> session.epoch_end("val")["energy/val_epoch_j"]
    100.0
    >>> metrics = session.epoch_end("train")
    >>> metrics["energy/train_epoch_j"], metrics["energy/total_j"]
    (300.0, 400.0)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from green_callbacks.core import keys
from green_callbacks.core.atomic import write_json_atomic
from green_callbacks.core.profile import StepProfile
from green_callbacks.core.records import WindowResult
from green_callbacks.core.run_folder import (
    VERSION,
    RunFolder,
    cpu_utilization,
    host_rss_mib,
    process_cpu_s,
)
from green_callbacks.core.tracker import DEFAULT_SAMPLE_INTERVAL_S, EnergyTracker, Window
from green_callbacks.core.units import Carbon
from green_callbacks.errors import (
    CallbackConfigError,
    DistributedError,
    DistributedWarning,
    MeterReadError,
    output_failed,
    require_number,
    warn,
)
from green_callbacks.meters.base import DEFAULT_CLOCK, Clock
from green_callbacks.meters.share import RankShare
from green_callbacks.meters.spec import MeterLike, check_meters

GRANULARITIES = ("batch", "epoch")
JOB_TOTAL_KEY = "job_total_j"
"""State key of a distributed job's last total and this process's own total then. Units: J."""
PHASES = ("train", "val", "test", "predict")
_STEP_KEYS = {phase: keys.step_j(phase) for phase in PHASES}  # made once, not at each step


@dataclass(frozen=True)
class CallbackConfig:
    """The arguments every framework's ``EnergyCallback`` takes.

    Attributes: the arguments of
        :class:`~green_callbacks.core.callback_args.EnergyCallbackArgs`, checked when built.
    """

    meters: MeterLike | Sequence[MeterLike] = "auto"
    granularity: str = "batch"
    idle_baseline_s: float = 0.0
    carbon_intensity_g_per_kwh: float | None = None
    pue: float = 1.0
    trace_path: str | Path | None = None
    summary_path: str | Path | None = None
    sync_cuda: bool = False
    progress_bar: bool = True
    strict: bool = False
    run_dir: str | Path | None = None
    advise: bool = False

    def __post_init__(self) -> None:
        if self.advise and self.run_dir is None:
            raise CallbackConfigError(
                "advise=True reads the run back from its run folder: pass run_dir= too "
                "(e.g. run_dir='runs/my_run')"
            )
        check_meters(self.meters)
        require_number("idle_baseline_s", self.idle_baseline_s, CallbackConfigError)
        if self.idle_baseline_s < 0:
            raise CallbackConfigError(f"idle_baseline_s must be >= 0 s, got {self.idle_baseline_s}")
        if self.carbon_intensity_g_per_kwh is None and self.pue != 1.0:
            raise CallbackConfigError(
                f"pue={self.pue} scales carbon figures only, and no carbon intensity was given; "
                "pass carbon_intensity_g_per_kwh= too (your grid's gCO2e/kWh)"
            )
        if self.carbon_intensity_g_per_kwh is not None:
            Carbon(self.carbon_intensity_g_per_kwh, self.pue)  # checks both now
        if self.granularity not in GRANULARITIES:
            raise CallbackConfigError(
                f"granularity must be 'epoch' or 'batch', got {self.granularity!r}; "
                "'batch' also logs energy/train_step_j every step"
            )


@dataclass(frozen=True)
class Distributed:
    """How a session takes part in a multi-process job (docs/distributed.md).

    Attributes:
        share: which domains this process meters.
        reduce_sum: sums a list of numbers element-wise over all processes
            (a collective: every process calls it at the same points).
    """

    share: RankShare
    reduce_sum: Callable[[list[float]], list[float]]


class EnergySession:
    """Turns training events into energy metrics with the stable keys.

    Args:
        config: the callback's arguments.
        clock, sleep: injectable for tests.
        sample_interval_s: the tracker's sampling interval (None: no thread).
        synchronize: called before readings that must see finished device
            work (the torch adapters pass ``torch.cuda.synchronize``).
        distributed: in a multi-process job, each process meters its share
            and epoch figures and totals are summed over processes.
        folder: the run folder of the run this session goes on with (the
            callback's, when it continues its totals). None: with ``run_dir``,
            claim a new ``version_N`` (in a distributed job, rank 0 claims it and
            every process gets its number).
    """

    def __init__(
        self,
        config: CallbackConfig,
        *,
        clock: Clock = DEFAULT_CLOCK,
        sleep: Callable[[float], None] = time.sleep,
        sample_interval_s: float | None = DEFAULT_SAMPLE_INTERVAL_S,
        synchronize: Callable[[], None] | None = None,
        distributed: Distributed | None = None,
        folder: RunFolder | None = None,
    ):
        self.config = config
        self.distributed = distributed
        self.unsummed: str | None = None
        """Why this job's figures are not summed over its processes (None: they are)."""
        if folder is None and config.run_dir is not None:
            folder = self._claim_folder(Path(config.run_dir))
        self.folder = folder
        """This run's folder (``run_dir/version_N``), or None."""
        self._summary_path = config.summary_path or (folder.summary if folder else None)
        trace_path = config.trace_path or (folder.trace if folder else None)
        self.tracker = EnergyTracker(
            config.meters,
            sample_interval_s=sample_interval_s,
            idle_baseline_s=config.idle_baseline_s,
            carbon_intensity_g_per_kwh=config.carbon_intensity_g_per_kwh,
            pue=config.pue,
            trace_path=_own_trace(trace_path, distributed),
            share=None if distributed is None else distributed.share,
            share_sum=None if distributed is None else self._sum_list,
            strict=config.strict,
            clock=clock,
            sleep=sleep,
        )
        self._sync = synchronize
        self._now = clock  # the tracker's clock, called directly on the per-step path
        self._per_batch = config.granularity == "batch"
        self._sync_steps = config.sync_cuda
        self._epochs: dict[str, Window] = {}
        self._laps: dict[str, Window] = {}
        self._samples: dict[str, int] = {}
        self._excluded: dict[str, tuple[float, float, float]] = {}  # nested: J, s, held J
        self._carbon = (
            None
            if config.carbon_intensity_g_per_kwh is None
            else Carbon(config.carbon_intensity_g_per_kwh, config.pue)
        )
        # Distributed runs: earlier energy of the whole job (rank 0 carries it),
        # and the last job-wide total with this process's own total at that instant.
        self._prior_others_j = 0.0
        self._job_total = (0.0, 0.0)
        self._logged: dict[str, list[float]] = {}  # key -> count, sum, min, max, last
        self._epoch_figures: dict[str, float] = {}  # this epoch's, for the run folder's history
        self._batch_done_s: float | None = None  # when the last training batch ended
        self._waited_s: float | None = None  # None until an adapter reports batch starts
        self._cpu_at_start: tuple[float, float] | None = None  # clock, CPU seconds
        self._busy_at_start: dict[str, tuple[float, int]] = {}  # GPU utilisation sums
        self.facts: dict[str, Any] = {}
        """What the run folder's summary records besides energy: the model's parameters and
        dtypes (``params``, ``dtypes``, ``size_bytes``), ``checkpoints`` saved, ``oom_events``,
        the last forward-only loop's ``inference_j_per_sample`` (``inference_loop``: val,
        test or predict) and a profile of a few training steps (``python_time_share``,
        ``line_calls_per_sample``: :mod:`green_callbacks.core.profile`)."""
        # Only a run that writes its summary profiles a few steps (no one reads the facts else).
        self._profile = StepProfile() if self._summary_path is not None else None
        self.final_summary: dict[str, Any] | None = None
        """The summary :meth:`stop` made (kept when strict mode raises after it)."""
        self.notes: list[str] = []
        """Notes the summary will carry besides the tracker's (what the totals continue...)."""

    def _claim_folder(self, run_dir: Path) -> RunFolder | None:
        """A new ``version_N`` under ``run_dir``, the same on every process of a job.

        Rank 0 claims it and the number reaches the others through the job's sum
        (the others add 0). A folder that cannot be made is a warning (an error in
        strict mode) and the run goes on without one; so does a process of a job
        that cannot sum, which cannot learn the number.
        """
        rank = 0 if self.distributed is None else self.distributed.share.rank
        claimed = None
        if rank == 0:
            try:
                claimed = RunFolder.claim(run_dir)
            except OSError as err:
                output_failed(f"run folder under {run_dir} cannot be made ({err})",
                              strict=self.config.strict, cause=err)  # fmt: skip
        if self.distributed is None:
            return claimed
        number = -1 if claimed is None else int(claimed.version or 0)
        (agreed,) = self._sum_list([float(number + 1 if rank == 0 else 0)])
        if rank == 0 or agreed < 1:  # 0: rank 0 has no folder, or this process cannot sum
            return claimed
        return RunFolder(run_dir / f"{VERSION}{int(agreed) - 1}")

    # -- lifecycle -------------------------------------------------------

    def start(self) -> EnergySession:
        """Start metering (idempotent: fit, then test, share one run)."""
        if not self.tracker.running:
            self.tracker.start()
        return self

    def stop(self, note: str | None = None) -> dict[str, Any]:
        """Stop metering; write and return the summary (``note`` joins its ``notes``).

        In a distributed job the summary is this process's share plus the job's
        last total, and only global rank 0 writes it.
        """
        failure: Exception | None = None
        if self._profile is not None:  # a step the run's end interrupted, or none profiled
            self._profile.cancel()
            self._profile = None
        if self.tracker.running:
            self._synchronize()
            try:
                self.tracker.stop()
            except MeterReadError as err:  # strict mode: stopped all the same; raised last
                failure = err
        summary = self.final_summary = self.tracker.summary()
        summary["metrics"] = {
            key: dict(zip(("count", "sum", "min", "max", "last"), figures))
            for key, figures in self._logged.items()
        }
        summary["notes"] += [*self.notes, *([] if note is None else [note])]
        summary["facts"] = dict(self.facts)
        self._write(summary)
        if failure is not None:
            raise failure
        return summary

    def _write(self, summary: dict[str, Any]) -> None:
        """Add the job's figures to ``summary`` and write it (global rank 0 only)."""
        if self.distributed is not None:
            summary["distributed"] = {
                "share": self.distributed.share.describe(),
                "job_total_j": self._job_total[0],
                "own_total_j": self._job_total[1],  # what this process metered, by then
                "processes": self.distributed.share.world_size,
                "summed": self.unsummed is None,
            }
            if self.unsummed is not None:
                summary["notes"].append(
                    f"this process's share only: the job's figures could not be summed "
                    f"({self.unsummed})"
                )
            if self.distributed.share.rank != 0:
                return
        if self._summary_path is not None:
            try:
                write_json_atomic(Path(self._summary_path), summary)
            except (OSError, ValueError) as err:  # unwritable, not a regular file, not JSON
                output_failed(
                    f"energy summary {self._summary_path} cannot be written ({err})",
                    strict=self.config.strict, cause=err,
                )  # fmt: skip

    @property
    def running(self) -> bool:
        return self.tracker.running

    def provenance(self) -> dict[str, str]:
        """Where the figures come from, for loggers' hyperparameters or tags."""
        labels = {f"energy_source/{d.name}": d.label() for d in self.tracker.domains}
        labels["energy_source/kind"] = self.tracker.kind
        return labels

    # -- epochs and batches ---------------------------------------------

    def epoch_start(self, phase: str, *, measure_first: bool = True) -> None:
        """An epoch (or validation / test / predict loop) of ``phase`` begins.

        ``measure_first``: at batch granularity, meter the epoch's first step
        (False when an adapter knows it will not be logged).
        """
        _check_phase(phase)
        self._synchronize()
        self._epochs[phase] = self.tracker.open("epoch", phase)
        self._samples[phase] = 0
        if phase == "train":
            self._batch_done_s = self._epochs[phase].start_s
            self._waited_s = None
            if self.folder is not None:  # the epoch's CPU and GPU use, for the history
                self._cpu_at_start = (self._epochs[phase].start_s, process_cpu_s())
                self._busy_at_start = self.tracker.utilization_totals()
        self._excluded[phase] = (0.0, 0.0, 0.0)
        if self.config.granularity == "batch" and measure_first:
            self._laps[phase] = self.tracker.open("batch", phase)

    def batch_end(self, phase: str, samples: int, *, measure_next: bool = True) -> dict[str, float]:
        """A batch of ``samples`` samples ended; returns the step metric at batch granularity.

        At epoch granularity this only counts samples: no reading, no window.
        At batch granularity the step's energy runs from the end of the
        previous batch (loading this one belongs to it) to now. An adapter
        that logs only some steps passes ``measure_next=False`` when the
        next step will not be logged: that step is then not metered at all
        (no reading, no window), and its energy stays in the epoch's.
        """
        # The per-step path: every step of every fit runs it, so it does the least it can.
        if phase not in self._samples:
            return {}
        self._samples[phase] += samples
        if phase == "train":
            self._batch_done_s = self._now()
            if self._profile is not None and self._profile.running:
                self._end_profiled_step(samples)
        if not self._per_batch:
            return {}
        lap = self._laps.get(phase)
        if lap is None:
            if measure_next:
                self._laps[phase] = self.tracker.open("batch", phase)
            return {}
        if self._sync_steps:
            self._synchronize()
        metrics = {_STEP_KEYS[phase]: self.tracker.lap_j(lap)}
        if not measure_next:
            del self._laps[phase]
        return metrics

    def batch_part(self, phase: str, samples: int) -> None:
        """A batch of ``samples`` samples ended that does not end a step (its gradients
        accumulate): it counts, and its energy joins the step's window, which goes on."""
        if phase in self._samples:
            self._samples[phase] += samples
            if phase == "train":
                self._batch_done_s = self._now()
                if self._profile is not None and self._profile.running:
                    self._end_profiled_step(samples)

    def batch_start(self, phase: str) -> None:
        """A batch of ``phase`` starts: the time since the previous one ended was spent
        waiting for its data (logged per training epoch as ``time/data_wait_fraction``)."""
        if phase != "train":
            return
        if self._profile is not None:
            self._profile.step_start()
        done = self._batch_done_s
        if done is None:
            return
        self._waited_s = (self._waited_s or 0.0) + max(self._now() - done, 0.0)
        self._batch_done_s = None

    def _end_profiled_step(self, samples: int) -> None:
        assert self._profile is not None
        facts = self._profile.step_end(samples)
        if facts is not None:  # the last profiled step
            self.facts.update(facts)
            self._profile = None

    def progress(self, phase: str) -> dict[str, float]:
        """What a progress bar shows while ``phase`` runs: the run's energy so far and the
        epoch's average power (interpolated: no sensor read; this process's own figures)."""
        window = self._epochs.get(phase)
        tracker = self.tracker
        figures = {keys.BAR_TOTAL_J: tracker.peek_run() + self._prior_others_j}
        if window is not None:
            elapsed = tracker.clock() - window.start_s
            figures[keys.BAR_POWER_W] = tracker.peek(window) / elapsed if elapsed > 0 else 0.0
        return figures

    def epoch_end(self, phase: str) -> dict[str, float]:
        """The epoch of ``phase`` ended; returns its metrics and the run total."""
        window = self._epochs.pop(phase, None)
        if window is None:
            return {}
        self._synchronize()
        result = self.tracker.close(window)
        self._laps.pop(phase, None)
        for other in self._epochs:  # a nested phase's energy is not the enclosing one's
            energy, duration, held = self._excluded[other]
            self._excluded[other] = (
                energy + result.energy_j,
                duration + result.duration_s,
                held + result.held_j,
            )
            if other in self._laps:  # its next batch starts now
                self._laps[other] = self.tracker.open("batch", other)
        energy, duration, held = self._own(phase, result)
        local_total = self._local_total()
        # Each process's own average power, summed: the job's power even when the processes
        # start the epoch at different moments (one waiting for another at a collective).
        power = energy / duration if duration > 0 else 0.0
        energy, samples, total, held, has_held, power = self._sum(
            energy, self._samples.pop(phase, 0), local_total, held, float(result.has_held), power
        )
        self._job_total = (total, local_total - self._prior_others_j)
        name = keys.loop_j(phase) if phase in ("test", "predict") else keys.epoch_j(phase)
        metrics = {name: energy, keys.avg_power_w(phase): power}
        if samples:
            metrics[keys.j_per_sample(phase)] = energy / samples
            if phase != "train":  # a forward-only loop: what inference costs here (advisor)
                self.facts["inference_j_per_sample"] = energy / samples
                self.facts["inference_loop"] = phase
        if has_held:  # a source failed (on any process): how much of the figure is an estimate
            metrics[keys.held_j(phase)] = held
        if phase == "train":
            if self._waited_s is not None and result.duration_s > 0:
                metrics[keys.DATA_WAIT_FRACTION] = min(self._waited_s / result.duration_s, 1.0)
            if self.distributed is None:  # one process: its memory, epoch by epoch (a leak)
                metrics[keys.HOST_RSS_MIB] = host_rss_mib()
        self._remember(metrics)
        self._epoch_figures.update(metrics)
        return {**metrics, **self._total_metrics(total)}

    def record_epoch(self, epoch: int, metrics: Mapping[str, Any] | None = None) -> None:
        """Write one training epoch's line to the run folder's history (rank 0 only).

        Args:
            epoch: the epoch's index (from 0).
            metrics: the user's own figures of that epoch (``val_acc``...); what converts
                to a finite number is kept (one-element tensors too), the rest left out.
        """
        figures, self._epoch_figures = self._epoch_figures, {}
        if self.folder is None or (self.distributed is not None and self.distributed.share.rank):
            return
        own = {str(k): float(v) for k, v in (metrics or {}).items() if _is_number(v)}
        row = {**own, **figures, "epoch": epoch}
        row.setdefault(keys.HOST_RSS_MIB, host_rss_mib())
        if self._cpu_at_start is not None:
            started, cpu = self._cpu_at_start
            share = cpu_utilization(process_cpu_s() - cpu, self.tracker.clock() - started)
            if share is not None:
                row[keys.CPU_UTILIZATION] = share
        for domain, (busy, reads) in self.tracker.utilization_totals().items():
            busy_then, reads_then = self._busy_at_start.get(domain, (0.0, 0))
            if reads > reads_then:
                row[keys.utilization(domain)] = (busy - busy_then) / (reads - reads_then)
        self.folder.append_epoch(row, strict=self.config.strict)

    def note_checkpoint(
        self, where: str = "", *, energy_j: float | None = None, since_s: float | None = None
    ) -> None:
        """A checkpoint was saved (recorded in the summary's ``facts``).

        Args:
            where: its path, when known.
            energy_j: the save's measured energy, when it was metered. Units: J.
            since_s: when that metered save began (tracker clock): a save already
                recorded since then (the framework's own hook) gets the energy
                instead of a second record. Units: s.
        """
        saves = self.facts.setdefault("checkpoints", [])
        last = saves[-1] if saves else None
        if energy_j is not None and since_s is not None and last and last["time_s"] >= since_s:
            last["energy_j"] = energy_j
            return
        save: dict[str, Any] = {"time_s": self.tracker.clock(), "path": where}
        if energy_j is not None:
            save["energy_j"] = energy_j
        saves.append(save)

    def _remember(self, metrics: dict[str, float]) -> None:
        """Aggregate the figures as logged, for the summary's ``metrics`` (same names)."""
        for key, value in metrics.items():
            seen = self._logged.get(key)
            if seen is None:
                self._logged[key] = [1, value, value, value, value]
            else:
                seen[0] += 1
                seen[1] += value
                seen[2], seen[3], seen[4] = min(seen[2], value), max(seen[3], value), value

    def _own(self, phase: str, result: WindowResult) -> tuple[float, float, float]:
        """The window's energy, duration and held energy without the phases nested in it."""
        excluded_j, excluded_s, excluded_held = self._excluded.pop(phase, (0.0, 0.0, 0.0))
        return (
            max(result.energy_j - excluded_j, 0.0),
            max(result.duration_s - excluded_s, 0.0),
            max(result.held_j - excluded_held, 0.0),
        )

    def totals(self) -> dict[str, float]:
        """``energy/total_j`` (and ``carbon/total_g``) of the run so far, over all processes."""
        local_total = self._local_total()
        (total,) = self._sum(local_total)
        self._job_total = (total, local_total - self._prior_others_j)
        return self._total_metrics(total)

    def reduced(self, metrics: dict[str, float]) -> dict[str, float]:
        """``metrics`` summed over the processes of a distributed job (unchanged otherwise)."""
        return dict(zip(metrics, self._sum(*metrics.values())))

    def _local_total(self) -> float:
        return self.tracker.totals().energy_j + self._prior_others_j

    def _sum(self, *values: float) -> tuple[float, ...]:
        return tuple(self._sum_list(list(values)))

    def _sum_list(self, values: list[float]) -> list[float]:
        """The job's element-wise sum; this process's own values if the collective fails."""
        if self.distributed is None or self.unsummed is not None:
            return values
        try:
            return list(self.distributed.reduce_sum(values))
        except Exception as err:  # the backend cannot run this collective: say so, go on
            self.unsummed = f"{type(err).__name__}: {err}"
            message = (
                f"the processes of this job cannot sum their figures ({self.unsummed}); each "
                "process reports only its own share, so rank 0's figures and summary are not "
                "the job's. Use a process-group backend that can all-reduce float64 on this "
                "device: gloo on the CPU, NCCL on NVIDIA GPUs"
            )
            if self.config.strict:
                raise DistributedError(f"strict mode: {message}") from err
            warn(message, DistributedWarning)
            return values

    def _total_metrics(self, total_j: float) -> dict[str, float]:
        metrics = {keys.TOTAL_J: total_j}
        if self._carbon is not None:
            metrics[keys.CARBON_TOTAL_G] = self._carbon.grams(total_j)
        return metrics

    def _synchronize(self) -> None:
        if self._sync is not None:
            self._sync()

    # -- resume ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The tracker's state; in a distributed job also the last job-wide total."""
        if not self.tracker.running:
            return {}
        state = self.tracker.state_dict()
        if self.distributed is not None:
            state[JOB_TOTAL_KEY] = list(self._job_total)
        elif self._prior_others_j:  # a job's state resumed by this one process: keep the others'
            own_j = self.tracker.totals().energy_j
            state[JOB_TOTAL_KEY] = [own_j + self._prior_others_j, own_j]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (in a distributed job, rank 0 carries the job's total).

        Every process of a distributed job gets the state rank 0 saved. Rank 0
        continues its own totals and adds the other processes' energy up to the
        last job-wide total; the others start from zero, so the sum continues
        the job's total. A single process resuming a job's state does the same.
        """
        if not state:
            return
        state = dict(state)
        job = state.pop(JOB_TOTAL_KEY, None)
        if self.distributed is not None and self.distributed.share.rank != 0:
            return
        self.tracker.load_state_dict(state)
        if job is not None:  # also when a multi-process job is resumed by one process
            job_total_j, own_total_j = (float(v) for v in job)
            self._prior_others_j = max(job_total_j - own_total_j, 0.0)


def job_totals(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A summary's ``totals``, for the whole job when it is a multi-process job's.

    Rank 0's summary holds its own share in ``totals`` and the job's total in
    ``distributed``: this gives the job's energy (at the last point all
    processes summed, the last logged ``energy/total_j``), with average power
    and carbon scaled to it and ``processes`` added. Any other summary's totals
    come back as they are; so do those of a job whose figures were not summed.
    """
    raw, job = summary.get("totals"), summary.get("distributed")
    totals = dict(raw) if isinstance(raw, Mapping) else {}  # a damaged summary: read, not raised
    if not totals or not isinstance(job, Mapping) or job.get("summed") is False:
        return totals
    if not _is_number(job.get("job_total_j")) or not _is_number(totals.get("energy_j", 0.0)):
        return totals
    own_j, job_j = float(totals.get("energy_j") or 0.0), float(job["job_total_j"])
    totals["energy_j"] = job_j
    totals["processes"] = job.get("processes")
    if float(totals.get("duration_s") or 0.0) > 0:
        totals["avg_power_w"] = job_j / float(totals["duration_s"])
    if totals.get("carbon_g") is not None and own_j > 0:
        totals["carbon_g"] = float(totals["carbon_g"]) * job_j / own_j  # one intensity, one PUE
    return totals


def _own_trace(path: str | Path | None, distributed: Distributed | None) -> str | Path | None:
    """Each process of a distributed job writes its own trace: ``trace.jsonl.rank1``."""
    if path is None or distributed is None:
        return path
    return f"{path}.rank{distributed.share.rank}"


def _is_number(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of several elements
        return False


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise CallbackConfigError(f"phase must be one of {PHASES}, got {phase!r}")
