"""Search strategies on joules: does GP or TPE reach the target in fewer joules, sampler counted?

Runs ``green-callbacks hpo compare`` at a scale this machine can run: every
strategy (grid, random, TPE, Gaussian process) on the small dense network and
digits, Adam's three hyperparameters, repeated and interleaved; prints the
per-strategy table (rounds to best, energy to 0.9 accuracy, trial-energy
spread, the sampler's own cost per suggestion) and writes the figure.

    .venv/bin/python benchmarks/bench_hpo.py [--quick] [--json]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import arguments, emit

from green_callbacks.hpo import CompareConfig, compare, format_summary


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    config = (
        CompareConfig(strategies=["random", "tpe"], repetitions=1, rounds=4, epochs=1)
        if args.quick
        else CompareConfig(repetitions=3, rounds=32, epochs=2)
    )
    out = Path(tempfile.mkdtemp(prefix="gc-bench-hpo-"))
    summary, _ = compare(config, out)
    table = [format_summary(summary, config.target), f"figure: {out / 'best_so_far.png'}"]
    emit({"config": config.__dict__, "strategies": summary}, table, args.json)


if __name__ == "__main__":
    main()
