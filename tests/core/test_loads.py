"""Whether a model's weights were loaded, as the watched frameworks tell it."""

from __future__ import annotations

import pytest

from green_callbacks.core.loads import architecture, loaded, watch_torch

torch = pytest.importorskip("torch")


def test_torch_loads_are_seen_and_a_model_made_while_watching_is_known_fresh() -> None:
    watch_torch()
    watch_torch()  # twice: still one wrapper
    assert getattr(torch.nn.Module.load_state_dict, "__green_callbacks_original__", None)
    assert not hasattr(torch.nn.Module.load_state_dict.__green_callbacks_original__,
                       "__green_callbacks_original__")  # fmt: skip
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    assert loaded(net, net.parameters(), net.modules()) is False
    other = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    result = other[0].load_state_dict(net[0].state_dict())  # one part: transfer learning
    assert not result.missing_keys  # the original's result comes back
    assert loaded(other, other.parameters(), other.modules()) is True
    assert loaded(net, net.parameters(), net.modules()) is False


def test_a_pretrained_librarys_model_is_named_inside_a_users_module() -> None:
    transformers = pytest.importorskip("transformers")
    watch_torch()

    class ResNet(torch.nn.Module):  # a fake torchvision class: named as the library names it
        __module__ = "torchvision.models.resnet"

    class Classifier(torch.nn.Module):
        def __init__(self, backbone: torch.nn.Module) -> None:
            super().__init__()
            self.head = torch.nn.Linear(2, 2)
            self.backbone = backbone

    assert architecture(Classifier(ResNet())) == "Classifier"  # parts not given
    model = Classifier(ResNet())
    assert architecture(model, model.modules()) == "ResNet"
    config = transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=8, vocab_size=30)  # fmt: skip
    model = Classifier(transformers.BertModel(config))
    assert architecture(model, model.modules()) == "bert"  # the Hugging Face model_type
    assert loaded(model, model.parameters(), model.modules()) is False  # random weights
