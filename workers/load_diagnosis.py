"""Why a model file did not load, in words its owner can act on.

When a loader refuses a file, its exception rarely says which layer it choked on. This module
builds the file's layers one at a time from the (already safety-checked) config with the same
Keras that failed, to name the first layer, its class and the argument that does not fit, and
says what the owner can do with the file they hold: re-save it with a Keras that kscore reads
exactly, naming the versions on both ends.

Runs in workers only (it imports keras / tf_keras, lazily), after the safety check: building a
layer from a checked config runs no user code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from shared.errors import UnsupportedModelFile

Loader = Literal["keras", "tf_keras"]

# Configs that hold other layers; their children are built and named on their own.
_CONTAINERS = {"Sequential", "Functional", "Model"}
_CHILD_KEYS = ("layers", "layer", "cell", "cells", "backward_layer")
_ARGUMENT = re.compile(
    r"(?:argument(?:s)? not understood|unexpected keyword argument|Unrecognized keyword "
    r"arguments?(?: passed to \w+)?)\W*\{?'(\w+)'",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class LayerProblem:
    """The first layer of a config that its Keras cannot build, and why."""

    name: str
    class_name: str
    argument: str | None
    reason: str


def iter_layer_entries(config: Any) -> Iterator[dict[str, Any]]:
    """Every layer entry (``{"class_name", "config"}``) of a model config, innermost first.

    ``config`` is a ``model_config`` document, or Keras 2.0's bare list of layers. Children
    (a Sequential's layers, a Bidirectional's layer, an RNN's cell) come before their parent,
    so the most specific layer is named when a wrapper fails because of what it wraps.
    """
    if isinstance(config, list):
        for item in config:
            yield from iter_layer_entries(item)
        return
    if not isinstance(config, dict):
        return
    inner = config.get("config")
    if isinstance(inner, list):  # Keras 2.0 Sequential: "config" is the list of layers
        yield from iter_layer_entries(inner)
    elif isinstance(inner, dict):
        for key in _CHILD_KEYS:
            child = inner.get(key)
            if isinstance(child, dict | list):
                yield from iter_layer_entries(child)
    if isinstance(config.get("class_name"), str) and isinstance(inner, dict):
        yield config


def argument_in(message: str) -> str | None:
    """The keyword argument a Keras error message complains about, if it names one."""
    match = _ARGUMENT.search(message)
    return match.group(1) if match else None


def find_layer_problem(config: Any, loader: Loader) -> LayerProblem | None:
    """Build each layer of ``config`` alone with ``loader``'s Keras; the first that fails.

    Returns None when every layer builds on its own (the problem is then in the weights or in
    how the layers connect).
    """
    deserialize = _deserializer(loader)
    for entry in iter_layer_entries(config):
        if entry["class_name"] in _CONTAINERS:
            continue
        try:
            deserialize(entry)
        except Exception as exc:  # any refusal names this layer; the reason says which
            reason = _reason(exc)
            return LayerProblem(
                name=str(entry["config"].get("name") or "?"),
                class_name=entry["class_name"],
                argument=argument_in(reason),
                reason=reason if len(reason) <= 240 else reason[:237] + "...",
            )
    return None


def _reason(exc: BaseException) -> str:
    """The complaint itself: Keras wraps it in "Error when deserializing class ... using
    config={...}. Exception encountered: <complaint>", and the config is noise here."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    _, found, complaint = text.rpartition("Exception encountered:")
    return complaint.strip() if found and complaint.strip() else text


def _deserializer(loader: Loader) -> Any:
    if loader == "keras":
        import keras

        return keras.layers.deserialize
    import tf_keras

    return tf_keras.layers.deserialize


def installed_version(loader: Loader) -> str:
    """The version of the Keras that ``loader`` names, as installed in this worker."""
    if loader == "keras":
        import keras

        return str(keras.__version__)
    import tf_keras

    return str(tf_keras.__version__)


def advice(loader: Loader, keras_version: str | None) -> str:
    """What the owner of a file that did not load can do, with the versions on both ends."""
    writer = f"Keras {keras_version}" if keras_version else "the Keras that wrote it"
    if loader == "keras":
        return (
            f"Load the file with {writer} and save it again with Keras "
            f"{installed_version('keras')} (model.save('model.keras')), then upload that file."
        )
    return (
        f"Load the file with {writer} and save its weights (model.save_weights('weights.h5')); "
        f"rebuild the same layers with tf_keras {installed_version('tf_keras')}, load the "
        "weights and save the model (model.save('model.h5')); upload that file."
    )


def load_failure(
    filename: str,
    loader: Loader,
    keras_version: str | None,
    config: Any,
    error: str,
) -> UnsupportedModelFile:
    """The refusal for a file ``loader`` could not load: writer, layer, argument, advice.

    ``error`` is the loader's complaint as one line; ``config`` the checked model config.
    """
    writer = f"Keras {keras_version}" if keras_version else "an unknown Keras version"
    reader = "Keras" if loader == "keras" else "tf_keras (Keras 2)"
    problem = find_layer_problem(config, loader)
    details: dict[str, Any] = {"loader": loader, "keras_version": keras_version}
    if problem is None:
        what = f"{error}."
    else:
        details.update(
            layer=problem.name, layer_class=problem.class_name, argument=problem.argument
        )
        argument = f" (argument {problem.argument!r})" if problem.argument else ""
        what = (
            f"layer {problem.name!r} ({problem.class_name}){argument} cannot be built: "
            f"{problem.reason}."
        )
    return UnsupportedModelFile(
        f"{filename}, written by {writer}, could not be loaded by {reader} "
        f"{installed_version(loader)}: {what} {advice(loader, keras_version)}",
        details=details,
    )
