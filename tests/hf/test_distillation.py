"""DistillationTrainer: a tiny BERT student learns from a larger one (both built from configs)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the 'hf' extra")
transformers = pytest.importorskip("transformers", reason="needs the 'hf' extra")

from green_callbacks.compress import CompressConfigError, Measurement  # noqa: E402
from green_callbacks.compress.torch_models import count_params  # noqa: E402
from green_callbacks.hf import DistillationTrainer, EnergyCallback  # noqa: E402
from green_callbacks.testing import constant_power_trace  # noqa: E402


def bert(hidden: int, layers: int) -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=17, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=16, num_labels=2,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def rows(count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Sequences of 16 tokens; the label says whether token 1 outnumbers token 2."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 3, (count, 16), generator=generator)
    labels = ((tokens == 1).sum(dim=1) > 8).long()
    return [{"input_ids": tokens[i], "labels": labels[i]} for i in range(count)]


def arguments(tmp_path: Path, epochs: int) -> transformers.TrainingArguments:
    return transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=epochs, per_device_train_batch_size=16,
        learning_rate=3e-3, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
        logging_strategy="epoch", eval_strategy="epoch",
    )  # fmt: skip


def test_student_learns_from_the_frozen_teacher_and_is_judged(tmp_path: Path) -> None:
    torch.manual_seed(0)
    train, held_out = rows(256, 0), rows(64, 1)
    teacher = bert(32, 2)
    transformers.Trainer(
        model=teacher, args=arguments(tmp_path / "t", 3), train_dataset=train, eval_dataset=held_out
    ).train()
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = bert(16, 1)
    before = {k: v.clone() for k, v in student.state_dict().items()}

    energy = EnergyCallback(meters=constant_power_trace(tmp_path, 40.0))
    trainer = DistillationTrainer(
        model=student, teacher=teacher, temperature=2.0, alpha=0.5,
        args=arguments(tmp_path / "s", 2), train_dataset=train, eval_dataset=held_out,
        callbacks=[energy],
    )  # fmt: skip
    trainer.train()

    assert all(torch.equal(v, frozen[k]) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(v, before[k]) for k, v in student.state_dict().items())
    assert any("energy/train_epoch_j" in e for e in trainer.state.log_history)
    result = trainer.report(
        held_out,
        measure=Measurement(32, constant_power_trace(tmp_path, 40.0, name="r.csv"), 1, 0.05),
    )  # fmt: skip
    report = result.report
    assert report.original.params == count_params(teacher) > 2 * report.compressed.params
    assert report.accepted and result.model is student  # no accuracy limit was set
    assert report.compressed.accuracy is not None and 0 <= report.compressed.accuracy <= 1
    logged = trainer.state.log_history[-1]  # the report's figures reach every logger
    assert logged["compress/accepted"] == 1.0 and "compress/j_per_sample_ratio" in logged
    assert (tmp_path / "s" / "out" / "compression_report.json").exists()  # in output_dir


def test_bad_mix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CompressConfigError, match="alpha=2"):
        DistillationTrainer(model=bert(16, 1), teacher=bert(16, 1), alpha=2,
                            args=arguments(tmp_path, 1))  # fmt: skip
