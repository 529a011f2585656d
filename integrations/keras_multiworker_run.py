"""One worker of a two-worker tf_keras job (MultiWorkerMirroredStrategy on loopback), for
test_keras_multiworker.py; not a test itself.

    TF_CONFIG=... python integrations/keras_multiworker_run.py TRACE.csv OUT_DIR INDEX

Every worker writes ``OUT_DIR/worker<INDEX>.json`` (its domains, its summary if it has
one, its last logs); the chief (worker 0) also writes the summary and the run folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras

from green_callbacks.tf_keras import EnergyCallback


def main() -> None:
    trace, out, index = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = tf_keras.Sequential(
            [tf_keras.layers.Dense(16, input_shape=(8,)), tf_keras.layers.Dense(1)]
        )
        model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    energy = EnergyCallback(
        meters=f"replay:{trace}", summary_path=out / "summary.json", run_dir=out / "run"
    )
    history = model.fit(
        x, x.sum(axis=1, keepdims=True), epochs=3, batch_size=32, verbose=0, callbacks=[energy]
    )
    summary = energy.summary or {}
    record = {
        "domains": sorted((summary.get("totals") or {}).get("domains", {})),
        "summary": summary,
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"worker{index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
