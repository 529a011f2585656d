"""EnergyCallback for tf_keras models: the Keras hooks on tf_keras's own ``Callback``."""

from __future__ import annotations

from typing import Any

from green_callbacks._docs import with_arguments_of
from green_callbacks._optional import missing_extra
from green_callbacks.core.callback_args import EnergyCallbackArgs
from green_callbacks.core.session import Distributed
from green_callbacks.keras._hooks import KerasHooks
from green_callbacks.meters.share import RankShare

try:
    import tf_keras
except ImportError as err:  # pragma: no cover - exercised where tf_keras is absent
    raise missing_extra(err, "tfmot", purpose="green_callbacks.tf_keras") from err


@with_arguments_of(EnergyCallbackArgs)
class EnergyCallback(KerasHooks, tf_keras.callbacks.Callback):  # type: ignore[misc]
    """Meters training, validation, evaluation and prediction energy into ``logs``.

    For ``tf_keras`` (Keras 2) models, as ``green_callbacks.keras.EnergyCallback``
    is for Keras 3: the same hooks, keys and figures; list it first so the
    callbacks after it (``CSVLogger``, ``TensorBoard``, ``EarlyStopping``) see the
    figures. TensorFlow runs its own device synchronisation at epoch ends.

    Under ``tf.distribute.MultiWorkerMirroredStrategy`` (one worker per host)
    each worker meters its host and its devices, the figures are summed over
    the workers with the strategy's all-reduce, and the chief (worker 0) writes
    the summary and the run folder.
    """

    def _distributed(self) -> Distributed | None:
        return multi_worker()


def multi_worker() -> Distributed | None:
    """The worker's place and a summing all-reduce under a multi-worker strategy, else None."""
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return None
    workers = resolver.cluster_spec().num_tasks("worker") if resolver.cluster_spec() else 1
    if workers <= 1:
        return None
    share = RankShare(rank=int(resolver.task_id or 0), world_size=workers, all_devices=True)
    local = max(strategy.num_replicas_in_sync // workers, 1)  # replicas on this worker

    def reduce_sum(values: list[float]) -> list[float]:
        # every local replica contributes its share, so the sum counts each worker once
        def own() -> Any:
            return tf.constant([v / local for v in values], dtype=tf.float64)

        total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(own), axis=None)
        summed: list[float] = total.numpy().tolist()
        return summed

    return Distributed(share, reduce_sum)
