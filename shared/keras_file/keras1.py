"""Keras 1 model configs rewritten as the Keras 2 configs Keras 2.0 itself built from them.

Keras 2.0 read Keras 1 files through its legacy interfaces (``keras/legacy/interfaces.py`` at
tag 2.0.0): each layer's constructor renamed the Keras 1 arguments (``output_dim`` ->
``units``, ``border_mode`` -> ``padding``, ``dim_ordering`` "tf" -> ``data_format``
"channels_last"...), and ``keras/engine/topology.py`` converted the weights
(``preprocess_weights_for_loading``: LSTM/GRU gates stored as separate arrays, Theano-ordered
kernels). tf_keras still converts the weights when a file's weights carry no
``keras_version`` (what Keras 1.x wrote), but its constructors no longer take the Keras 1
names, so the config is rewritten here, once, as plain data: the API checks and describes the
rewritten config at upload, and the worker builds it.

Only what is certain is rewritten, layer by layer and argument by argument; anything else
refuses the file at upload (``UnsupportedModelFile``, naming the layer and the argument) with
the way out: load it with Keras 1.2.2 or 2.0.x and save it again. Arguments that only matter
while training (initializers, regularizers, constraints, dropout on inputs of an Embedding)
are dropped: predictions do not depend on them. Refused on purpose:

- convolutions with ``dim_ordering`` "th": Keras 1 files do not record their backend, and
  Theano-ordered kernels were nearly always trained with Theano, whose convolution flips the
  kernel (a Keras 2 file records its backend, and kscore flips Theano kernels back). A
  "tf"-ordered convolution is read as TensorFlow trained it, which is what Keras 2.0 did with
  a file that names no backend (no kernel flip). Pooling has no kernel: "th" pooling becomes
  "channels_first". Any "default" ordering is refused (it followed the writer's keras.json);
- ``border_mode`` "full" (Theano only), ``Merge`` modes other than sum/mul/ave/max/concat and
  ``Merge`` of whole models, ``BatchNormalization`` modes 1 and 2 (Keras 2.0 refused them too),
  and every Keras 1 layer class without a Keras 2 twin (``Highway``, ``MaxoutDense``,
  ``TimeDistributedDense``, ``AtrousConvolution2D``...).

Runs in the API process: json-shaped data in, json-shaped data out, no Keras imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.errors import UnsupportedModelFile
from shared.keras_file.safety import BUILTIN_LAYER_CLASSES

Config = dict[str, Any]

# Arguments that only shape training: no prediction depends on them (weights are loaded).
_TRAINING_ONLY = frozenset(
    {
        "init", "inner_init", "forget_bias_init", "beta_init", "gamma_init",
        "W_regularizer", "b_regularizer", "U_regularizer", "activity_regularizer",
        "gamma_regularizer", "beta_regularizer", "W_constraint", "b_constraint",
        "U_constraint", "dropout_W", "dropout_U", "consume_less",
    }
)  # fmt: skip

# Every Keras 1 layer's base arguments (``Layer.get_config`` in Keras 1.2.2).
_BASE = frozenset({"name", "trainable", "batch_input_shape", "input_dtype"})

# dim_ordering as Keras 2.0's value_conversions mapped it ("default" is refused).
_DATA_FORMAT = {"tf": "channels_last", "th": "channels_first"}

_PADDING = frozenset({"valid", "same"})

# Keras 1 layer classes that Keras 2 dropped: refused as Keras 1, not as foreign classes.
_KERAS1_ONLY = frozenset(
    {
        "Highway", "MaxoutDense", "TimeDistributedDense", "AtrousConvolution1D",
        "AtrousConvolution2D", "Deconvolution2D", "SReLU", "ParametricSoftplus",
    }
)  # fmt: skip


class _ArgumentRefused(Exception):
    """A Keras 1 layer argument that has no certain Keras 2 equivalent."""

    def __init__(self, argument: str | None, reason: str) -> None:
        super().__init__(reason)
        self.argument = argument
        self.reason = reason


def is_keras1(keras_version: str | None) -> bool:
    """Whether a file's ``keras_version`` attribute names a Keras 1.x release."""
    return bool(keras_version) and str(keras_version).strip().split(".", 1)[0] == "1"


def convert_keras1_config(config: Any, filename: str, keras_version: str | None) -> Any:
    """The Keras 2 config Keras 2.0 built from a Keras 1 ``model_config``.

    Raises UnsupportedModelFile (400) naming the first layer and argument that does not convert.
    """
    try:
        return _convert_entry(config)
    except _LayerRefused as refused:
        argument = f" (argument {refused.argument!r})" if refused.argument else ""
        raise UnsupportedModelFile(
            f"{filename} was written by Keras {keras_version} (Keras 1), and its layer "
            f"{refused.name!r} ({refused.class_name}){argument} has no certain Keras 2 "
            f"equivalent: {refused.reason}. Load the file with Keras 2.0.x, which reads "
            "Keras 1 files (on the backend that trained the model), save it again with "
            "model.save('model.h5') and upload that file; a layer Keras 2 no longer has must "
            "be replaced first.",
            details={
                "filename": filename,
                "keras_version": keras_version,
                "layer": refused.name,
                "layer_class": refused.class_name,
                "argument": refused.argument,
            },
        ) from None


class _LayerRefused(Exception):
    def __init__(self, name: str, class_name: str, argument: str | None, reason: str) -> None:
        super().__init__(reason)
        self.name = name
        self.class_name = class_name
        self.argument = argument
        self.reason = reason


def _convert_entry(entry: Any) -> Any:
    """One ``{"class_name", "config", ...}`` entry (a model or a layer), or a bare layer list."""
    if isinstance(entry, list):  # Keras 1 Sequential: "config" is the list of layers
        return [_convert_entry(item) for item in entry]
    if not isinstance(entry, dict):
        return entry
    class_name = entry.get("class_name")
    config = entry.get("config")
    if class_name == "Sequential":
        if isinstance(config, dict) and isinstance(config.get("layers"), list):
            return {**entry, "config": {**config, "layers": _sequential_layers(config["layers"])}}
        if isinstance(config, list):
            return {**entry, "config": _sequential_layers(config)}
        return entry
    if class_name == "Model" and isinstance(config, dict):
        layers = config.get("layers")
        converted = (
            [_convert_entry(layer) for layer in layers] if isinstance(layers, list) else layers
        )
        return {**entry, "config": {**config, "layers": converted}}
    if not isinstance(class_name, str) or not isinstance(config, dict):
        return entry
    rule = _RULES.get(class_name)
    if rule is None:
        if class_name not in BUILTIN_LAYER_CLASSES and class_name not in _KERAS1_ONLY:
            # Lambda and classes that are no Keras layer: the safety check refuses them
            # with its own reason, which matters more than the Keras version.
            return entry
        raise _LayerRefused(
            str(config.get("name") or entry.get("name") or "?"),
            class_name,
            None,
            "Keras 2 has no such layer"
            if class_name in _KERAS1_ONLY
            else "kscore has no proven conversion of this Keras 1 layer",
        )
    try:
        new_class, new_config = rule(dict(config))
    except _ArgumentRefused as refusal:
        raise _LayerRefused(
            str(config.get("name") or "?"), class_name, refusal.argument, refusal.reason
        ) from None
    return {**entry, "class_name": new_class, "config": new_config}


def _sequential_layers(layers: list[Any]) -> list[Any]:
    """A Sequential's layers, its input made an explicit ``InputLayer``.

    Keras 1 put the input's dtype on the first layer (``input_dtype``, "int32" before an
    Embedding) and built the input from it, while the layer's own weights stayed float32.
    A Keras 2 ``dtype`` on a layer is the dtype of its weights, so the input goes into an
    ``InputLayer`` of its own, named as Keras names the one it builds (``<layer>_input``).
    """
    converted = [_convert_entry(layer) for layer in layers]
    first = converted[0] if converted else None
    if not isinstance(first, dict) or first.get("class_name") == "InputLayer":
        return converted
    first_config = first.get("config")
    original = layers[0].get("config") if isinstance(layers[0], dict) else None
    if not isinstance(first_config, dict) or "batch_input_shape" not in first_config:
        return converted
    first_config = dict(first_config)
    shape = first_config.pop("batch_input_shape")
    input_dtype = original.get("input_dtype") if isinstance(original, dict) else None
    input_layer = {
        "class_name": "InputLayer",
        "config": {
            "batch_input_shape": shape,
            "dtype": input_dtype or "float32",
            "sparse": False,
            "name": f"{first_config.get('name', 'input')}_input",
        },
    }
    return [input_layer, {**first, "config": first_config}, *converted[1:]]


# --- the rules: one per Keras 1 class, each a (class, config) -> (class, config) ---------------


def _take(
    config: Config,
    renames: dict[str, str] | None = None,
    keep: frozenset[str] = frozenset(),
) -> Config:
    """The Keras 2 config of the base arguments, ``renames`` and ``keep``; refuses the rest."""
    renames = renames or {}
    out: Config = {}
    for key, value in config.items():
        if key in _TRAINING_ONLY:
            continue
        if key == "input_dtype":
            # The dtype of the input Keras 1 built for this layer, not of its weights: kept
            # by an InputLayer (see _sequential_layers); Keras 2.0 read it the same way
            # (https://github.com/keras-team/keras/pull/6248).
            continue
        elif key in _BASE or key in keep:
            out[key] = value
        elif key in renames:
            out[renames[key]] = value
        else:
            raise _ArgumentRefused(key, f"Keras 1 argument {key!r} is not one kscore converts")
    return out


def _input_dim(out: Config, *, length: bool = False) -> None:
    """Keras 1's ``input_dim`` (and ``input_length``) as the Keras 2 ``batch_input_shape``."""
    input_dim = out.pop("input_dim", None)
    input_length = out.pop("input_length", None) if length else None
    if input_dim is not None and "batch_input_shape" not in out:
        out["batch_input_shape"] = [None, input_length, input_dim] if length else [None, input_dim]


def _use_bias(out: Config) -> None:
    if "bias" in out:
        out["use_bias"] = bool(out.pop("bias"))


def _data_format(out: Config, *, kernel: bool = False) -> None:
    ordering = out.pop("dim_ordering", "tf")
    if kernel and ordering == "th":
        raise _ArgumentRefused(
            "dim_ordering",
            "dim_ordering 'th': Theano-ordered kernels were most likely trained with Theano, "
            "which flips convolution kernels, and the file does not record its backend",
        )
    if ordering not in _DATA_FORMAT:
        raise _ArgumentRefused(
            "dim_ordering",
            f"dim_ordering {ordering!r} followed the writer's keras.json, which the file "
            "does not record",
        )
    out["data_format"] = _DATA_FORMAT[ordering]


def _padding(out: Config) -> None:
    mode = out.pop("border_mode", "valid")
    if mode not in _PADDING:
        raise _ArgumentRefused("border_mode", f"border_mode {mode!r} has no Keras 2 padding")
    out["padding"] = mode


def _dense(config: Config) -> tuple[str, Config]:
    out = _take(config, {"output_dim": "units"}, frozenset({"activation", "bias", "input_dim"}))
    _use_bias(out)
    _input_dim(out)
    return "Dense", out


def _activation(config: Config) -> tuple[str, Config]:
    return "Activation", _take(config, keep=frozenset({"activation"}))


def _dropout(name: str) -> Callable[[Config], tuple[str, Config]]:
    def rule(config: Config) -> tuple[str, Config]:
        return name, _take(config, {"p": "rate"})

    return rule


def _same(name: str, keep: frozenset[str] = frozenset()) -> Callable[[Config], tuple[str, Config]]:
    def rule(config: Config) -> tuple[str, Config]:
        return name, _take(config, keep=keep)

    return rule


def _flatten(config: Config) -> tuple[str, Config]:
    out = _take(config)
    out["data_format"] = "channels_last"  # Keras 1 flattened in storage order
    return "Flatten", out


def _embedding(config: Config) -> tuple[str, Config]:
    config = {k: v for k, v in config.items() if k != "dropout"}  # training only
    out = _take(config, keep=frozenset({"input_dim", "output_dim", "input_length", "mask_zero"}))
    return "Embedding", out


def _recurrent(name: str) -> Callable[[Config], tuple[str, Config]]:
    def rule(config: Config) -> tuple[str, Config]:
        keep = frozenset(
            {
                "activation", "return_sequences", "go_backwards", "stateful", "unroll",
                "input_dim", "input_length",
            }
        )  # fmt: skip
        renames = {"output_dim": "units"}
        if name != "SimpleRNN":
            renames["inner_activation"] = "recurrent_activation"
        out = _take(config, renames, keep)
        _input_dim(out, length=True)
        out["use_bias"] = True
        if name == "GRU":
            out["reset_after"] = False  # the only GRU Keras 1 had
        if name == "LSTM":
            out["unit_forget_bias"] = False  # an initializer only; weights are loaded
        return name, out

    return rule


def _conv1d(config: Config) -> tuple[str, Config]:
    out = _take(
        config,
        {"nb_filter": "filters"},
        frozenset(
            {"filter_length", "subsample_length", "border_mode", "activation", "bias",
             "input_dim", "input_length"}
        ),
    )  # fmt: skip
    out["kernel_size"] = [out.pop("filter_length")]
    out["strides"] = [out.pop("subsample_length", 1)]
    _padding(out)
    _use_bias(out)
    _input_dim(out, length=True)
    return "Conv1D", out


def _conv2d(config: Config) -> tuple[str, Config]:
    out = _take(
        config,
        {"nb_filter": "filters", "subsample": "strides"},
        frozenset({"nb_row", "nb_col", "border_mode", "dim_ordering", "activation", "bias"}),
    )
    out["kernel_size"] = [out.pop("nb_row"), out.pop("nb_col")]
    _padding(out)
    _data_format(out, kernel=True)
    _use_bias(out)
    return "Conv2D", out


def _pooling1d(name: str) -> Callable[[Config], tuple[str, Config]]:
    def rule(config: Config) -> tuple[str, Config]:
        out = _take(
            config, {"pool_length": "pool_size", "stride": "strides"}, frozenset({"border_mode"})
        )
        _padding(out)
        return name, out

    return rule


def _pooling2d(name: str) -> Callable[[Config], tuple[str, Config]]:
    def rule(config: Config) -> tuple[str, Config]:
        out = _take(config, keep=frozenset({"pool_size", "strides", "border_mode", "dim_ordering"}))
        _padding(out)
        _data_format(out)
        return name, out

    return rule


def _global_pooling2d(name: str) -> Callable[[Config], tuple[str, Config]]:
    def rule(config: Config) -> tuple[str, Config]:
        out = _take(config, keep=frozenset({"dim_ordering"}))
        _data_format(out)
        return name, out

    return rule


def _zero_padding2d(config: Config) -> tuple[str, Config]:
    if "dim_ordering" not in config:
        # Keras 1.2 saved only the padding: which axes it padded followed the writer's own
        # keras.json, which the file does not record.
        raise _ArgumentRefused(
            "dim_ordering",
            "Keras 1.2 did not save which axes ZeroPadding2D padded (its dim_ordering)",
        )
    out = _take(config, keep=frozenset({"padding", "dim_ordering"}))
    _data_format(out)
    padding = out.get("padding")
    if isinstance(padding, dict):  # Keras 1.2's {"top_pad": ..., ...}, as Keras 2.0 read it
        padding = [
            padding.get("top_pad", 0), padding.get("bottom_pad", 0),
            padding.get("left_pad", 0), padding.get("right_pad", 0),
        ]  # fmt: skip
    if isinstance(padding, list) and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        out["padding"] = [[padding[0], padding[0]], [padding[1], padding[1]]]
    elif isinstance(padding, list) and len(padding) == 4:
        out["padding"] = [[padding[0], padding[1]], [padding[2], padding[3]]]
    else:
        raise _ArgumentRefused("padding", f"padding {padding!r} is not one Keras 1.2 wrote")
    return "ZeroPadding2D", out


def _batch_normalization(config: Config) -> tuple[str, Config]:
    out = _take(config, keep=frozenset({"epsilon", "mode", "axis", "momentum"}))
    if out.pop("mode", 0) != 0:
        raise _ArgumentRefused("mode", "BatchNormalization modes 1 and 2 no longer exist")
    return "BatchNormalization", out


_MERGE_MODES = {
    "sum": "Add",
    "mul": "Multiply",
    "ave": "Average",
    "max": "Maximum",
    "concat": "Concatenate",
}


def _merge(config: Config) -> tuple[str, Config]:
    if config.get("layers"):
        raise _ArgumentRefused("layers", "a Merge of whole models has no Keras 2 layer")
    mode = config.get("mode")
    if config.get("mode_type", "raw") != "raw" or mode not in _MERGE_MODES:
        raise _ArgumentRefused("mode", f"Merge mode {mode!r} is not sum, mul, ave, max or concat")
    for key in ("output_shape", "output_mask", "arguments"):
        if config.get(key):
            raise _ArgumentRefused(key, f"Merge with {key} set")
    out = _take(
        {k: v for k, v in config.items() if k not in _MERGE_ONLY},
        keep=frozenset({"concat_axis"}),
    )
    axis = out.pop("concat_axis", -1)
    if mode == "concat":
        out["axis"] = axis
    return _MERGE_MODES[mode], out


_MERGE_ONLY = frozenset(
    {"mode", "mode_type", "dot_axes", "output_shape", "output_shape_type", "output_mask",
     "output_mask_type", "arguments", "layers"}
)  # fmt: skip


def _input_layer(config: Config) -> tuple[str, Config]:
    out = _take(config, keep=frozenset({"sparse"}))
    out["dtype"] = config.get("input_dtype") or "float32"
    if out.get("sparse"):
        raise _ArgumentRefused("sparse", "sparse inputs cannot be scored from JSON rows")
    return "InputLayer", out


_RULES: dict[str, Callable[[Config], tuple[str, Config]]] = {
    "InputLayer": _input_layer,
    "Dense": _dense,
    "Activation": _activation,
    "Dropout": _dropout("Dropout"),
    "SpatialDropout1D": _dropout("SpatialDropout1D"),
    "GaussianDropout": _dropout("GaussianDropout"),
    "Flatten": _flatten,
    "Reshape": _same("Reshape", frozenset({"target_shape"})),
    "Permute": _same("Permute", frozenset({"dims"})),
    "RepeatVector": _same("RepeatVector", frozenset({"n"})),
    "Masking": _same("Masking", frozenset({"mask_value"})),
    "Embedding": _embedding,
    "SimpleRNN": _recurrent("SimpleRNN"),
    "GRU": _recurrent("GRU"),
    "LSTM": _recurrent("LSTM"),
    "Convolution1D": _conv1d,
    "Convolution2D": _conv2d,
    "MaxPooling1D": _pooling1d("MaxPooling1D"),
    "AveragePooling1D": _pooling1d("AveragePooling1D"),
    "MaxPooling2D": _pooling2d("MaxPooling2D"),
    "AveragePooling2D": _pooling2d("AveragePooling2D"),
    "GlobalMaxPooling1D": _same("GlobalMaxPooling1D"),
    "GlobalAveragePooling1D": _same("GlobalAveragePooling1D"),
    "GlobalMaxPooling2D": _global_pooling2d("GlobalMaxPooling2D"),
    "GlobalAveragePooling2D": _global_pooling2d("GlobalAveragePooling2D"),
    "ZeroPadding2D": _zero_padding2d,
    "BatchNormalization": _batch_normalization,
    "Merge": _merge,
}
