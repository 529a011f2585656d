"""What only tf_keras's policy callbacks do (the cases they share with Keras 3 run on both in
tests/keras/test_policies.py): refusals where tf_keras's own fault tolerance is the answer."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tf_keras")

from green_callbacks.core.session import Distributed
from green_callbacks.errors import ConfigError
from green_callbacks.meters.share import RankShare
from green_callbacks.testing import FakeMeter
from green_callbacks.tf_keras import EnergyCallback, EnergyCheckpoint
from tests.keras.fit_helpers import kit

K = kit("tf_keras")


def test_backup_and_restore_beside_it_is_refused_clearly(tmp_path: Path) -> None:
    meter, clock = K.energy()
    saver = EnergyCheckpoint(tmp_path / "backup", every_kj=0.3, delete_on_finish=False)
    K.fit(K.model(), [K.Ticks(meter, clock), meter, saver], epochs=1)
    theirs = K.k.callbacks.BackupAndRestore(str(tmp_path / "theirs"))
    again = EnergyCheckpoint(tmp_path / "backup", every_kj=0.3)
    with pytest.raises(ConfigError, match="BackupAndRestore both resume"):
        K.fit(K.model(), [K.energy()[0], theirs, again], epochs=1)


def test_a_worker_of_a_multi_worker_job_is_told_to_use_backup_and_restore(tmp_path: Path) -> None:
    class Worker(EnergyCallback):  # type: ignore[misc]
        """Worker 0 of two, summing with a stand-in for the strategy's all-reduce."""

        def _distributed(self) -> Distributed:
            return Distributed(RankShare(rank=0, world_size=2, all_devices=True), list)

    meter = Worker(meters=FakeMeter({"cpu:0": 10.0}))
    with pytest.raises(ConfigError, match="worker of a multi-worker job; use tf_keras.callbacks"):
        K.fit(K.model(), [meter, EnergyCheckpoint(tmp_path / "backup")], epochs=1)
