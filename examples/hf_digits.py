"""Minimal Hugging Face Trainer example: energy next to the loss in ``log_history``.

A tiny BERT built from a config (no download) classifies scikit-learn's bundled
digits, reading each 8x8 image's 64 pixel intensities (0-16) as tokens.

With ``--min-gain-per-kj G`` an ``EnergyEarlyStopping`` also stops training
once the evaluation loss improves by less than G per kJ over two evaluations.

    python examples/hf_digits.py [--epochs 2] [--out runs/hf] [--min-gain-per-kj 0.5]
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from green_callbacks.hf import EnergyEarlyStopping, attach


def datasets() -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    digits = load_digits()
    tokens = torch.tensor(digits.data, dtype=torch.long)  # intensities 0..16 as token ids
    labels = torch.tensor(digits.target)
    train_idx, eval_idx = train_test_split(range(len(labels)), test_size=0.25, random_state=0)

    def rows(indices: list[int]) -> list[dict[str, torch.Tensor]]:
        return [{"input_ids": tokens[i], "labels": labels[i]} for i in indices]

    return rows(train_idx), rows(eval_idx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="runs/hf")
    parser.add_argument("--min-gain-per-kj", type=float, default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=17, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64, num_labels=10,
    )  # fmt: skip
    train, evaluation = datasets()
    trainer = Trainer(
        model=BertForSequenceClassification(config),
        args=TrainingArguments(
            output_dir=args.out, num_train_epochs=args.epochs, per_device_train_batch_size=16,
            learning_rate=1e-3, warmup_steps=20, logging_strategy="epoch", eval_strategy="epoch",
            save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
        ),
        train_dataset=train,
        eval_dataset=evaluation,
    )  # fmt: skip
    attach(trainer)  # the one added line: before report_to loggers, so they get the figures too
    stopper = None
    if args.min_gain_per_kj is not None:  # after attach's EnergyCallback, so it sees the figures
        stopper = EnergyEarlyStopping("eval_loss", "min", min_gain_per_kj=args.min_gain_per_kj,
                                      patience=2)  # fmt: skip
        trainer.add_callback(stopper)
    trainer.train()
    for entry in trainer.state.log_history:
        energy = {k: round(v, 2) for k, v in entry.items() if k.startswith(("energy/", "power/"))}
        loss = entry.get("loss", entry.get("eval_loss"))
        if energy:
            print(f"epoch {entry.get('epoch')}: loss {loss:.3f}  {energy}")
    if stopper is not None and stopper.decision is not None:
        print(f"stopped early: {stopper.decision.message}")


if __name__ == "__main__":
    main()
