"""EnergyCallback for ``transformers.Trainer``: figures into the logs and ``state.log_history``.

``Trainer`` runs the callbacks passed to it *after* its ``report_to``
integrations (TensorBoard, MLflow...), and copies each log into
``state.log_history`` before calling ``on_log``. So this callback writes its
figures both into ``logs`` (for the callbacks after it) and into the
``log_history`` entry; :func:`attach` places it before the integrations so
they receive the figures too.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
import weakref
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any

from green_callbacks._docs import with_arguments_of
from green_callbacks._optional import missing_extra
from green_callbacks.core.atomic import write_json_atomic
from green_callbacks.core.callback_args import EnergyCallbackArgs
from green_callbacks.core.card import energy_card
from green_callbacks.core.loads import architecture, loaded, watch_torch
from green_callbacks.core.run_folder import model_facts
from green_callbacks.core.session import Distributed, EnergySession
from green_callbacks.core.watch import CallWatch
from green_callbacks.errors import UsageError
from green_callbacks.meters.share import RankShare

try:
    import torch
    from transformers import Trainer, TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
except ImportError as err:  # pragma: no cover - exercised where transformers is absent
    raise missing_extra(err, "hf", purpose="green_callbacks.hf") from err

watch_torch()  # from now on, whether a model's weights were loaded is known (the advisor's P1)

STATE_FILE = "green_callbacks_energy.json"
"""The run state (energy totals, policies) saved beside each checkpoint, for resuming."""


@with_arguments_of(EnergyCallbackArgs)
class EnergyCallback(EnergyCallbackArgs, TrainerCallback):
    """Meters training, evaluation and prediction energy; same arguments as the other frameworks.

    Train epoch figures join the next log (with ``logging_strategy="epoch"``,
    the epoch's own); step figures (``granularity="batch"``, the default) join the next
    log too; evaluation figures join the metrics ``evaluate()`` returns and
    its ``log_history`` entry. ``Trainer`` has no hook where a standalone
    ``evaluate()`` or ``predict()`` begins, so those are metered only through
    :func:`attach`, which also places the callback before ``report_to`` loggers.
    """

    WATCHED_CALL = "train()"

    def _init_state(self) -> None:
        self.attached = False
        self._pending: dict[str, float] = {}
        # read when an epoch begins, for the per-step path
        self._every = 1  # meter the step before each log: every Nth (1: all; 0: none)
        self._step_samples = 0  # samples a step takes, over every process
        self.last_metrics: dict[str, float] = {}
        """The figures of the last standalone ``evaluate()`` or ``predict()``."""

    # -- training ----------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._pending = {}
        if kwargs.get("model") is not None:
            _BY_MODEL[kwargs["model"]] = self  # the policy callbacks find it here
        self._close_stale()  # a train() that raised left its session open
        if state.global_step > 0:  # resuming: continue the total saved beside the checkpoint
            saved = (
                Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}" / STATE_FILE
            )
            if saved.is_file():
                self.load_run_state(json.loads(saved.read_text(encoding="utf-8")))
        train = CallWatch.find(lambda owner: isinstance(owner, Trainer), ("train",))
        session = self._open_session(  # closed if train() raises
            train, training=True, synchronize=_cuda_synchronize(), distributed=_distributed(args)
        )
        model = kwargs.get("model")
        if model is not None:
            session.facts.update(model_facts(model.parameters()))
            session.facts["architecture"] = architecture(model, model.modules())
            # from_pretrained records where the weights came from; load_state_dict is watched
            pretrained = bool(getattr(getattr(model, "config", None), "_name_or_path", ""))
            session.facts["loaded_weights"] = pretrained or loaded(
                model, model.parameters(), model.modules()
            )
        session.facts["checkpoints"] = []
        if args.report_to and not self.attached:
            warnings.warn(
                "green_callbacks: Trainer runs callbacks passed to it after its report_to "
                f"integrations ({', '.join(args.report_to)}), so they would not receive the energy "
                "figures; call green_callbacks.hf.attach(trainer) instead of passing the callback.",
                UserWarning,
                stacklevel=2,
            )

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        session = self._require()
        samples = args.per_device_train_batch_size * args.gradient_accumulation_steps
        if session.distributed is None:  # one process for all of them; else summed over ranks
            samples *= max(args.world_size, 1)
        self._step_samples = samples
        # Step figures only for the steps Trainer logs: with logging_strategy="steps" the
        # step before each log is metered, the others not at all (their energy is the
        # epoch's); "epoch" logs the epoch's last step; "no" logs none.
        strategy = str(getattr(args.logging_strategy, "value", args.logging_strategy))
        every = max(int(state.logging_steps or 1), 1)
        self._every = every if strategy == "steps" else 1 if strategy == "epoch" else 0
        session.epoch_start("train", measure_first=self._every > 0)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        (self._session or self._require()).batch_start("train")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Every step runs this: it does the least it can.
        session, every = self._session or self._require(), self._every
        logged_next = every == 1 or (every > 1 and (state.global_step + 1) % every == 0)
        figures = session.batch_end("train", self._step_samples, measure_next=logged_next)
        if figures:
            self._pending.update(figures)
        if control.should_evaluate:  # evaluation follows this hook, inside the epoch
            session.epoch_start("val")

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._pending.update(self._require().epoch_end("train"))
        if control.should_evaluate:
            self._require().epoch_start("val")
        else:  # no evaluation follows: the epoch's history line now
            self._require().record_epoch(_epoch(state), self._pending)

    def on_evaluate(
        self,
        args: Any,
        state: Any,
        control: Any,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._session is None:
            return
        dataset = getattr(kwargs.get("eval_dataloader"), "dataset", None)
        if self._session.distributed is None and isinstance(dataset, Sized):
            # one process evaluates all of it (the advisor's inference J/sample); a job's
            # processes each take a share Trainer does not give callbacks: none counted
            self._session.batch_part("val", len(dataset))
        figures = self._session.epoch_end("val")
        if metrics is not None:
            metrics.update(figures)  # what evaluate() returns
        if figures and state.log_history:
            state.log_history[-1].update(figures)  # the eval entry, logged just before
        self._session.record_epoch(_epoch(state), {**self._pending, **(metrics or {})})

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not self._pending:
            return
        if logs is not None:
            logs.update(self._pending)
        if state.log_history:
            state.log_history[-1].update(self._pending)
        self._pending = {}

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._session is not None:
            self._session.note_checkpoint(f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if self._session is not None and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            write_json_atomic(folder / STATE_FILE, self.run_state())

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._pending and state.log_history:
            state.log_history[-1].update(self._pending)
        self._close_session()

    def _require(self) -> EnergySession:
        if self._session is None:
            raise UsageError(
                "EnergyCallback used outside Trainer.train(); pass it to "
                "Trainer(callbacks=[...]) or attach(trainer)"
            )
        return self._session

    # -- evaluate() and predict() outside train() (through attach) ----------

    def _meter_loop(self, phase: str, loop: Callable[..., Any], samples: int) -> Any:
        """Run a standalone evaluation or prediction ``loop`` as a metered ``phase``.

        Figures go into the metrics it returns, its ``log_history`` entry (for
        ``evaluate``) and :attr:`summary`. Inside ``train()`` the loop is the
        in-training evaluation, metered by the hooks: it runs unchanged.
        """
        if self._session is not None:
            return loop()
        session = self._open_session(synchronize=_cuda_synchronize())
        try:
            session.epoch_start(phase)
            output = loop()
            session.batch_end(phase, samples)
            self.last_metrics = session.epoch_end(phase)
        finally:
            self._close_session()
        metrics = output if isinstance(output, dict) else getattr(output, "metrics", None)
        if metrics is not None:
            metrics.update(self.last_metrics)
        return output


_BY_MODEL: weakref.WeakKeyDictionary[Any, EnergyCallback] = weakref.WeakKeyDictionary()


def energy_callback(model: Any) -> EnergyCallback | None:
    """The EnergyCallback metering ``model``'s current ``train()``, if any."""
    return None if model is None else _BY_MODEL.get(model)


def attach(trainer: Trainer, callback: EnergyCallback | None = None) -> EnergyCallback:
    """Put ``callback`` (a new one by default) before the ``report_to`` integrations.

    Also meters ``trainer.evaluate()`` (``energy/test_j``...) and
    ``trainer.predict()`` (``energy/predict_j``...) called outside ``train()``:
    their figures join the metrics they return; and the model card
    ``trainer.create_model_card()`` (and ``push_to_hub``) writes gets an
    "Energy" section with the training energy and where it came from
    (:func:`~green_callbacks.core.card.energy_card`).

    Args:
        trainer: the ``transformers.Trainer`` to meter.
        callback: the ``EnergyCallback`` to place (a new one with default arguments if None).

    Example: ``energy = attach(Trainer(model=..., args=..., train_dataset=...))``.
    """
    callback = callback or EnergyCallback()
    handler = trainer.callback_handler
    if callback in handler.callbacks:
        handler.callbacks.remove(callback)
    handler.callbacks.insert(1, callback)  # right after DefaultFlowCallback, which sets control
    if not callback.attached:
        _wrap_loops(trainer, callback)
        _wrap_model_card(trainer, callback)
    callback.attached = True
    return callback


def _wrap_model_card(trainer: Trainer, callback: EnergyCallback) -> None:
    """Append the training energy to the card ``create_model_card`` writes (README.md)."""
    create = trainer.create_model_card

    @functools.wraps(create)
    def with_energy(*args: Any, **kwargs: Any) -> Any:
        result = create(*args, **kwargs)
        card = Path(trainer.args.output_dir or ".") / "README.md"
        if callback.summary is not None and trainer.is_world_process_zero() and card.is_file():
            text = card.read_text(encoding="utf-8").rstrip()
            card.write_text(f"{text}\n\n{energy_card(callback.summary)}\n", encoding="utf-8")
        return result

    trainer.create_model_card = with_energy  # type: ignore[method-assign]


def _wrap_loops(trainer: Trainer, callback: EnergyCallback) -> None:
    """Bracket this trainer's ``evaluate`` and ``predict`` with the callback's session."""
    evaluate, predict = trainer.evaluate, trainer.predict

    @functools.wraps(evaluate)
    def metered_evaluate(eval_dataset: Any = None, *args: Any, **kwargs: Any) -> Any:
        samples = _length(eval_dataset if eval_dataset is not None else trainer.eval_dataset)
        run = functools.partial(evaluate, eval_dataset, *args, **kwargs)
        in_train = callback.session is not None
        metrics = callback._meter_loop("test", run, samples)
        if not in_train and trainer.state.log_history:
            trainer.state.log_history[-1].update(callback.last_metrics)  # evaluate's own entry
        return metrics

    @functools.wraps(predict)
    def metered_predict(test_dataset: Any, *args: Any, **kwargs: Any) -> Any:
        run = functools.partial(predict, test_dataset, *args, **kwargs)
        return callback._meter_loop("predict", run, _length(test_dataset))

    trainer.evaluate = metered_evaluate  # type: ignore[method-assign]
    trainer.predict = metered_predict  # type: ignore[method-assign]


def _length(dataset: Any) -> int:
    """Samples in a dataset that knows its length, else 0 (no per-sample figure)."""
    return len(dataset) if isinstance(dataset, Sized) else 0


def _cuda_synchronize() -> Callable[[], None] | None:
    return torch.cuda.synchronize if torch.cuda.is_available() else None


def _epoch(state: Any) -> int:
    """The index (from 0) of the epoch a Trainer has just finished (``state.epoch`` is then
    about its count: 1.0000000001 after the first; mid-epoch, the epoch under way)."""
    done = state.epoch or 0.0
    near = round(done)
    return max((near if abs(done - near) < 1e-3 else math.ceil(done)) - 1, 0)


def _distributed(args: Any) -> Distributed | None:
    """The rank layout and a summing collective when ``torch.distributed`` is up (``torchrun``,
    ``accelerate launch``), else None: each process meters its share, figures are summed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return None
    device = args.device
    share = RankShare(
        rank=dist.get_rank(),
        local_rank=int(getattr(args, "local_process_index", 0) or 0),
        world_size=dist.get_world_size(),
        device_index=device.index if device.type == "cuda" else None,
    )
    on = device if dist.get_backend() == "nccl" else torch.device("cpu")  # gloo sums on the CPU

    def reduce_sum(values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=on)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        summed: list[float] = tensor.tolist()
        return summed

    return Distributed(share, reduce_sum)
