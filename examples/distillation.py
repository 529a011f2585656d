"""Distillation, measured: a small model learns from a larger one, in four frameworks' ways.

On scikit-learn's bundled digits. A 32-channel CNN teacher (Lightning), a
512-unit MLP teacher (Keras 3) and a two-layer tiny BERT teacher (Hugging
Face, built from a config, reading the 64 pixels as tokens) are trained first;
then a student a fraction of each one's size is distilled from it (frozen
teacher, temperature, loss mix): with the Lightning module, with the plain
PyTorch loop, with keras.distillation.Distiller and with DistillationTrainer.
Each report compares the student with its teacher: parameters, accuracy and
inference energy per sample measured on this machine. Attention over 64 pixel
tokens learns slowly: after a few epochs the BERT student usually falls short
of its teacher by more than allowed, and its report rejects it.

    python examples/distillation.py [--epochs 4] [--out runs/distillation]
"""

from __future__ import annotations

import argparse
import importlib.util
import os

if importlib.util.find_spec("tensorflow") is None:
    os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import lightning.pytorch as pl
import torch
import transformers
from hf_digits import datasets as token_datasets
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from green_callbacks.compress import CompressionReport, Measurement, keras_models, torch_models
from green_callbacks.hf import DistillationTrainer
from green_callbacks.keras import EnergyCallback as KerasEnergyCallback
from green_callbacks.lightning import Distillation, EnergyCallback
from green_callbacks.lightning.demo import DigitsCNN, digits_loaders


def show(name: str, report: CompressionReport, path: str) -> None:
    print(f"{name}: {report.summary()}")
    report.write_json(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default="runs/distillation")
    args = parser.parse_args()

    # Lightning: a 32-channel teacher, an 8-channel student
    torch.manual_seed(0)
    train, val = digits_loaders(batch_size=32, seed=0)
    quiet = {"logger": False, "enable_progress_bar": False, "enable_checkpointing": False,
             "enable_model_summary": False}  # fmt: skip
    teacher = DigitsCNN(channels=32)
    pl.Trainer(max_epochs=args.epochs, **quiet).fit(teacher, train, val)
    module = Distillation(
        DigitsCNN(channels=8, lr=1e-2), teacher, temperature=3.0, alpha=0.7, max_accuracy_drop=0.05,
        measure=Measurement(batch_size=256), report_path=f"{args.out}/lightning.json",
    )  # fmt: skip
    trainer = pl.Trainer(max_epochs=args.epochs, callbacks=[EnergyCallback()], **quiet)
    trainer.fit(module, train, val)  # ends with the report: logged, written, in module.result
    assert module.result is not None
    show("lightning", module.result.report, f"{args.out}/lightning.json")

    # Plain PyTorch: the same teacher, a 4-channel student, no Trainer
    student = DigitsCNN(channels=4)
    result = torch_models.distill(
        teacher, student, train, eval_data=val, epochs=args.epochs, temperature=3.0,
        alpha=0.7, optimizer=torch.optim.Adam(student.parameters(), lr=1e-2),
        max_accuracy_drop=0.05, measure=Measurement(batch_size=256),
    )  # fmt: skip
    show("pytorch", result.report, f"{args.out}/pytorch.json")

    # Keras 3: a 512-unit teacher, a 64-unit student, with keras.distillation.Distiller
    digits = load_digits()
    x_tr, x_va, y_tr, y_va = train_test_split(
        (digits.data / 16.0).astype("float32"), digits.target, test_size=0.25, random_state=0
    )
    keras.utils.set_random_seed(0)

    def mlp(units: int) -> keras.Model:
        hidden = keras.layers.Dense(units, activation="relu")
        return keras.Sequential([keras.Input((64,)), hidden, keras.layers.Dense(10)])

    big = mlp(512)
    big.compile(optimizer="adam",
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    big.fit(x_tr, y_tr, epochs=args.epochs, batch_size=32, verbose=0)
    result = keras_models.distill(
        big, mlp(64), x_tr, y_tr, eval_data=(x_va, y_va), temperature=3.0,
        epochs=args.epochs, optimizer=keras.optimizers.Adam(0.01),
        callbacks=[KerasEnergyCallback()], max_accuracy_drop=0.05,
        measure=Measurement(batch_size=256),
    )  # fmt: skip
    show("keras", result.report, f"{args.out}/keras.json")

    # Hugging Face: a two-layer tiny BERT teacher, a one-layer student half as wide
    def bert(hidden: int, layers: int) -> transformers.PreTrainedModel:
        config = transformers.BertConfig(
            vocab_size=17, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
            intermediate_size=2 * hidden, max_position_embeddings=64, num_labels=10,
        )  # fmt: skip
        return transformers.BertForSequenceClassification(config)

    def arguments(name: str, epochs: int) -> transformers.TrainingArguments:
        return transformers.TrainingArguments(
            output_dir=f"{args.out}/{name}", num_train_epochs=epochs, learning_rate=2e-3,
            per_device_train_batch_size=16, warmup_steps=20, save_strategy="no", report_to=[],
            use_cpu=True, disable_tqdm=True,
        )  # fmt: skip

    torch.manual_seed(0)
    train_rows, eval_rows = token_datasets()
    bert_teacher = bert(64, 2)  # attention over 64 pixel tokens learns slowly: twice the epochs
    transformers.Trainer(model=bert_teacher, args=arguments("hf_teacher", 2 * args.epochs),
                         train_dataset=train_rows).train()  # fmt: skip
    trainer = DistillationTrainer(
        model=bert(32, 1), teacher=bert_teacher, temperature=2.0, alpha=0.5,
        args=arguments("hf_student", args.epochs), train_dataset=train_rows,
    )  # fmt: skip
    trainer.train()
    result = trainer.report(eval_rows, max_accuracy_drop=0.1, measure=Measurement(batch_size=64))
    show("hugging face", result.report, f"{args.out}/hf.json")


if __name__ == "__main__":
    main()
