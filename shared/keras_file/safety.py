"""The safety check: which model configs kscore refuses to hand to any Keras loader.

A model file is data from a stranger, and loading one can run code: a ``Lambda`` layer carries
Python bytecode, ``TFOpLambda`` & co. call functions named in the file, a custom class imports
a module. Loaders cannot be trusted to refuse these: tf_keras reading an ``.h5`` runs a
Lambda's bytecode even with ``safe_mode=True``. So the config is checked here, as JSON, before
any loader sees the file (in the API at upload and again in the worker before loading).

Refused (``UnsafeModel``, naming each layer and why):

- a layer class not in :data:`BUILTIN_LAYER_CLASSES` (custom layers, ``Package>Name``), or a
  model class not in :data:`MODEL_CLASSES`;
- a layer in :data:`CODE_RUNNING_LAYERS` (Lambda, TFSMLayer...);
- a tensor operation that is not in the allow-list of :mod:`shared.keras_file.operations`:
  a Keras 3 operation class (``keras.src.ops.*``) by its module and class name, a tf_keras
  ``TFOpLambda`` / ``SlicingOpLambda`` by the TensorFlow function it names;
- a user's class named like a built-in one: in ``.keras`` configs its ``module`` or
  ``registered_name`` is not Keras's; in ``.h5`` files the weights stored for the layer are not
  weights the built-in class creates (:data:`builtin_weight_names`, generated data);
- any serialized Python function anywhere in the config: Keras 2 ``func_dump`` bytecode,
  Keras 3 ``__lambda__`` / ``__function__`` objects, ``function_type: "lambda"``;
- any serialized object whose ``module`` or ``registered_name`` points outside Keras;
- an ``activation`` that is not one of :data:`BUILTIN_ACTIVATIONS`.

Outside the architecture (``training_config``, ``compile_config``) only serialized code is
refused: tf_keras itself writes its optimizer as ``Custom>Adam``.

The allow-lists are data below; the walk over the config follows them, with an explicit
stack (no recursion), so a config nested past the caps is refused instead of crashing it.

The caps below bound what a model file may hold before anything parses or loads it: members
of an archive, compression ratios, HDF5 links and declared dataset sizes, the config's size and
nesting. ``container`` and ``archive`` enforce them (at upload and again in the worker);
a file past a cap is refused with ``UnsafeModelFile`` (422 ``unsafe_model_file``), whose
``details["reason"]`` names the rule.
"""

from __future__ import annotations

import binascii
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import UnsafeModel
from shared.keras_file.operations import (
    KERAS3_OPERATIONS,
    REFUSED_TF_PREFIXES,
    TF_OPERATION_LAYERS,
)

#: Model classes a config may name at the top or nested as a layer.
MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})

#: Built-in layer classes of Keras 2.x, tf.keras / tf_keras 2.x and Keras 3, as class names
#: appear in saved configs. Deliberately absent: Lambda, TensorFlowOpLayer, TFSMLayer,
#: TorchModuleWrapper, JaxLayer, FlaxLayer (they run code or load files named in the config),
#: TFOpLambda and SlicingOpLambda (checked by the function they name, see operations.py),
#: DenseFeatures (feature columns), and the abstract bases (Layer, Wrapper, AbstractRNNCell,
#: PreprocessingLayer).
BUILTIN_LAYER_CLASSES = frozenset(
    {
        # core
        "InputLayer", "Dense", "EinsumDense", "Activation", "Embedding", "Masking",
        "Identity", "ReversibleEmbedding",
        # regularization
        "Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "ActivityRegularization",
        "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
        # activations as layers
        "ReLU", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU", "Softmax",
        # convolution
        "Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D",
        "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
        "Convolution1DTranspose", "Convolution2DTranspose", "Convolution3DTranspose",
        "SeparableConv1D", "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D",
        "DepthwiseConv1D", "DepthwiseConv2D", "LocallyConnected1D", "LocallyConnected2D",
        "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
        # pooling
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "MaxPool1D", "MaxPool2D", "MaxPool3D",
        "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
        "AvgPool1D", "AvgPool2D", "AvgPool3D",
        "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
        "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
        "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
        "AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D",
        "AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D",
        # reshaping
        "Flatten", "Reshape", "Permute", "RepeatVector",
        "Cropping1D", "Cropping2D", "Cropping3D",
        "UpSampling1D", "UpSampling2D", "UpSampling3D",
        "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
        # merging
        "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
        # normalization
        "BatchNormalization", "BatchNormalizationV1", "BatchNormalizationV2",
        "SyncBatchNormalization", "LayerNormalization", "GroupNormalization",
        "UnitNormalization", "RMSNormalization", "SpectralNormalization",
        # recurrent (CuDNN* are Keras 2 / TF 1.x GPU-only layers)
        "RNN", "SimpleRNN", "GRU", "LSTM", "SimpleRNNCell", "GRUCell", "LSTMCell",
        "StackedRNNCells", "PeepholeLSTMCell", "Bidirectional", "TimeDistributed",
        "CuDNNGRU", "CuDNNLSTM",
        # attention
        "Attention", "AdditiveAttention", "MultiHeadAttention", "GroupQueryAttention",
        "GroupedQueryAttention",
        # preprocessing
        "TextVectorization", "StringLookup", "IntegerLookup", "Hashing", "HashedCrossing",
        "CategoryEncoding", "CategoryCrossing", "Discretization", "Normalization",
        "Rescaling", "Resizing", "CenterCrop", "Pipeline", "MelSpectrogram",
        "STFTSpectrogram", "DynamicEmbedding", "DynamicLookup", "RandomFourierFeatures",
        # image augmentation (inactive at inference)
        "AugMix", "AutoContrast", "ContrastLimitedAdaptiveHistogramEqualization", "CutMix",
        "Equalization", "MaxNumBoundingBoxes", "MixUp", "RandAugment", "RandomBrightness",
        "RandomColorDegeneration", "RandomColorJitter", "RandomContrast", "RandomCrop",
        "RandomElasticTransform", "RandomErasing", "RandomFlip", "RandomGaussianBlur",
        "RandomGrayscale", "RandomHeight", "RandomHue", "RandomInvert", "RandomPerspective",
        "RandomPosterization", "RandomRotation", "RandomSaturation", "RandomSharpness",
        "RandomShear", "RandomTranslation", "RandomWidth", "RandomZoom", "Solarization",
    }
)  # fmt: skip

#: Built-in layers that are unsafe by design, with why (used in refusal messages).
CODE_RUNNING_LAYERS = {
    "Lambda": "runs Python code stored in the file",
    # TFOpLambda / SlicingOpLambda: admitted when the function they name is allow-listed.
    "TensorFlowOpLayer": "runs a TensorFlow op stored in the file",
    "TFSMLayer": "loads a TensorFlow SavedModel from a path named in the file",
    "TorchModuleWrapper": "unpickles a PyTorch module",
    "JaxLayer": "calls a JAX function",
    "FlaxLayer": "calls a Flax module",
}

#: Activation names built into Keras 2.x, tf_keras and Keras 3.
BUILTIN_ACTIVATIONS = frozenset(
    {
        "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "softmax", "log_softmax",
        "softplus", "softsign", "tanh", "elu", "selu", "celu", "gelu", "glu", "exponential",
        "swish", "silu", "hard_silu", "hard_swish", "mish", "leaky_relu", "log_sigmoid",
        "hard_tanh", "hard_shrink", "soft_shrink", "tanh_shrink", "sparse_plus",
        "sparse_sigmoid", "sparsemax", "squareplus", "threshold",
    }
)  # fmt: skip

# Layer config keys that hold further layers (wrappers, RNN cells, Pipeline).
NESTED_LAYER_KEYS = ("layer", "backward_layer", "cell", "cells", "layers")

# How a collision's reason starts (a user's class with a built-in class's name).
COLLISION = "a custom class named like the built-in"

# What Keras 3 writes as data in a layer's call arguments (``inbound_nodes``); its loader
# deserializes any other object there like a layer (a TFSMLayer would load a SavedModel).
CALL_ARGUMENT_DATA = frozenset(
    {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__"}
)

# Keras 3 writes its operation classes under these modules.
_KERAS3_OPS_MODULE_PREFIXES = ("keras.src.ops.", "keras.ops.")

_BUILTIN_WEIGHTS_FILE = Path(__file__).with_name("builtin_weights.json")


@functools.cache
def builtin_weight_names() -> Mapping[str, frozenset[str]]:
    """Weight names each built-in layer class can create (``kernel``, ``bias``...), by class.

    Read from ``builtin_weights.json``, generated from keras and tf_keras by
    ``tests/builtin_weights.py``; a class not listed there is not checked.
    """
    data = json.loads(_BUILTIN_WEIGHTS_FILE.read_text())
    return {name: frozenset(names) for name, names in data["weights"].items()}


@dataclass
class _Finding:
    name: str
    class_name: str
    reasons: list[str]


def find_unsafe_layers(
    config: Any,
    *,
    training_config: Any = None,
    compile_config: Any = None,
    stored_weights: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, str]]:
    """Layers (and other config parts) that could run code when loaded; empty if safe.

    ``config`` is the parsed model config (a dict, or a bare Sequential layer list);
    ``training_config`` (Keras 2 ``.h5``) and ``compile_config`` are scanned for code only;
    ``stored_weights`` (``.h5``: top-level layer name -> its stored weight names, as
    ``container`` reads them) are compared with what the built-in class of that name creates.
    Returns one ``{"name", "class_name", "reason"}`` dict per offending layer, in config
    order; a part outside the architecture is named by its key ("training_config"). Never
    raises on a malformed config: what it cannot read, it does not refuse.
    """
    findings: dict[tuple[str, str], _Finding] = {}
    if isinstance(config, list):  # a bare Sequential layer list
        config = {"class_name": "Sequential", "config": config}
    if isinstance(config, dict):
        _walk(config, findings)
        if stored_weights:
            _check_stored_weights(config, stored_weights, findings)
    for part_name, part in (
        ("training_config", training_config),
        ("compile_config", compile_config),
    ):
        # Outside the architecture, only code matters: tf_keras itself writes "Custom>Adam".
        reasons = list(_code_reasons(part, part_name, check_origin=False))
        if reasons:
            _add(findings, part_name, "config", reasons[0])
    return [
        {
            "name": f.name,
            "class_name": f.class_name,
            "reason": "; ".join(dict.fromkeys(f.reasons)),
        }
        for f in findings.values()
    ]


def check_config_safe(
    config: Any,
    *,
    training_config: Any = None,
    compile_config: Any = None,
    stored_weights: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Raise UnsafeModel (422) if the model config names code a loader would run or import.

    Arguments as :func:`find_unsafe_layers`; the message names up to ten layers and
    ``details["layers"]`` lists them all. Returns None when the config is safe.
    """
    unsafe = find_unsafe_layers(
        config,
        training_config=training_config,
        compile_config=compile_config,
        stored_weights=stored_weights,
    )
    if not unsafe:
        return
    shown = []
    for item in unsafe[:10]:
        # The class says it all unless there is more to say (where it comes from, what it calls).
        class_level = item["class_name"] in CODE_RUNNING_LAYERS or item["reason"] in (
            "not a built-in Keras layer",
            "not a built-in Keras model class",
        )
        suffix = "" if class_level else f": {item['reason']}"
        shown.append(f'"{item["name"]}" ({item["class_name"]}{suffix})')
    more = f" and {len(unsafe) - 10} more" if len(unsafe) > 10 else ""
    if all(item["reason"].startswith(COLLISION) for item in unsafe):
        raise UnsafeModel(
            "Model config names layers that are not the built-in Keras classes they are "
            f"named after: {', '.join(shown)}{more}. kscore refuses such files: the built-in "
            "classes cannot take their configs and weights. Rebuild the model with built-in "
            "layers only.",
            details={"layers": unsafe},
        )
    raise UnsafeModel(
        "Model config names layers that could run code when loaded: "
        f"{', '.join(shown)}{more}. kscore refuses such files; rebuild the model with "
        "built-in layers only.",
        details={"layers": unsafe},
    )


def _add(
    findings: dict[tuple[str, str], _Finding], name: str, class_name: str, reason: str
) -> None:
    finding = findings.setdefault((name, class_name), _Finding(name, class_name, []))
    finding.reasons.append(reason)


def entry_name(entry: Mapping[str, Any]) -> str:
    config = entry.get("config")
    name = entry.get("name")
    if not isinstance(name, str) and isinstance(config, dict):
        name = config.get("name")
    return name if isinstance(name, str) else "?"


def _walk(root: Mapping[str, Any], findings: dict[tuple[str, str], _Finding]) -> None:
    """Check the model ``root`` and every layer and model nested in it, in config order.

    An explicit stack instead of recursion: nesting is data from the file.
    """
    stack: list[Any] = list(reversed(_check_model_entry(root, findings)))
    while stack:
        entry = stack.pop()
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            continue
        if entry["class_name"] in MODEL_CLASSES:
            children = _check_model_entry(entry, findings)
        else:
            children = _check_layer_entry(entry, findings)
        stack.extend(reversed(children))


def _check_model_entry(
    entry: Mapping[str, Any], findings: dict[tuple[str, str], _Finding]
) -> list[Any]:
    """A top-level or nested model's own findings; returns its layers (to check next)."""
    class_name = str(entry.get("class_name"))
    name = entry_name(entry)
    if class_name not in MODEL_CLASSES:
        _add(findings, name, class_name, "not a built-in Keras model class")
    for reason in _origin_reasons(entry):
        _add(findings, name, class_name, reason)
    config = entry.get("config")
    layers = config if isinstance(config, list) else (config or {}).get("layers")
    if isinstance(config, dict):
        rest = {k: v for k, v in config.items() if k != "layers"}
        for reason in _code_reasons(rest, "config", check_origin=True):
            _add(findings, name, class_name, reason)
    # compile_config / build_config of the model: code only.
    outside = {k: v for k, v in entry.items() if k not in ("config", "module", "registered_name")}
    for reason in _code_reasons(outside, "model", check_origin=False):
        _add(findings, name, class_name, reason)
    for reason in _call_argument_reasons(entry):
        _add(findings, name, class_name, reason)
    return list(layers) if isinstance(layers, list) else []


def _check_layer_entry(
    entry: dict[str, Any], findings: dict[tuple[str, str], _Finding]
) -> list[Any]:
    """A layer's own findings; returns the layers nested in it (wrapped layers, cells)."""
    class_name: str = entry["class_name"]
    name = entry_name(entry)
    config = entry.get("config")
    module = entry.get("module")
    origin = list(_origin_reasons(entry))
    if class_name in CODE_RUNNING_LAYERS:
        _add(findings, name, class_name, CODE_RUNNING_LAYERS[class_name])
    elif class_name in TF_OPERATION_LAYERS:
        reason = _tf_operation_reason(class_name, config)
        if reason:
            _add(findings, name, class_name, reason)
    elif isinstance(module, str) and module.startswith(_KERAS3_OPS_MODULE_PREFIXES):
        reason = _keras3_operation_reason(entry, module, class_name)
        if reason:
            _add(findings, name, class_name, reason)
    elif class_name not in BUILTIN_LAYER_CLASSES:
        _add(findings, name, class_name, "not a built-in Keras layer")
    elif origin:
        # The name of a built-in class, defined elsewhere: its config and weights are the
        # user's, and the built-in class a loader would build cannot take them.
        _add(findings, name, class_name, f"{COLLISION} {class_name}")
    for reason in origin:
        _add(findings, name, class_name, reason)
    for reason in _call_argument_reasons(entry):
        _add(findings, name, class_name, reason)
    if not isinstance(config, dict):
        return []
    own = {k: v for k, v in config.items() if k not in NESTED_LAYER_KEYS}
    for reason in _code_reasons(own, "config", check_origin=True):
        _add(findings, name, class_name, reason)
    for reason in _code_reasons(
        {k: v for k, v in entry.items() if k not in ("config", "module", "registered_name")},
        "layer",
        check_origin=False,
    ):
        _add(findings, name, class_name, reason)
    for key in ("activation", "recurrent_activation"):
        activation_reason = _activation_reason(key, config.get(key))
        if activation_reason:
            _add(findings, name, class_name, activation_reason)
    nested: list[Any] = []
    for key in NESTED_LAYER_KEYS:
        value = config.get(key)
        nested.extend(value if isinstance(value, list) else [value])
    return nested


def _call_argument_reasons(entry: Mapping[str, Any]) -> Iterator[str]:
    """Serialized objects other than tensors and plain data in a layer's call arguments."""
    stack: list[Any] = [entry.get("inbound_nodes")]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            class_name = item.get("class_name")
            if isinstance(class_name, str) and class_name not in CALL_ARGUMENT_DATA:
                yield f"its call arguments hold a serialized {class_name!r} object"
                continue
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _tf_operation_reason(class_name: str, config: Any) -> str | None:
    """Why a TFOpLambda / SlicingOpLambda is refused: the TensorFlow function it names."""
    function = config.get("function") if isinstance(config, dict) else None
    if not isinstance(function, str):
        return "names no TensorFlow function"
    if function in TF_OPERATION_LAYERS[class_name]:
        return None
    why = next(
        (text for prefix, text in REFUSED_TF_PREFIXES.items() if function.startswith(prefix)),
        "not an allow-listed tensor operation",
    )
    return f"calls tf.{function}, which kscore refuses: {why}"


def _keras3_operation_reason(entry: Mapping[str, Any], module: str, class_name: str) -> str | None:
    """Why a Keras 3 operation entry is refused: its (module, class) is not allow-listed."""
    if class_name not in KERAS3_OPERATIONS.get(module, frozenset()):
        return f"the operation {module}.{class_name} is not an allow-listed tensor operation"
    registered = entry.get("registered_name")
    if registered is not None and registered != class_name:
        # A registered_name is looked up among custom objects before the module is read.
        return f"the operation {class_name} is registered as {registered!r}"
    return None


def _check_stored_weights(
    model: Mapping[str, Any],
    stored_weights: Mapping[str, Sequence[str]],
    findings: dict[tuple[str, str], _Finding],
) -> None:
    """Layers whose stored weights are not weights of the built-in class they name.

    A user's ``Attention`` with its own weights, saved in ``.h5`` with ``custom_objects``, is
    written as plain ``Attention``; only its weights (and config) tell it apart.
    ``stored_weights`` maps the model's layer names to their weight names as the ``.h5``
    stores them; a nested model's weights are stored under its name, each prefixed by its own
    layer's name (``attn/w:0``), and a wrapper's (TimeDistributed, Bidirectional) under the
    wrapper, created by the layer it wraps. Weight names are compared by their last component
    (``attn/w:0`` -> ``w``); Keras 1 names (``dense_1_W``, no ``/``) are not compared, nor
    classes missing from :func:`builtin_weight_names`.
    """
    known = builtin_weight_names()
    # Nested models are queued, not recursed into: nesting is data from the file.
    pending: list[tuple[Mapping[str, Any], Mapping[str, Sequence[str]]]] = [(model, stored_weights)]
    while pending:
        current, weights = pending.pop()
        config = current.get("config")
        layers = config if isinstance(config, list) else (config or {}).get("layers")
        if isinstance(layers, list):
            _check_layers_weights(layers, weights, known, pending, findings)


def _check_layers_weights(
    layers: list[Any],
    stored_weights: Mapping[str, Sequence[str]],
    known: Mapping[str, frozenset[str]],
    pending: list[tuple[Mapping[str, Any], Mapping[str, Sequence[str]]]],
    findings: dict[tuple[str, str], _Finding],
) -> None:
    """One model's layers for :func:`_check_stored_weights`; nested models go to ``pending``."""
    for layer in layers:
        if not isinstance(layer, dict) or layer.get("module") or layer.get("registered_name"):
            continue  # Keras 3 configs say where a class comes from; checked by the walk
        stored = stored_weights.get(entry_name(layer))
        if not stored or not all("/" in w for w in stored):
            continue
        if layer.get("class_name") in MODEL_CLASSES:
            by_layer: dict[str, list[str]] = {}
            for weight in stored:
                by_layer.setdefault(weight.split("/", 1)[0], []).append(weight)
            pending.append((layer, by_layer))
            continue
        creator = _weight_creator(layer)
        class_name = creator.get("class_name")
        allowed = known.get(class_name) if isinstance(class_name, str) else None
        if allowed is None:
            continue
        foreign = [w for w in stored if w.rsplit("/", 1)[-1].split(":", 1)[0] not in allowed]
        if foreign:
            _add(
                findings,
                entry_name(creator),
                str(class_name),
                f"{COLLISION} {class_name}: its stored weights "
                f"{', '.join(repr(w) for w in foreign)} are not weights the built-in "
                f"{class_name} creates",
            )


def _weight_creator(layer: Mapping[str, Any]) -> Mapping[str, Any]:
    """The layer whose class creates ``layer``'s weights: the wrapped one for a wrapper."""
    config = layer.get("config")
    if layer.get("class_name") in ("TimeDistributed", "Bidirectional") and isinstance(config, dict):
        inner = config.get("layer")
        backward = config.get("backward_layer")
        if isinstance(inner, dict) and (
            backward is None
            or (
                isinstance(backward, dict) and backward.get("class_name") == inner.get("class_name")
            )
        ):
            return inner
    return layer


def _activation_reason(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value in BUILTIN_ACTIVATIONS:
            return None
        return f"{key} {value!r} is not a built-in Keras activation"
    if isinstance(value, dict):
        class_name = value.get("class_name")
        if class_name == "function":  # Keras 3: {"module": "keras.activations", "config": "relu"}
            target = value.get("config")
            if _is_keras_module(value.get("module")) and target in BUILTIN_ACTIVATIONS:
                return None
            return f"{key} is the Python function {target!r}"
        if class_name in BUILTIN_LAYER_CLASSES:  # an advanced-activation layer object
            return None
        if class_name is None:
            return None  # a {"value": [bytecode...]} dict: reported by the code scan
        return f"{key} {class_name!r} is not a built-in Keras activation"
    return None


def _is_keras_module(module: Any) -> bool:
    return isinstance(module, str) and (
        module in ("keras", "tf_keras") or module.startswith(("keras.", "tf_keras."))
    )


def _origin_reasons(obj: Mapping[str, Any]) -> Iterator[str]:
    """Why a serialized object's class comes from outside Keras, if it does."""
    module = obj.get("module")
    if isinstance(module, str) and not _is_keras_module(module):
        yield f"its class comes from the Python module {module!r}"
    registered = obj.get("registered_name")
    if isinstance(registered, str) and ">" in registered:
        package = registered.split(">", 1)[0]
        if package not in ("keras", "tf_keras"):
            yield f"its class is registered by the package {package!r}"
    class_name = obj.get("class_name")
    if isinstance(class_name, str) and ">" in class_name:
        yield f"its class {class_name!r} is registered outside Keras"


def _code_reasons(value: Any, where: str, *, check_origin: bool) -> Iterator[str]:
    """Serialized Python functions (and, with check_origin, foreign classes) under ``value``.

    Reasons name the top-level key they were found under (e.g. "activation").
    """
    stack: list[tuple[Any, str, bool]] = [(value, where, True)]
    while stack:
        item, path, is_root = stack.pop()
        if isinstance(item, dict):
            class_name = item.get("class_name")
            if class_name in ("__lambda__", "__function__"):
                yield f"{path} holds a serialized Python function"
            if item.get("function_type") == "lambda" or item.get("output_shape_type") == "lambda":
                yield f"{path} holds a Python lambda"
            if check_origin and isinstance(class_name, str):
                for reason in _origin_reasons(item):
                    yield f"{path}: {reason}"
            for key, child in item.items():
                stack.append((child, str(key) if is_root else path, False))
        elif isinstance(item, list | tuple):
            if _is_serialized_function(item):
                yield f"{path} holds serialized Python bytecode"
                continue
            stack.extend((child, path, False) for child in item)


def _is_serialized_function(value: list[Any] | tuple[Any, ...]) -> bool:
    """Keras 2's ``func_dump`` output: [code, defaults, closure] with marshalled bytecode."""
    if len(value) != 3 or not isinstance(value[0], str):
        return False
    if not all(part is None or isinstance(part, list | tuple) for part in value[1:]):
        return False
    code = value[0]
    # Keras >= 2.1 base64-encodes marshal.dumps(code); 2.0 stored it raw_unicode_escape'd.
    if code[:1] in ("\xe3", "c") and "\x00" in code:
        return True
    if len(code) < 16:
        return False
    try:
        raw = binascii.a2b_base64(code)
    except (binascii.Error, ValueError):
        return False
    return raw[:1] in (b"\xe3", b"c")
