"""Twin workloads for comparing frameworks: the same models in Lightning and Keras 3.

Small versions of the categories of Georgiou et al.'s framework study (ICSE
2022), built identically in PyTorch Lightning and in Keras 3 (on its
TensorFlow and torch backends): same layers and sizes, same initialisation
(Keras's defaults, applied to the torch layers), same data, optimizer (Adam,
lr 1e-3), batch size and epochs. Each is a study workload (see
:mod:`green_callbacks.study.definition`): ``framework`` selects the
implementation, ``phase`` the part metered, and only the fit (``train``) or
the prediction over the held-out set (``inference``) runs inside
``measure()``; building the data and the model does not count. Inference
first trains one epoch unmetered, so its accuracy means something. Each
returns its held-out ``accuracy``.

- :func:`recommender`: a NeuMF-style recommender, user and item embeddings
  and their product into a small MLP, on synthetic implicit-feedback
  interactions;
- :func:`digits_cnn`: two convolutions and a linear head on scikit-learn's
  bundled digits;
- :func:`char_lm`: a one-layer GRU predicting the next character of text that
  ships with Python (the Zen of Python and standard-library docstrings).

The Keras backend is chosen in the run's own process (``KERAS_BACKEND``), so
each run must start fresh, as the study runner's do.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from green_callbacks._optional import require

FRAMEWORKS = ("lightning", "keras-tensorflow", "keras-torch")
LEARNING_RATE = 1e-3
SEED = 0

Measure = Callable[[], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def _everything() -> Iterator[None]:
    yield


# -- data, the same for every framework --------------------------------------------


def interactions(users: int = 400, items: int = 300, samples: int = 20000) -> tuple[Any, ...]:
    """Synthetic implicit feedback: a pair is positive when the user's taste, the item's
    popularity and their latent factors' agreement add up to more than zero.

    Returns:
        Train and held-out ``(user, item)`` index arrays and 0/1 labels.
    """
    rng = np.random.default_rng(SEED)
    user_factors, item_factors = rng.normal(size=(users, 4)), rng.normal(size=(items, 4))
    user_bias, item_bias = rng.normal(size=users), rng.normal(size=items)  # taste, popularity
    u = rng.integers(0, users, samples)
    i = rng.integers(0, items, samples)
    affinity = user_bias[u] + item_bias[i] + 0.5 * (user_factors[u] * item_factors[i]).sum(axis=1)
    label = (affinity > 0).astype("float32")
    cut = samples * 4 // 5
    pairs = np.stack([u, i], axis=1).astype("int64")
    return pairs[:cut], label[:cut], pairs[cut:], label[cut:]


def digits() -> tuple[Any, ...]:
    """scikit-learn's 8x8 digits scaled to [0, 1], 75/25 split: x as (n, 1, 8, 8).

    Returns:
        Train images and labels, held-out images and labels.
    """
    datasets = require("sklearn.datasets", "study", purpose="The digits workload's data")
    split = require("sklearn.model_selection", "study", purpose="The digits workload's split")
    data = datasets.load_digits()
    x = (data.images / 16.0).astype("float32")[:, None, :, :]
    x_train, x_test, y_train, y_test = split.train_test_split(
        x, data.target.astype("int64"), test_size=0.25, random_state=SEED
    )
    return x_train, y_train, x_test, y_test


def corpus() -> str:
    """Text that ships with Python: the Zen of Python and standard-library docstrings."""
    import codecs
    import contextlib as contextlib_module
    import io as io_module
    import json as json_module
    import pathlib

    with contextlib_module.redirect_stdout(io_module.StringIO()):
        import this
    parts = [codecs.decode(this.s, "rot13")]
    for module in (json_module, pathlib, contextlib_module, codecs, io_module):
        parts.append(module.__doc__ or "")
    return "\n".join(parts)


def sequences(length: int = 32) -> tuple[Any, ...]:
    """Next-character windows of :func:`corpus`: inputs, targets, vocabulary size; 90/10 split."""
    text = corpus()
    vocabulary = sorted(set(text))
    codes = np.array([vocabulary.index(c) for c in text], dtype="int64")
    starts = np.arange(0, len(codes) - length - 1, 3)
    x = np.stack([codes[s : s + length] for s in starts])
    y = codes[starts + length]
    cut = len(x) * 9 // 10
    return x[:cut], y[:cut], x[cut:], y[cut:], len(vocabulary)


# -- the workloads --------------------------------------------------------------------


def recommender(
    phase: str, framework: str, measure: Measure = _everything, epochs: int = 2,
    batch_size: int = 256, dim: int = 16,
) -> dict[str, float]:  # fmt: skip
    """NeuMF-style: user and item embeddings (``dim``), their product and both concatenated,
    32 ReLU units, one logit.

    Args:
        phase: ``train`` (metered: the fit) or ``inference`` (metered: predicting the
            held-out pairs after one unmetered epoch).
        framework: ``lightning``, ``keras-tensorflow`` or ``keras-torch``.
        measure: the study worker's meter (only what runs inside it counts).
        epochs: training epochs.
        batch_size: training and inference batch size.
        dim: embedding size.
    """
    x, y, x_test, y_test = interactions()
    users, items = int(max(x[:, 0].max(), x_test[:, 0].max())) + 1, int(
        max(x[:, 1].max(), x_test[:, 1].max())) + 1  # fmt: skip
    spec = {"kind": "recommender", "users": users, "items": items, "dim": dim}
    return _run(framework, spec, phase, measure, (x, y, x_test, y_test), epochs, batch_size,
                binary=True)  # fmt: skip


def digits_cnn(
    phase: str, framework: str, measure: Measure = _everything, epochs: int = 3,
    batch_size: int = 32,
) -> dict[str, float]:  # fmt: skip
    """Conv 3x3 (16) - ReLU - conv 3x3 (32) - ReLU - max-pool 2 - linear (10), on digits.

    Args:
        phase: ``train`` or ``inference`` (as :func:`recommender`).
        framework: ``lightning``, ``keras-tensorflow`` or ``keras-torch``.
        measure: the study worker's meter.
        epochs: training epochs.
        batch_size: training and inference batch size.
    """
    return _run(framework, {"kind": "cnn"}, phase, measure, digits(), epochs, batch_size)


def char_lm(
    phase: str, framework: str, measure: Measure = _everything, epochs: int = 2,
    batch_size: int = 64,
) -> dict[str, float]:  # fmt: skip
    """Embedding (32) - GRU (64) - linear (vocabulary): the next character of shipped text.

    Args:
        phase: ``train`` or ``inference`` (as :func:`recommender`).
        framework: ``lightning``, ``keras-tensorflow`` or ``keras-torch``.
        measure: the study worker's meter.
        epochs: training epochs.
        batch_size: training and inference batch size.
    """
    x, y, x_test, y_test, vocabulary = sequences()
    spec = {"kind": "lm", "vocabulary": vocabulary}
    return _run(framework, spec, phase, measure, (x, y, x_test, y_test), epochs, batch_size)


def _run(
    framework: str, spec: dict[str, Any], phase: str, measure: Measure, data: tuple[Any, ...],
    epochs: int, batch_size: int, binary: bool = False,
) -> dict[str, float]:  # fmt: skip
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    if phase not in ("train", "inference"):
        raise ValueError(f"phase must be 'train' or 'inference', got {phase!r}")
    x, y, x_test, y_test = data
    run = _lightning if framework == "lightning" else _keras
    return run(framework, spec, phase, measure, x, y, x_test, y_test, epochs, batch_size, binary)


def _accuracy(scores: Any, y: Any, binary: bool) -> float:
    predicted = (scores.reshape(-1) > 0).astype("int64") if binary else scores.argmax(axis=1)
    return float((predicted == y).mean())


# -- Lightning -------------------------------------------------------------------------


def _torch_model(spec: dict[str, Any]) -> Any:
    import torch

    nn = torch.nn
    if spec["kind"] == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
        )  # fmt: skip
    if spec["kind"] == "lm":

        class CharLM(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embed = nn.Embedding(spec["vocabulary"], 32)
                self.gru = nn.GRU(32, 64, batch_first=True)
                self.head = nn.Linear(64, spec["vocabulary"])

            def forward(self, x: Any) -> Any:
                output, _ = self.gru(self.embed(x))
                return self.head(output[:, -1])

        return CharLM()

    class NCF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.users = nn.Embedding(spec["users"], spec["dim"])
            self.items = nn.Embedding(spec["items"], spec["dim"])
            self.mlp = nn.Sequential(nn.Linear(3 * spec["dim"], 32), nn.ReLU(), nn.Linear(32, 1))

        def forward(self, pairs: Any) -> Any:
            users, items = self.users(pairs[:, 0]), self.items(pairs[:, 1])
            return self.mlp(torch.cat([users * items, users, items], dim=1))

    return NCF()


def _keras_initialisation(module: Any) -> Any:
    """Initialise a torch model as Keras 3 initialises the same layers, so the twins start alike.

    Embeddings uniform in +-0.05; dense and convolution kernels Glorot-uniform;
    GRU input kernels Glorot-uniform and recurrent kernels orthogonal; biases 0.
    """
    import torch

    nn = torch.nn
    for layer in module.modules():
        if isinstance(layer, nn.Embedding):
            nn.init.uniform_(layer.weight, -0.05, 0.05)
        elif isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.GRU):
            for name, weight in layer.named_parameters():
                if name.startswith("weight_ih"):
                    nn.init.xavier_uniform_(weight)
                elif name.startswith("weight_hh"):
                    nn.init.orthogonal_(weight)
                else:
                    nn.init.zeros_(weight)
    return module


def _lightning(
    framework: str, spec: dict[str, Any], phase: str, measure: Measure, x: Any, y: Any,
    x_test: Any, y_test: Any, epochs: int, batch_size: int, binary: bool,
) -> dict[str, float]:  # fmt: skip
    import logging

    import lightning.pytorch as pl
    import torch

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    pl.seed_everything(SEED, verbose=False)
    network = _keras_initialisation(_torch_model(spec))

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, inputs: Any) -> Any:
            return self.network(inputs)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            inputs, target = batch
            scores = self(inputs)
            if binary:
                return torch.nn.functional.binary_cross_entropy_with_logits(
                    scores.reshape(-1), target
                )
            return torch.nn.functional.cross_entropy(scores, target)

        def predict_step(self, batch: Any, batch_idx: int) -> Any:
            return self(batch[0])

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=LEARNING_RATE)

    data = torch.utils.data
    train = data.DataLoader(data.TensorDataset(torch.as_tensor(x), torch.as_tensor(y)),
                            batch_size=batch_size, shuffle=True)  # fmt: skip
    test = data.DataLoader(data.TensorDataset(torch.as_tensor(x_test)), batch_size=batch_size)

    def trainer(max_epochs: int) -> Any:
        return pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False)  # fmt: skip

    module = Module()
    if phase == "train":
        with measure():
            trainer(epochs).fit(module, train)
    else:
        trainer(1).fit(module, train)
    if phase == "inference":
        with measure():
            batches = trainer(1).predict(module, test)
    else:
        batches = trainer(1).predict(module, test)
    scores = torch.cat(batches).detach().numpy()
    return {"accuracy": _accuracy(scores, y_test, binary)}


# -- Keras 3 ---------------------------------------------------------------------------


def _keras_model(keras: Any, spec: dict[str, Any]) -> Any:
    layers = keras.layers
    if spec["kind"] == "cnn":
        return keras.Sequential([
            keras.Input((1, 8, 8)), layers.Permute((2, 3, 1)),  # channels last, as Keras wants
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(10),
        ])  # fmt: skip
    if spec["kind"] == "lm":
        return keras.Sequential([
            keras.Input((None,), dtype="int64"), layers.Embedding(spec["vocabulary"], 32),
            layers.GRU(64), layers.Dense(spec["vocabulary"]),
        ])  # fmt: skip
    pairs = keras.Input((2,), dtype="int64")
    users = layers.Embedding(spec["users"], spec["dim"])(pairs[:, 0])
    items = layers.Embedding(spec["items"], spec["dim"])(pairs[:, 1])
    joined = layers.Concatenate()([layers.Multiply()([users, items]), users, items])
    hidden = layers.Dense(32, activation="relu")(joined)
    return keras.Model(pairs, layers.Dense(1)(hidden))


def _keras(
    framework: str, spec: dict[str, Any], phase: str, measure: Measure, x: Any, y: Any,
    x_test: Any, y_test: Any, epochs: int, batch_size: int, binary: bool,
) -> dict[str, float]:  # fmt: skip
    backend = framework.removeprefix("keras-")
    chosen = os.environ.setdefault("KERAS_BACKEND", backend)
    if chosen != backend:
        raise RuntimeError(
            f"KERAS_BACKEND is {chosen!r} in this process; {framework} needs {backend!r}: "
            "run each study run in a fresh process (the study runner does)"
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(SEED)
    model = _keras_model(keras, spec)
    loss = (keras.losses.BinaryCrossentropy(from_logits=True) if binary
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=loss)
    if phase == "train":
        with measure():
            model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    else:
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    if phase == "inference":
        with measure():
            scores = model.predict(x_test, batch_size=batch_size, verbose=0)
    else:
        scores = model.predict(x_test, batch_size=batch_size, verbose=0)
    return {"accuracy": _accuracy(np.asarray(scores), y_test, binary)}
