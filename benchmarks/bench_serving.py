"""Serving energy on this machine: one sweep of batching policies, hook cost, the timeline.

1. The digits CNN served at two rates with four batching policies, in real time:
   joules per request (idle included and above idle) against latency, and the
   policy with the fewest joules whose p99 stays under 100 ms.
2. What module attribution's hooks cost: the same inference batches with and
   without them, as a ratio (``hook_overhead``).
3. Where torchvision imports (the ``zoo`` extra's environment): the thesis's five
   architectures at a reduced image size, joules per image against year and accuracy.

    .venv/bin/python benchmarks/bench_serving.py [--quick] [--json]
    .venv-zoo/bin/python benchmarks/bench_serving.py [--quick] [--json]   # with the timeline
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

from _common import arguments, emit

from green_callbacks.serving import ServeConfig, batch_runner, sweep
from green_callbacks.serving.layers import attribute
from green_callbacks.serving.variants import Architecture

SLO_MS = 100.0


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    import torch

    out = Path(tempfile.mkdtemp(prefix="gc-bench-serving-"))
    model, example = Architecture().build(), torch.zeros(1, 8, 8)
    config = ServeConfig(
        requests=60 if args.quick else 600, warmup_batches=4, idle_s=0.5 if args.quick else 2.0
    )
    results = sweep.run_sweep(
        batch_runner(model, example),
        ["regular:32", "regular:256"],
        ["fixed:1", "fixed:32", "greedy:128", "maxwait:32/50"],
        config,
        out,
        model="digits CNN, random weights",
    )
    found = sweep.recommend(results, SLO_MS)
    sweep.plot(results, out, slo_ms=SLO_MS)
    x = example.unsqueeze(0).expand(64, 1, 8, 8).contiguous()

    def step() -> None:
        with torch.inference_mode():
            model(x)

    split = attribute(model, step, batches=10 if args.quick else 200)
    table = [
        sweep.format_table(results),
        *(r.message for r in found),
        f"figure: {out / sweep.FIGURE}",
        f"attribution hooks: {split.hook_overhead:+.1%} time per batch (digits CNN, batch 64)",
        "by layer type: " + ", ".join(f"{k} {v:.0%}" for k, v in split.shares().items()),
    ]
    payload = {
        "sweep": [r.to_dict() for r in results],
        "recommendations": [r.message for r in found],
        "hook_overhead": split.hook_overhead,
        "shares": split.shares(),
    }
    if importlib.util.find_spec("torchvision") is not None:
        from green_callbacks.serving import zoo

        entries = zoo.timeline(
            image_size=64 if args.quick else 128, batch_size=4, rounds=1 if args.quick else 5
        )
        zoo.write(entries, out)
        table += [zoo.format_table(entries), f"figure: {out / zoo.FIGURE}"]
        payload["zoo"] = [e.__dict__ for e in entries]
    else:
        print(
            "timeline skipped: torchvision is not importable here (the zoo extra's "
            "environment has it)",
            file=sys.stderr,
        )
    emit(payload, table, args.json)


if __name__ == "__main__":
    main()
