"""Whether a model started from loaded weights (the advisor's P1), and when it is saved
(P2), as far as it was seen.

Neither torch nor Keras records that a model's weights were loaded. Importing
a framework's adapter (``green_callbacks.lightning``, ``green_callbacks.hf``,
``green_callbacks.keras``) starts watching that framework, process-wide:

- every load: ``torch.nn.Module.load_state_dict`` (torchvision's and timm's
  pre-trained weights, ``LightningModule.load_from_checkpoint`` go through
  it), Keras's ``Model.load_weights`` and ``keras.saving.load_model``
  (``keras.applications`` weights go through ``load_weights``); the wrappers
  record the model and call the original, nothing else;
- every weight made: torch's global parameter-registration hook, a wrapper
  of Keras's ``Variable.__init__``, each remembered weakly;
- every save of a Keras model (``Model.save``, ``save_weights``: what
  ``ModelCheckpoint``, ``BackupAndRestore`` and a user's own callback call),
  reported to the run metering it (:func:`on_save`): Keras tells callbacks
  of no save. Lightning and Hugging Face have a hook for saves.

:func:`loaded` then answers True (a load of the model or of a part of it was
seen), False (every weight of the model was made while watching, and no load
was seen) or None: some weight existed before the watch began (the model was
built before the adapter was imported, unpickled by ``torch.load``, or
copied), so a load may have gone unseen. A wrong "False" would have the
advisor tell a fine-tuning user to fine-tune; None makes it say it cannot tell.

Example, with the registry fed by hand (the watchers feed it in a real run):
    >>> class Weight: ...
    >>> class Model:
    ...     def __init__(self): self.weights = [Weight(), Weight()]
    >>> fresh, old = Model(), Model()
    >>> for w in fresh.weights: made(w)
    >>> loaded(fresh, fresh.weights), loaded(old, old.weights)
    (False, None)
    >>> was_loaded(old); loaded(old, old.weights)
    True
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterable
from typing import Any

_LOADED: weakref.WeakSet[Any] = weakref.WeakSet()
"""Models (or parts of one) whose weights a watched load set."""
_MADE: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
"""id -> weight, for each weight made while watching (Keras variables are not hashable)."""
_WATCHING: set[str] = set()
_SAVES: weakref.WeakKeyDictionary[Any, Callable[[], None]] = weakref.WeakKeyDictionary()
"""model -> what to call when it is saved (a checkpoint of the run metering it)."""


def made(weight: Any) -> None:
    """Remember ``weight`` as made while watching."""
    _MADE[id(weight)] = weight


def was_loaded(model: Any) -> None:
    """Remember that a load set ``model``'s weights (one not weakly referable is not)."""
    with contextlib.suppress(TypeError):
        _LOADED.add(model)


def loaded(model: Any, weights: Iterable[Any], parts: Iterable[Any] = ()) -> bool | None:
    """True if a load of ``model`` or one of its ``parts`` was seen; False if each of its
    ``weights`` was made while watching and none was; None if that cannot be known."""
    if model in _LOADED or any(part in _LOADED for part in parts):
        return True
    weights = list(weights)
    if weights and all(_MADE.get(id(w)) is w for w in weights):
        return False
    return None


PRETRAINED_LIBRARIES = ("torchvision.models", "transformers.models", "timm.models")
"""Modules whose model classes are architectures with published pre-trained weights."""


def architecture(model: Any, parts: Iterable[Any] = ()) -> str:
    """The architecture's name: the first of ``model`` and its ``parts`` whose class a library
    of pre-trained models defines (its Hugging Face ``model_type``, else its class name:
    ``ResNet`` for a LightningModule holding a torchvision ResNet); else ``model``'s class
    name."""
    for candidate in (model, *parts):
        if type(candidate).__module__.startswith(PRETRAINED_LIBRARIES):
            kind = getattr(getattr(candidate, "config", None), "model_type", None)
            return str(kind) if kind else type(candidate).__name__
    return type(model).__name__


def on_save(model: Any, listener: Callable[[], None] | None) -> None:
    """Call ``listener`` each time ``model`` is saved (None: no longer)."""
    if listener is None:
        _SAVES.pop(model, None)
    else:
        _SAVES[model] = listener


def saves_watched(model: Any) -> bool:
    """Whether saving ``model`` is seen (its framework's saves are watched)."""
    return all(
        hasattr(getattr(type(model), name, None), "__green_callbacks_original__")
        for name in ("save", "save_weights")
    )


def _saved(result: Any, model: Any, *rest: Any) -> None:
    listener = _SAVES.get(model)
    if listener is not None:
        listener()


def _then(original: Callable[..., Any], after: Callable[..., None]) -> Callable[..., Any]:
    """``original``, then ``after(result, *args)``; the wrapper knows its original."""

    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        after(result, *args)
        return result

    call.__green_callbacks_original__ = original  # type: ignore[attr-defined]
    return call


def watch_torch() -> None:
    """Watch torch's loads and parameters from now on (idempotent)."""
    if "torch" in _WATCHING:
        return
    _WATCHING.add("torch")
    import torch

    module = torch.nn.Module
    module.load_state_dict = _then(  # type: ignore[method-assign]
        module.load_state_dict, lambda result, self, *rest: was_loaded(self)
    )
    torch.nn.modules.module.register_module_parameter_registration_hook(
        lambda owner, name, param: made(param) if param is not None else None
    )


def watch_keras() -> None:
    """Watch Keras 3's loads and variables from now on (idempotent)."""
    if "keras" in _WATCHING:
        return
    _WATCHING.add("keras")
    import keras

    keras.Model.load_weights = _then(
        keras.Model.load_weights, lambda result, self, *rest: was_loaded(self)
    )
    for name in ("save", "save_weights"):  # ModelCheckpoint, BackupAndRestore and the user's
        setattr(keras.Model, name, _then(getattr(keras.Model, name), _saved))
    load_model = _then(keras.saving.load_model, lambda result, *rest: was_loaded(result))
    keras.saving.load_model = keras.models.load_model = load_model
    variable = keras.Variable
    variable.__init__ = _then(variable.__init__, lambda result, self, *rest: made(self))
