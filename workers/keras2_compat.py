"""Keras 2 model configs made to build in tf_keras exactly as the Keras that wrote them did.

tf_keras is Keras 2, but the latest of it: where an older Keras wrote a config, three things
can differ, and each is fixed here on the config (never on code) before any loader sees it:

- **Defaults that changed.** A config key that the writer's Keras did not serialize (the
  argument did not exist yet) takes tf_keras's default, which is not always what the writer
  computed. ``STANDALONE_KERAS2_DEFAULTS`` records, per layer argument, the default of each
  standalone Keras 2.x release (2.0.0-2.3.1, read from the releases' own ``__init__``
  signatures and ``get_config``); a missing key gets the writer's default.
- **GPU-only layers.** ``CuDNNLSTM`` / ``CuDNNGRU`` become the ``LSTM`` /
  ``GRU(reset_after=True)`` they are equal to (tf_keras's weight loading converts the cuDNN
  weight layout, as Keras 2's did).
- **State.** Stateful RNNs become stateless with an open batch size: a scoring service scores
  rows independently, each from a zero state (what a stateful model gives on its first batch
  after loading).

tf.keras writers (``keras_version`` ending in ``-tf``, or 2.4 and later) serialize every one
of these arguments, and their defaults are tf_keras's own, so only the last two apply to them.

- **Configs a Keras wrote wrongly.** Where a Keras release saved a layer argument in a form its
  own constructor refuses (``KERAS_CONFIG_BUGS``, each with its issue), the argument is
  rewritten to the value the writer meant when that value is certain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Version = tuple[int, int, int]


@dataclass(frozen=True)
class DefaultHistory:
    """The default of ``argument`` on ``layer_classes`` across standalone Keras 2.x releases.

    ``defaults`` lists ``(first release, default)`` in release order; a release takes the
    last entry at or before it. An argument a release did not have yet is listed with the
    value that reproduces what that release computed.
    """

    layer_classes: frozenset[str]
    argument: str
    defaults: tuple[tuple[Version, Any], ...]

    def default_for(self, version: Version) -> Any:
        """The default of the release ``version`` (the oldest entry for older releases)."""
        value = self.defaults[0][1]
        for since, default in self.defaults:
            if version >= since:
                value = default
        return value


STANDALONE_KERAS2_DEFAULTS: tuple[DefaultHistory, ...] = (
    # reset_after arrived in 2.1.5 with default False; every GRU before it computed the
    # reset_after=False formula. tf_keras defaults to True and refuses the older weights.
    DefaultHistory(frozenset({"GRU", "GRUCell"}), "reset_after", (((2, 0, 0), False),)),
    # Keras 2.3.0: "Change default recurrent activation to sigmoid (from hard_sigmoid) in all
    # RNN layers". tf_keras's default is sigmoid.
    DefaultHistory(
        frozenset({"LSTM", "LSTMCell", "GRU", "GRUCell"}),
        "recurrent_activation",
        (((2, 0, 0), "hard_sigmoid"), ((2, 3, 0), "sigmoid")),
    ),
    # Flatten gained data_format in 2.1.6; before, it flattened in storage order (what
    # channels_last does). tf_keras's None would follow the worker's own keras.json.
    DefaultHistory(frozenset({"Flatten"}), "data_format", (((2, 0, 0), "channels_last"),)),
)

_BY_CLASS: dict[str, list[DefaultHistory]] = {}
for _history in STANDALONE_KERAS2_DEFAULTS:
    for _class_name in _history.layer_classes:
        _BY_CLASS.setdefault(_class_name, []).append(_history)

# Settings a CuDNN layer had built in; the CPU layer must be told them explicitly, because
# its own defaults differ (e.g. GRU's reset_after before Keras 2.3, recurrent_activation).
_CUDNN_AS_CPU: dict[str, tuple[str, dict[str, Any]]] = {
    "CuDNNLSTM": (
        "LSTM",
        {
            "activation": "tanh",
            "recurrent_activation": "sigmoid",
            "use_bias": True,
            "dropout": 0.0,
            "recurrent_dropout": 0.0,
            "unroll": False,
        },
    ),
    "CuDNNGRU": (
        "GRU",
        {
            "activation": "tanh",
            "recurrent_activation": "sigmoid",
            "use_bias": True,
            "reset_after": True,
            "dropout": 0.0,
            "recurrent_dropout": 0.0,
            "unroll": False,
        },
    ),
}


def _ndarray_scalar(value: Any) -> Any:
    """``{"type": "ndarray", "value": 6.0}`` (a 0-d numpy array as Keras's h5 JSON encoder
    wrote it) as the number it holds; anything else unchanged."""
    if (
        isinstance(value, dict)
        and set(value) == {"type", "value"}
        and value["type"] == "ndarray"
        and isinstance(value["value"], int | float)
        and not isinstance(value["value"], bool)
    ):
        return float(value["value"])
    return value


#: Layer arguments some Keras release saved in a form its own constructor refused on load,
#: by class: argument -> the function that restores what the writer meant.
KERAS_CONFIG_BUGS: dict[str, dict[str, Any]] = {
    # tf.keras 1.11-1.12 ("2.1.6-tf"): ReLU kept max_value, negative_slope and threshold as
    # K.cast_to_floatx() 0-d arrays and saved them as {"type": "ndarray", "value": x}; its
    # __init__ then failed comparing a dict with a float ("'<' not supported between
    # instances of 'dict' and 'float'"). The value inside is exactly the float it meant.
    # https://github.com/tensorflow/tensorflow/issues/22697 (fix: PR #22073)
    "ReLU": {
        "max_value": _ndarray_scalar,
        "negative_slope": _ndarray_scalar,
        "threshold": _ndarray_scalar,
    },
}

_STANDALONE = re.compile(r"^2\.(\d+)\.(\d+)$")


def standalone_keras2_version(keras_version: str | None) -> Version | None:
    """The release of standalone Keras 2.0-2.3 that wrote a file, or None for other writers.

    ``keras_version`` is the file's root attribute: "2.1.2" for standalone Keras; tf.keras
    wrote "2.2.4-tf" and the like, and 2.4 onwards is tf.keras only. A file without the
    attribute predates it (Keras 1 and the earliest Keras 2 files): taken as 2.0.0.
    """
    if keras_version is None:
        return (2, 0, 0)
    match = _STANDALONE.match(keras_version.strip())
    if match is None:
        return None
    minor, patch = int(match.group(1)), int(match.group(2))
    return (2, minor, patch) if minor <= 3 else None


def normalize_keras2_config(config: Any, keras_version: str | None) -> Any:
    """A Keras 2 model config that tf_keras builds as its writer did, on CPU, any batch size.

    ``config`` is the ``model_config`` JSON (a dict, or a bare list of layers from Keras
    2.0's Sequential); ``keras_version`` the file's root attribute. Returns a new config (the
    input is not changed): missing arguments filled with the writer's defaults (see
    ``STANDALONE_KERAS2_DEFAULTS``), GPU-only RNNs swapped for their CPU twins, stateful RNNs
    made stateless, and arguments that known Keras bugs saved wrongly restored
    (``KERAS_CONFIG_BUGS``).
    """
    return _normalize(config, standalone_keras2_version(keras_version))


def _normalize(config: Any, writer: Version | None) -> Any:
    if isinstance(config, list):
        return [_normalize(item, writer) for item in config]
    if not isinstance(config, dict):
        return config
    out = {key: _normalize(value, writer) for key, value in config.items()}
    if out.get("stateful") is True:
        out["stateful"] = False
    shape = out.get("batch_input_shape")
    if isinstance(shape, list) and shape and shape[0] is not None:
        out["batch_input_shape"] = [None, *shape[1:]]
    class_name = str(out.get("class_name"))
    if class_name == "Sequential":
        _input_shape_from_wrapped_layer(out)
    layer_config = out.get("config")
    if not isinstance(layer_config, dict):
        return out
    if writer is not None:
        missing = {
            history.argument: history.default_for(writer)
            for history in _BY_CLASS.get(class_name, ())
            if history.argument not in layer_config
        }
        if missing:
            out["config"] = layer_config = {**layer_config, **missing}
    repairs = KERAS_CONFIG_BUGS.get(class_name)
    if repairs:
        out["config"] = layer_config = {
            key: repairs[key](value) if key in repairs else value
            for key, value in layer_config.items()
        }
    swap = _CUDNN_AS_CPU.get(class_name)
    if swap is not None:
        cpu_class, settings = swap
        out["class_name"] = cpu_class
        out["config"] = {**layer_config, **settings}
    return out


def _input_shape_from_wrapped_layer(sequential: dict[str, Any]) -> None:
    """Give a Sequential's first ``Bidirectional`` the input shape its wrapped RNN declares.

    ``Sequential([Bidirectional(LSTM(n, input_shape=(t, f))), ...])`` saves the shape inside
    the wrapped layer's config only, so Keras 2.2.0 built the reloaded model without layers
    and refused its weights ("You are trying to load a weight file containing 3 layers into a
    model with 0 layers"); tf_keras still does. The RNN's input is the wrapper's input, so the
    shape moves to the wrapper, where Keras reads it.
    https://github.com/keras-team/keras/issues/10626
    """
    config = sequential.get("config")
    layers = config if isinstance(config, list) else (config or {}).get("layers")
    if not isinstance(layers, list) or not layers or not isinstance(layers[0], dict):
        return
    first = layers[0]
    first_config = first.get("config")
    if first.get("class_name") != "Bidirectional" or not isinstance(first_config, dict):
        return
    wrapped = first_config.get("layer")
    wrapped_config = wrapped.get("config") if isinstance(wrapped, dict) else None
    if "batch_input_shape" in first_config or not isinstance(wrapped_config, dict):
        return
    shape = wrapped_config.get("batch_input_shape")
    if isinstance(shape, list):
        first["config"] = {**first_config, "batch_input_shape": [None, *shape[1:]]}
