"""The architecture timeline: joules per image of reference networks against year and accuracy.

The networks are torchvision's, built with random weights (nothing is
downloaded: compute does not depend on the weights' values). Their ImageNet
top-1 accuracy is what torchvision's weight metadata records for its default
weights; the year is that of the architecture's paper (torchvision records no
year). Inference runs at ``image_size`` (224 by default; a smaller size lets a
CPU finish, and changes the figures, not the ranking's method), models taking
turns in rounds as in :func:`~green_callbacks.compress.compare_inference`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from green_callbacks._optional import pyplot as headless_pyplot
from green_callbacks._optional import require
from green_callbacks.compress.measure import compare_inference
from green_callbacks.core.atomic import atomic_write
from green_callbacks.serving.stream import ServingConfigError

YEARS = {
    "alexnet": 2012, "vgg16": 2014, "resnet50": 2015, "densenet121": 2016, "mobilenet_v2": 2018,
    "shufflenet_v2_x1_0": 2018, "efficientnet_b0": 2019, "regnet_y_400mf": 2020,
    "vit_b_16": 2020, "swin_t": 2021, "convnext_tiny": 2022,
}  # fmt: skip
"""Year of each architecture's paper (first public version)."""
THESIS_MODELS = ("alexnet", "densenet121", "shufflenet_v2_x1_0", "vit_b_16", "convnext_tiny")
FIGURE = "zoo.png"
RESULTS = "zoo.json"


@dataclass(frozen=True)
class ZooEntry:
    """One architecture's inference cost with its accuracy and year.

    Attributes:
        name: torchvision's model name.
        year: the architecture paper's year, or None when not in :data:`YEARS`.
        accuracy: ImageNet-1K top-1 of torchvision's default weights (percent), or None.
        params: parameters.
        j_per_image: median over rounds. Units: J.
        s_per_image: median over rounds. Units: s.
        image_size: input height and width. Units: px.
        batch_size: images per call.
        energy_kind: ``measured``, ``estimated``, ``replayed`` or ``mixed``.
        energy_source: the meters, as ``domain=label`` pairs.
    """

    name: str
    year: int | None
    accuracy: float | None
    params: int
    j_per_image: float
    s_per_image: float
    image_size: int
    batch_size: int
    energy_kind: str
    energy_source: str


def torchvision_model(name: str, image_size: int = 224) -> tuple[Any, float | None]:
    """A torchvision model with random weights and its default weights' ImageNet top-1.

    Args:
        name: torchvision's model name (``torchvision.models.list_models()``).
        image_size: the input side; vision transformers (``vit_*``), whose
            patch grid is fixed at build time, are built for it. Units: px.
    """
    models = require("torchvision.models", "zoo", purpose="The architecture timeline")
    if name not in models.list_models():
        raise ServingConfigError(
            f"torchvision has no model {name!r}; e.g. {', '.join(THESIS_MODELS)}"
        )
    options = {"image_size": image_size} if name.startswith("vit_") else {}
    model = models.get_model(name, weights=None, **options)
    try:
        meta = models.get_model_weights(name).DEFAULT.meta
        accuracy = float(meta["_metrics"]["ImageNet-1K"]["acc@1"])
    except (KeyError, ValueError, AttributeError):
        accuracy = None
    return model, accuracy


def timeline(
    names: Sequence[str] = THESIS_MODELS,
    *,
    image_size: int = 224,
    batch_size: int = 8,
    meters: Any = "auto",
    rounds: int = 3,
    min_round_s: float = 1.0,
    build: Callable[[str, int], tuple[Any, float | None]] | None = None,
    progress: TextIO | None = None,
) -> list[ZooEntry]:
    """Measure each architecture's inference joules per image, interleaved.

    Args:
        names: model names.
        image_size: input height and width (224 as trained; less for a CPU). Units: px.
        batch_size: images per call.
        meters: as :class:`~green_callbacks.core.EnergyTracker`.
        rounds: rounds per model; each figure is the median round.
        min_round_s: each round runs its model for at least this long. Units: s.
        build: (name, image size) -> (model, accuracy); default
            :func:`torchvision_model` (tests pass fakes).
        progress: where a line per model built and one before measuring go (default stderr).

    Raises:
        ServingConfigError: an unknown name, or a model that fails at this image size.
    """
    import torch

    if not names:
        raise ServingConfigError("name at least one model")
    build = build or torchvision_model
    images = torch.randn(batch_size, 3, image_size, image_size)
    stream = progress if progress is not None else sys.stderr
    runs, built = {}, {}
    for name in names:
        print(f"building {name} ({image_size}x{image_size}, random weights)", file=stream)
        model, accuracy = build(name, image_size)
        model.eval()
        built[name] = (accuracy, sum(p.numel() for p in model.parameters()))
        runs[name] = _runner(torch, model, images)
        try:
            runs[name]()
        except Exception as err:
            raise ServingConfigError(
                f"{name} fails on {image_size}x{image_size} images ({type(err).__name__}: {err}); "
                "use a larger --image-size or leave it out"
            ) from err
    about = len(runs) * rounds * min_round_s
    print(f"measuring {len(runs)} models in {rounds} interleaved rounds of >= {min_round_s:g} s "
          f"each (about {about:.0f} s)", file=stream, flush=True)  # fmt: skip
    costs = compare_inference(runs, batch_size=batch_size, meters=meters, rounds=rounds,
                              min_round_s=min_round_s)  # fmt: skip
    return [
        ZooEntry(name, YEARS.get(name), built[name][0], built[name][1], c.j_per_sample,
                 c.s_per_sample, image_size, batch_size, c.energy_kind, c.energy_source)
        for name, c in costs.items()
    ]  # fmt: skip


def _runner(torch: Any, model: Any, images: Any) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            model(images)

    return run


def write(entries: Sequence[ZooEntry], out: str | Path) -> tuple[Path, Path]:
    """The entries as JSON and the figure (energy against year and against accuracy).

    Args:
        entries: what :func:`timeline` returned.
        out: the folder (created).
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / RESULTS
    text = json.dumps([asdict(e) for e in entries], indent=2) + "\n"
    atomic_write(results, lambda part: part.write_text(text, encoding="utf-8"))
    pyplot = headless_pyplot("study", purpose="the architecture timeline's figure")
    figure, (by_year, by_accuracy) = pyplot.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, attribute in ((by_year, "year"), (by_accuracy, "accuracy")):
        for e in entries:
            x = getattr(e, attribute)
            if x is None:
                continue
            axis.scatter(x, e.j_per_image, color="C0")
            axis.annotate(e.name, (x, e.j_per_image), fontsize=8, xytext=(3, 3),
                          textcoords="offset points")  # fmt: skip
        axis.grid(alpha=0.3)
    by_year.set_xlabel("architecture paper year")
    by_accuracy.set_xlabel("ImageNet-1K top-1 of torchvision's weights (%)")
    kinds = ", ".join(sorted({e.energy_kind for e in entries}))
    by_year.set_ylabel(f"J per image ({kinds})")
    size = entries[0].image_size if entries else 0
    figure.suptitle(f"Inference energy per image at {size}x{size}, random weights")
    figure.tight_layout()
    path = folder / FIGURE
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return results, path


def format_table(entries: Sequence[ZooEntry], baseline: str | None = None) -> str:
    """The entries as a text table, each with its energy over the first (or ``baseline``).

    Args:
        entries: what :func:`timeline` returned.
        baseline: the model the ratio is against (default the first).
    """
    if not entries:
        return "no models"
    by_name: Mapping[str, ZooEntry] = {e.name: e for e in entries}
    base = by_name.get(baseline or entries[0].name, entries[0])
    lines = [f"{'model':<20} {'year':>4} {'top-1 %':>7} {'params M':>8} {'J/image':>9} "
             f"{'ms/image':>8} {'x ' + base.name}"]  # fmt: skip
    for e in sorted(entries, key=lambda e: (e.year or 0, e.name)):
        accuracy = "-" if e.accuracy is None else f"{e.accuracy:.1f}"
        lines.append(
            f"{e.name:<20} {e.year or '-':>4} {accuracy:>7} {e.params / 1e6:>8.1f} "
            f"{e.j_per_image:>9.4g} {e.s_per_image * 1000:>8.2f} "
            f"{e.j_per_image / base.j_per_image:.2f}"
        )
    lines.append(f"energy: {entries[0].energy_kind} ({entries[0].energy_source})")
    return "\n".join(lines)
