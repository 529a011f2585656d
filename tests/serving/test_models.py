"""batch_runner, the factorial variants, the token figures and the zoo's pipeline (with fakes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from green_callbacks.serving import ServingConfigError, batch_runner

torch = pytest.importorskip("torch")


def test_a_torch_model_gets_batches_of_the_asked_size_without_gradients() -> None:
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append((tuple(x.shape), torch.is_inference_mode_enabled()))
            return x.sum()

    run = batch_runner(Probe(), torch.zeros(3, 4))
    run(5)
    run(1)
    run(5)
    assert seen == [((5, 3, 4), True), ((1, 3, 4), True), ((5, 3, 4), True)]


def test_a_mapping_example_is_passed_as_keywords() -> None:
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            seen["shapes"] = (tuple(input_ids.shape), tuple(attention_mask.shape))
            return input_ids

    batch_runner(Probe(), {"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1]})(4)
    assert seen["shapes"] == ((4, 3), (4, 3))


def test_a_keras_model_and_a_plain_callable() -> None:
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert batch_runner(model, np.zeros(4, "float32"))(6).shape == (6, 2)
    assert batch_runner(lambda b: b * 2, np.ones((2, 2)))(3).shape == (3, 2, 2)


def test_bad_models_and_examples_are_named() -> None:
    with pytest.raises(ServingConfigError, match="got int"):
        batch_runner(3, np.zeros(1))
    with pytest.raises(ServingConfigError, match="without the batch axis"):
        batch_runner(lambda b: b, "a text")


def test_the_factorial_design_builds_every_variant_and_compares_each_factor() -> None:
    from green_callbacks.serving import variants

    archs = variants.design({"conv": [0, 2], "relu": [True, False]})
    assert [a.label for a in archs] == ["conv0-linear2-relu", "conv0-linear2-norelu",
                                        "conv2-linear2-relu", "conv2-linear2-norelu"]  # fmt: skip
    net = archs[2].build()
    assert [type(m).__name__ for m in net] == ["Conv2d", "ReLU", "Conv2d", "ReLU", "Flatten",
                                               "Linear", "ReLU", "Linear"]  # fmt: skip
    assert net(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    rows = variants.factorial(archs, repetitions=3, steps=2, meters="estimate")
    assert len(rows) == 12 and {r["energy_kind"] for r in rows} == {"estimated"}
    assert all(r["energy_j"] > 0 and 0.0 <= r["accuracy"] <= 1.0 for r in rows)
    found = variants.analyse(rows, factors=("conv", "linear", "relu"))
    assert set(found) == {"conv", "relu", "variant"}  # linear has one level
    assert found["conv"][0].metric == "energy_j" and found["conv"][0].a12 is not None
    assert found["variant"][0].test == "kruskal-wallis"
    assert found["variant"][0].eta_squared is not None
    with pytest.raises(ServingConfigError, match="unknown architecture factor"):
        variants.design({"attention": [1]})
    with pytest.raises(ServingConfigError, match="linear >= 1"):
        variants.Architecture(linear=0)


def test_variants_trained_to_epochs_learn_and_the_front_names_the_cheapest_good_one() -> None:
    from green_callbacks.serving import variants

    archs = variants.design({"conv": [0, 1], "linear": [2]})
    rows = variants.factorial(archs, repetitions=1, epochs=2, meters="estimate")
    assert {r["variant"] for r in rows} == {"conv0-linear2-relu", "conv1-linear2-relu"}
    assert min(r["accuracy"] for r in rows) > 0.5  # two epochs of digits: far above chance
    noisy = variants.factorial(archs[:1], repetitions=1, epochs=2, task="noisy-digits",
                               meters="estimate")  # fmt: skip
    clean = next(r["accuracy"] for r in rows if r["variant"] == archs[0].label)
    assert noisy[0]["accuracy"] < clean  # the same network finds the noisy task harder
    with pytest.raises(ServingConfigError, match="task must be one of"):
        variants.task_data("cifar")


def test_the_front_and_the_cheapest_variant_within_the_drop() -> None:
    from green_callbacks.serving import variants

    runs = [("a", 10.0, 0.97), ("a", 12.0, 0.97), ("b", 5.0, 0.965), ("c", 4.0, 0.90),
            ("d", 6.0, 0.95)]  # fmt: skip
    rows = [{"variant": v, "energy_j": j, "accuracy": acc} for v, j, acc in runs]
    found = variants.front(rows, max_drop=0.01)
    assert [(v["variant"], v["energy_j"], v["on_front"]) for v in found["variants"]] == [
        ("c", 4.0, True),
        ("b", 5.0, True),
        ("d", 6.0, False),
        ("a", 11.0, True),
    ]
    assert found["best"]["variant"] == "a" and found["chosen"]["variant"] == "b"
    assert variants.front(rows, max_drop=0.0)["chosen"]["variant"] == "a"
    assert variants.front(rows, max_drop=0.1)["chosen"]["variant"] == "c"


def test_token_figures_add_up_for_a_tiny_causal_lm() -> None:
    pytest.importorskip("transformers")
    from green_callbacks.serving.cli import tiny_gpt2
    from green_callbacks.serving.tokens import token_energy

    model = tiny_gpt2(positions=32, layers=1, width=32)
    costs = token_energy(model, prompt_tokens=8, new_tokens=6, batch_sizes=(1, 8),
                         meters="estimate", rounds=1, min_round_s=0.2)  # fmt: skip
    assert [c.batch_size for c in costs] == [1, 8]
    for c in costs:
        # one request = its prompt's prefill + its decode steps (the first token comes with prefill)
        assert c.j_per_request == pytest.approx(
            c.j_per_prompt_token * 8 + c.j_per_generated_token * 5, rel=1e-9
        )
        assert c.j_per_prompt_token > 0 and c.energy_kind == "estimated"
    # Eight sequences decode in one step each: far fewer joules per token than one at a time.
    assert costs[1].j_per_generated_token < costs[0].j_per_generated_token
    with pytest.raises(ServingConfigError, match="exceeds the model's 32 positions"):
        token_energy(model, prompt_tokens=30, new_tokens=6)
    with pytest.raises(ServingConfigError, match="new_tokens >= 2"):
        token_energy(model, new_tokens=1)


def fake_build(name: str, image_size: int):
    """Stands in for torchvision: a tiny conv net per name, deeper for 'later' models."""
    depth = {"old": 1, "new": 4}[name]
    layers = [torch.nn.Conv2d(3, 8, 3, padding=1)]
    layers += [torch.nn.Conv2d(8, 8, 3, padding=1) for _ in range(depth - 1)]
    return torch.nn.Sequential(*layers), {"old": 60.0, "new": 80.0}[name]


def test_the_zoo_measures_each_model_and_writes_its_figure(tmp_path, monkeypatch) -> None:
    from green_callbacks.serving import zoo

    monkeypatch.setitem(zoo.YEARS, "old", 2012)
    monkeypatch.setitem(zoo.YEARS, "new", 2022)
    entries = zoo.timeline(["old", "new"], image_size=16, batch_size=2, meters="estimate",
                           rounds=1, min_round_s=0.1, build=fake_build)  # fmt: skip
    assert [(e.name, e.year, e.accuracy) for e in entries] == [("old", 2012, 60.0),
                                                              ("new", 2022, 80.0)]  # fmt: skip
    assert entries[1].params > entries[0].params and entries[0].j_per_image > 0
    results, figure = zoo.write(entries, tmp_path)
    assert json.loads(results.read_text())[1]["name"] == "new"
    assert figure.stat().st_size > 10_000
    table = zoo.format_table(entries)
    assert table.splitlines()[1].startswith("old") and "x old" in table.splitlines()[0]


def test_a_zoo_model_that_fails_at_the_image_size_is_named() -> None:
    from green_callbacks.serving import zoo

    def build(name, image_size):
        return torch.nn.Sequential(torch.nn.Conv2d(3, 3, 5), torch.nn.Conv2d(3, 3, 5)), None

    with pytest.raises(ServingConfigError, match="tiny fails on 4x4 images.*larger --image-size"):
        zoo.timeline(["tiny"], image_size=4, build=build, meters="estimate")
