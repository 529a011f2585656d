"""The serving subcommands of ``green-callbacks``: ``serve-sweep``, ``tokens``, ``layers``, ``zoo``.

Each is thin over its module; :func:`add_parsers` registers them on the main parser.
A model is named the same way everywhere (``--model``):

- ``digits``: a small CNN for scikit-learn's 8x8 digits (2 conv, 2 linear layers);
- ``tv:NAME``: a torchvision model with random weights (``tv:shufflenet_v2_x1_0``);
- ``MODULE:FUNCTION``: your function, returning ``(model, example)`` where the
  example is one request without the batch axis.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
from pathlib import Path
from typing import Any

from green_callbacks._argtypes import number, positive_int
from green_callbacks._optional import missing_extra
from green_callbacks._optional import pyplot as headless_pyplot
from green_callbacks.core.ledger import next_version
from green_callbacks.core.memory import refuse_unless_fits
from green_callbacks.meters.spec import check_meters
from green_callbacks.serving.stream import ServingConfigError

DEFAULT_RATES = ("16", "32", "64", "128")
DEFAULT_POLICIES = ("fixed:1", "fixed:16", "fixed:32", "greedy:128", "maxwait:32/50")


def add_parsers(sub: Any) -> None:
    """Register the serving subcommands.

    Args:
        sub: the main parser's subparsers action.
    """
    meter = {"action": "append", "dest": "meters", "metavar": "SPEC",
             "help": "energy source (repeatable; default auto)"}  # fmt: skip
    model = {"default": "digits", "help": "digits, tv:NAME or MODULE:FUNCTION (default digits)"}
    size = {"type": positive_int, "default": 64,
            "help": "image height and width for tv: models (default %(default)s)"}  # fmt: skip

    sweep = sub.add_parser(
        "serve-sweep", help="joules per request against latency: rates x batching policies",
        description="Serve a model a request stream at each rate with each batching policy, in "
        "real time, metered: J/request, latency percentiles, throughput; the figure, and with "
        "--slo-ms the policy with the fewest joules whose p99 meets it (docs/inference.md).",
    )  # fmt: skip
    sweep.add_argument("--model", **model)
    sweep.add_argument("--image-size", **size)
    sweep.add_argument("--rates", nargs="+", default=list(DEFAULT_RATES), metavar="RATE",
                       help="requests per second (default: %(default)s)")  # fmt: skip
    sweep.add_argument("--arrivals", choices=("regular", "poisson"), default="regular",
                       help="arrival process (default %(default)s)")  # fmt: skip
    sweep.add_argument("--replay", metavar="FILE", help="replay these timestamps instead of rates")
    sweep.add_argument("--policies", nargs="+", default=list(DEFAULT_POLICIES), metavar="SPEC",
                       help="fixed:B, greedy[:CAP], maxwait:B/T_MS (%(default)s)")  # fmt: skip
    sweep.add_argument("--requests", type=positive_int, default=500,
                       help="requests per configuration (default %(default)s)")  # fmt: skip
    sweep.add_argument("--max-s", type=number(above=0.0), default=30.0,
                       help="wall-clock cap per configuration in s (%(default)s)")  # fmt: skip
    sweep.add_argument("--warmup", type=int, default=8,
                       help="warm-up batches per configuration (default %(default)s)")  # fmt: skip
    sweep.add_argument("--idle-s", type=number(at_least=0.0), default=1.0,
                       help="idle power measured first, s (default %(default)s)")  # fmt: skip
    sweep.add_argument("--slo-ms", type=number(above=0.0), help="p99 latency objective, ms")
    sweep.add_argument("--meter", **meter)
    sweep.add_argument("--out", default="runs/serving", help="output folder (default %(default)s)")
    sweep.add_argument("--force-new", action="store_true",
                       help="--out holds another sweep: measure into a new folder beside it "
                       "(OUT-v2...) instead of refusing")  # fmt: skip
    sweep.set_defaults(handler=_cmd_sweep)

    tokens = sub.add_parser(
        "tokens", help="joules per prompt token and per generated token of a causal LM",
        description="Measure a Hugging Face causal LM's prefill and generation energy per token "
        "at several batch sizes (default: a small GPT-2 built from a config, random weights).",
    )  # fmt: skip
    tokens.add_argument("--model", help="MODULE:FUNCTION returning a causal LM (default: GPT-2)")
    tokens.add_argument("--prompt", type=positive_int, default=32, help="prompt tokens")
    tokens.add_argument("--new", type=positive_int, default=32, help="generated tokens")
    tokens.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 4, 16])
    tokens.add_argument("--rounds", type=positive_int, default=3, help="rounds (median)")
    tokens.add_argument("--meter", **meter)
    tokens.add_argument("--out", default="runs/tokens", help="output folder (default %(default)s)")
    tokens.set_defaults(handler=_cmd_tokens)

    layers = sub.add_parser(
        "layers", help="where a model's joules go: by module, or architecture variants",
        description="Split a model's measured energy over its modules by their own time "
        "(attributed, not measured), or with --factorial train architecture variants and "
        "compare whole-network energy with rank tests (docs/inference.md).",
    )  # fmt: skip
    layers.add_argument("--model", **model)
    layers.add_argument("--image-size", **size)
    layers.add_argument("--batch-size", type=positive_int, default=32, help="inputs per batch")
    layers.add_argument("--batches", type=positive_int, default=20, help="batches per pass")
    layers.add_argument("--train", action="store_true", help="training steps, backward included")
    layers.add_argument("--factorial", nargs="*", metavar="FACTOR=LEVELS",
                        help="variants (default conv=1,4 linear=3,7 relu=on,off)")  # fmt: skip
    layers.add_argument("--repetitions", type=positive_int, default=5, help="runs per variant")
    layers.add_argument("--steps", type=positive_int, default=30, help="training steps per run")
    layers.add_argument("--epochs", type=positive_int, default=None,
                        help="train each variant this many epochs instead of --steps")  # fmt: skip
    layers.add_argument("--task", choices=("digits", "noisy-digits"), default="digits",
                        help="the data (noisy-digits: with noise and shifts, harder)")  # fmt: skip
    layers.add_argument(
        "--max-drop",
        type=number(at_least=0.0),
        default=0.01,
        help="accuracy given up for the cheapest variant (0.01: one point)",
    )
    layers.add_argument("--meter", **meter)
    layers.add_argument("--out", default="runs/layers", help="output folder (default %(default)s)")
    layers.set_defaults(handler=_cmd_layers)

    zoo = sub.add_parser(
        "zoo", help="joules per image of reference architectures against year and accuracy",
        description="Measure torchvision architectures built with random weights (nothing "
        "downloaded), interleaved, and plot joules per image against year and ImageNet top-1.",
    )  # fmt: skip
    zoo.add_argument("--models", nargs="+", help="torchvision names (default: the thesis's five)")
    zoo.add_argument("--image-size", type=positive_int, default=224,
                     help="image side in px (default %(default)s; less for a CPU)")  # fmt: skip
    zoo.add_argument("--batch-size", type=positive_int, default=8, help="images per call")
    zoo.add_argument("--rounds", type=positive_int, default=3, help="rounds (median)")
    zoo.add_argument("--meter", **meter)
    zoo.add_argument("--out", default="runs/zoo", help="output folder (default %(default)s)")
    zoo.set_defaults(handler=_cmd_zoo)


def load_model(spec: str, image_size: int = 64) -> tuple[Any, Any]:
    """``(model, example)`` from a ``--model`` spec (see the module's list).

    Args:
        spec: ``digits``, ``tv:NAME`` or ``MODULE:FUNCTION``.
        image_size: the example's side for ``tv:`` models. Units: px.
    """
    try:
        import torch
    except ImportError as err:
        raise missing_extra(err, "torch", purpose="Serving a model") from err
    if spec == "digits":
        from green_callbacks.serving.variants import Architecture

        return Architecture().build(), torch.zeros(1, 8, 8)
    if spec.startswith("tv:"):
        from green_callbacks.serving.zoo import torchvision_model

        return torchvision_model(spec[3:], image_size)[0], torch.zeros(3, image_size, image_size)
    loaded = _call(spec)
    if not (isinstance(loaded, tuple) and len(loaded) == 2):
        raise ServingConfigError(
            f"{spec} must return (model, example), got {type(loaded).__name__}"
        )
    return loaded


def _call(spec: str) -> Any:
    """Call the function ``MODULE:FUNCTION`` names, or say clearly why it cannot be."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ServingConfigError(
            f"--model {spec!r} is not digits, tv:NAME or MODULE:FUNCTION (e.g. mypkg.models:build)"
        )
    try:
        function = getattr(importlib.import_module(module), name, None)
    except ImportError as err:
        raise ServingConfigError(f"--model {spec!r}: cannot import {module!r} ({err})") from err
    if not callable(function):
        raise ServingConfigError(f"--model {spec!r}: {module!r} has no function {name!r}")
    return function()


def _cmd_sweep(args: argparse.Namespace) -> int:
    from green_callbacks.serving import ServeConfig, batch_runner, parse_policy, parse_stream, sweep

    check_meters(args.meters or ["auto"])
    streams = (
        [f"replay:{args.replay}"] if args.replay else [f"{args.arrivals}:{r}" for r in args.rates]
    )
    for spec in streams:  # every spec is checked before a model is built
        parse_stream(spec)
    for spec in args.policies:
        parse_policy(spec)
    config = ServeConfig(requests=args.requests, max_s=args.max_s, warmup_batches=args.warmup,
                         idle_s=args.idle_s, meters=args.meters or "auto")  # fmt: skip
    model, example = load_model(args.model, args.image_size)
    run = batch_runner(model, example)
    out = next_version(Path(args.out)) if args.force_new else Path(args.out)
    identity = f"{args.model or 'default'} image_size={args.image_size}"
    results = sweep.run_sweep(run, streams, args.policies, config, out, model=identity)
    print(sweep.format_table(results))
    print(f"figure: {sweep.plot(results, out, slo_ms=args.slo_ms)}")
    print(f"table:  {out / sweep.TABLE}")
    if args.slo_ms is not None:
        found = sweep.recommend(results, args.slo_ms)
        for recommendation in found:
            print(recommendation.message)
        print(f"recommendation: {sweep.write_recommendations(out, found)}")
    return 0


def _cmd_tokens(args: argparse.Namespace) -> int:
    from green_callbacks.serving.tokens import token_energy

    check_meters(args.meters or ["auto"])
    model = _call(args.model) if args.model else tiny_gpt2(positions=args.prompt + args.new)
    costs = token_energy(model, prompt_tokens=args.prompt, new_tokens=args.new,
                         batch_sizes=args.batch_sizes, meters=args.meters or "auto",
                         rounds=args.rounds)  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokens.json").write_text(json.dumps([c.to_dict() for c in costs], indent=2) + "\n")
    print(f"{'batch':>5} {'J/prompt token':>15} {'J/generated token':>18} {'J/request':>10} "
          f"{'ms/token':>9}")  # fmt: skip
    for c in costs:
        print(f"{c.batch_size:>5} {c.j_per_prompt_token:>15.4g} {c.j_per_generated_token:>18.4g} "
              f"{c.j_per_request:>10.4g} {c.s_per_generated_token * 1000:>9.2f}")  # fmt: skip
    print(
        f"energy: {costs[0].energy_kind} ({costs[0].energy_source}); table: {out / 'tokens.json'}"
    )
    return 0


def sample_bytes(model: Any, example: Any, *, train: bool) -> float:
    """Memory one input takes through ``model``: its bytes, and the activations. Units: B.

    One forward pass of a batch of one measures every module's output;
    inference holds about the largest two at a time, training all of them
    (kept for the backward pass, and their gradients).
    """
    import torch

    sizes: list[int] = []

    def note(module: Any, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            sizes.append(output.numel() * output.element_size())

    handle = torch.nn.modules.module.register_module_forward_hook(note)
    mode = model.training
    model.eval()  # batch norm takes no statistics from a batch of one
    try:
        with torch.inference_mode():
            model(example.unsqueeze(0))
    finally:
        handle.remove()
        model.train(mode)
    held = 2 * sum(sizes) if train else 2 * max(sizes, default=0)
    return float(example.numel() * example.element_size() + held)


def tiny_gpt2(positions: int = 128, layers: int = 2, width: int = 128) -> Any:
    """A small GPT-2 from a config, random weights (the tokens command's default model).

    Args:
        positions: the longest prompt plus generation.
        layers: transformer blocks.
        width: embedding width (4 heads).
    """
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError as err:
        raise missing_extra(err, "hf", purpose="green-callbacks tokens") from err
    refuse_unless_fits(
        f"a GPT-2 of {positions} positions",
        4.0 * positions * width * 2,
        "shorten the prompt or the generation",
    )  # its position embedding, twice
    config = GPT2Config(n_layer=layers, n_head=4, n_embd=width, vocab_size=512,
                        n_positions=positions, bos_token_id=0, eos_token_id=0)  # fmt: skip
    return GPT2LMHeadModel(config)


def _cmd_layers(args: argparse.Namespace) -> int:
    check_meters(args.meters or ["auto"])
    meters = args.meters or "auto"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.factorial is not None:
        return _factorial(args, meters, out)
    import torch

    from green_callbacks.serving.layers import attribute

    model, example = load_model(args.model, args.image_size)
    example = torch.as_tensor(example)
    refuse_unless_fits(
        f"a batch of {args.batch_size} inputs of shape {tuple(example.shape)}",
        args.batch_size * sample_bytes(model, example, train=args.train),
        "use a smaller --batch-size (or --image-size)",
    )
    x = example.unsqueeze(0).expand(args.batch_size, *example.shape).contiguous()
    if args.train:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

        def step() -> None:
            optimizer.zero_grad()
            model(x).float().mean().backward()
            optimizer.step()

        model.train()
    else:
        model.eval()

        def step() -> None:
            with torch.inference_mode():
                model(x)

    result = attribute(model, step, batches=args.batches, backward=args.train, meters=meters)
    (out / "layers.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")
    print(f"{'layer type':<20} {'J':>10} {'share':>7}   (attributed by time)")
    for kind, share in result.shares().items():
        print(f"{kind:<20} {result.by_type[kind]:>10.4g} {share:>7.1%}")
    print(f"energy: {result.energy_j:.4g} J over {result.batches} batches, "
          f"{result.energy_kind} ({result.energy_source}); "
          f"the hooks added {result.hook_overhead:+.1%} time")  # fmt: skip
    if result.caution:
        print(f"caution: {result.caution}")
    print(f"per module: {out / 'layers.json'}")
    return 0


def _factorial(args: argparse.Namespace, meters: Any, out: Path) -> int:
    from green_callbacks.serving import variants
    from green_callbacks.study.report import box_plots
    from green_callbacks.study.stats import format_table

    levels = _levels(args.factorial) if args.factorial else None
    rows = variants.factorial(variants.design(levels), repetitions=args.repetitions,
                              steps=args.steps, epochs=args.epochs, task=args.task,
                              meters=meters)  # fmt: skip
    with open(out / "variants.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    found = variants.analyse(rows)
    for factor, comparisons in found.items():
        print(f"== {factor}")
        print(format_table(comparisons))
    kind = rows[0]["energy_kind"]
    box_plots(rows, found["variant"], "variant", (), kind, out)
    trade = variants.front(rows, args.max_drop)
    print(_format_front(trade, kind))
    _plot_front(trade, kind, out / "front.png")
    print(f"runs: {out / 'variants.csv'}; figures: {out}/box_energy_j.png, box_duration_s.png, "
          "box_accuracy.png, front.png")  # fmt: skip
    return 0


def _format_front(trade: dict[str, Any], kind: str) -> str:
    lines = [f"== energy and accuracy (medians; energy {kind})",
             f"{'variant':<24}{'J':>10}{'accuracy':>10}  front"]  # fmt: skip
    for v in trade["variants"]:
        lines.append(f"{v['variant']:<24}{v['energy_j']:>10.4g}{v['accuracy']:>10.4f}  "
                     f"{'yes' if v['on_front'] else ''}")  # fmt: skip
    best, chosen = trade["best"], trade["chosen"]
    lines.append(
        f"the cheapest within {trade['max_drop']:g} of the best accuracy ({best['variant']}, "
        f"{best['accuracy']:.4f}): {chosen['variant']}, {chosen['accuracy']:.4f} for "
        f"{chosen['energy_j'] / best['energy_j']:.0%} of its energy"
    )
    return "\n".join(lines)


def _plot_front(trade: dict[str, Any], kind: str, path: Path) -> None:
    pyplot = headless_pyplot("serving", purpose="The energy-accuracy figure")
    figure, axis = pyplot.subplots(figsize=(6, 4))
    points = trade["variants"]
    axis.scatter([v["energy_j"] for v in points], [v["accuracy"] for v in points], color="C0")
    on = [v for v in points if v["on_front"]]
    axis.plot([v["energy_j"] for v in on], [v["accuracy"] for v in on], color="C1",
              label="front: no variant cheaper and as accurate")  # fmt: skip
    for v in points:
        axis.annotate(v["variant"], (v["energy_j"], v["accuracy"]), fontsize=7)
    axis.set_xlabel(f"training energy per run (J, {kind}, median)")
    axis.set_ylabel("held-out accuracy (median)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def _levels(items: list[str]) -> dict[str, list[Any]]:
    levels: dict[str, list[Any]] = {}
    for item in items:
        name, _, values = item.partition("=")
        if not values:
            raise ServingConfigError(f"--factorial {item!r}: write FACTOR=LEVEL,LEVEL (conv=1,4)")
        parts = values.split(",")
        try:
            levels[name] = [p == "on" for p in parts] if name == "relu" else [int(p) for p in parts]
        except ValueError:
            raise ServingConfigError(
                f"--factorial {item!r}: levels must be whole numbers"
            ) from None
    return levels


def _cmd_zoo(args: argparse.Namespace) -> int:
    from green_callbacks.serving import zoo

    check_meters(args.meters or ["auto"])
    entries = zoo.timeline(args.models or zoo.THESIS_MODELS, image_size=args.image_size,
                           batch_size=args.batch_size, meters=args.meters or "auto",
                           rounds=args.rounds)  # fmt: skip
    results, figure = zoo.write(entries, args.out)
    print(zoo.format_table(entries))
    print(f"figure: {figure}\nresults: {results}")
    return 0
