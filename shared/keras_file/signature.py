"""A model's signature as its config states it: inputs, output names, final activations.

Input names, shapes and dtypes are declared in the config (``Input`` layers, or the first
layer of a Sequential), so they are read here. Output shapes are not declared anywhere: only
Keras can work them out, so an output's ``shape`` stays None (unknown) until a worker has
loaded the model (see ``workers.model_loader.LoadedModel.output_specs``). An output's dtype
here is the one its layer's dtype policy states, which the worker replaces with the loaded
model's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.errors import UnsupportedModelFile
from shared.keras_file.container import RawModel
from shared.keras_file.safety import MODEL_CLASSES, NESTED_LAYER_KEYS, entry_name

Shape = list[int | None]

# Layers whose output holds the same values as their input at inference (a dropout after a
# softmax still yields probabilities), so an output's activation is looked up behind them.
_VALUE_PRESERVING = frozenset(
    {
        "Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "ActivityRegularization",
        "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "Flatten", "Reshape",
        "Permute", "RepeatVector", "Identity", "Masking",
    }
)  # fmt: skip

# Advanced-activation layers, by the activation they apply.
_ACTIVATION_LAYERS = {
    "Softmax": "softmax",
    "ReLU": "relu",
    "LeakyReLU": "leaky_relu",
    "PReLU": "prelu",
    "ELU": "elu",
    "ThresholdedReLU": "thresholded_relu",
}

_RECURRENT = frozenset({"LSTM", "GRU", "SimpleRNN", "CuDNNLSTM", "CuDNNGRU", "RNN"})


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output.

    ``shape`` includes the batch dimension as None (e.g. ``[None, 28, 28, 1]``); it is None
    for an output whose shape is not known yet (no worker has loaded the model). ``dtype`` is
    a numpy/TensorFlow dtype name ("float32", "int64", "string"); ``activation`` is the final
    activation of an output where the config states it, else None.
    """

    name: str
    shape: Shape | None
    dtype: str
    activation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: name, shape, dtype, activation."""
        return {
            "name": self.name,
            "shape": self.shape,
            "dtype": self.dtype,
            "activation": self.activation,
        }


@dataclass(frozen=True)
class ModelInfo:
    """What inspection learned about a model file (see :func:`describe`)."""

    format: str  # "h5" or "keras"
    keras_version: str | None
    backend: str | None
    model_class: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    layer_classes: list[str] = field(default_factory=list)
    model_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)


def describe(raw: RawModel, filename: str) -> ModelInfo:
    """Describe a model read by ``container.read_raw_model`` (run the safety check first).

    Returns its class, inputs (name, shape with a None batch dimension, dtype), outputs (name,
    dtype, activation; shape None) and the layer classes it uses, in config order. Raises
    UnsupportedModelFile if the config has no model class or does not record an input shape.
    """
    config = raw.config
    if isinstance(config, list):
        config = {"class_name": "Sequential", "config": config}
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise UnsupportedModelFile(
            f"{filename} has a model config without a model class; the file is damaged or was "
            "not written by Keras model.save().",
            details={"filename": filename},
        )
    inputs, outputs = _model_signature(config)
    # An empty shape marks an input whose shape the config does not record.
    missing = [spec.name for spec in inputs if not spec.shape]
    if not inputs or missing:
        raise UnsupportedModelFile(
            f"{filename}: the model's input shape is not recorded"
            + (f" (input {', '.join(missing)})" if missing else "")
            + ". Give the model an explicit input (keras.Input(shape=...)) or build it with "
            "model.build(input_shape) before saving, then upload it again.",
            details={"filename": filename},
        )
    classes: list[str] = []
    _collect_layer_classes(config, classes)
    model_config = config.get("config")
    model_name = model_config.get("name") if isinstance(model_config, dict) else None
    return ModelInfo(
        format=raw.format,
        keras_version=raw.keras_version,
        backend=raw.backend,
        model_class=config["class_name"],
        inputs=inputs,
        outputs=outputs,
        layer_classes=classes,
        model_name=model_name if isinstance(model_name, str) else None,
    )


def _collect_layer_classes(entry: Any, out: list[str]) -> None:
    if not isinstance(entry, dict):
        return
    config = entry.get("config")
    children: list[Any] = []
    if isinstance(config, list):
        children = config
    elif isinstance(config, dict):
        for key in NESTED_LAYER_KEYS:
            nested = config.get(key)
            children.extend(nested if isinstance(nested, list) else [nested])
    for child in children:
        if isinstance(child, dict) and isinstance(child.get("class_name"), str):
            if child["class_name"] not in out:
                out.append(child["class_name"])
            _collect_layer_classes(child, out)


# --- the graph, as far as names and activations need it ----------------------------------------


Ref = tuple[str, int, int]  # (layer name, node index, tensor index)


@dataclass
class _Layer:
    name: str
    class_name: str
    config: dict[str, Any]
    entry: dict[str, Any]
    # Per call of the layer (inbound node): the tensors it was called on.
    nodes: list[list[Ref]]


def _as_layer(entry: dict[str, Any]) -> _Layer:
    nodes = entry.get("inbound_nodes")
    return _Layer(
        entry_name(entry),
        str(entry.get("class_name")),
        _layer_config(entry),
        entry,
        [_node_refs(node) for node in nodes] if isinstance(nodes, list) else [],
    )


def _model_signature(entry: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of a model config (top level or nested as a layer)."""
    config = entry.get("config")
    if isinstance(config, list) or entry.get("class_name") == "Sequential":
        return _sequential_signature(entry)
    return _functional_signature(entry)


def _layer_list(config: Any) -> list[dict[str, Any]]:
    layers = config if isinstance(config, list) else (config or {}).get("layers")
    if not isinstance(layers, list):
        return []
    return [layer for layer in layers if isinstance(layer, dict)]


def _layer_config(entry: Mapping[str, Any]) -> dict[str, Any]:
    config = entry.get("config")
    return config if isinstance(config, dict) else {}


def _sequential_signature(
    entry: Mapping[str, Any],
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    model_config = entry.get("config")
    layers = _layer_list(model_config)
    if not layers:
        return [], []
    first = layers[0]
    first_config = _layer_config(first)
    first_name = entry_name(first)
    if first.get("class_name") == "InputLayer":
        input_name = first_name
        input_shape = _input_layer_shape(first_config)
        layers = layers[1:]
    else:
        input_name = f"{first_name}_input"
        input_shape = _declared_input_shape(first_config)
        if input_shape is None and first.get("class_name") == "Bidirectional":
            # Keras saved Bidirectional(LSTM(n, input_shape=...)) with the shape on the RNN
            # only (keras-team/keras#10626); the worker moves it to the wrapper.
            wrapped = first_config.get("layer")
            if isinstance(wrapped, dict):
                input_shape = _declared_input_shape(_layer_config(wrapped))
        if input_shape is None and isinstance(model_config, dict):
            input_shape = _shape(model_config.get("build_input_shape"))
        if input_shape is None:
            build_config = entry.get("build_config")
            if isinstance(build_config, dict):
                input_shape = _shape(build_config.get("input_shape"))
    input_dtype = _input_dtype(first_config.get("dtype"))
    inputs = [TensorSpec(input_name, input_shape or [], input_dtype)]
    if not layers:  # a model of nothing but its input
        return inputs, [TensorSpec(input_name, None, input_dtype)]
    chain = [_as_layer(layer) for layer in layers]
    last = chain[-1]
    activation = None
    for layer in reversed(chain):
        activation = _layer_activation(layer, 0)
        if activation is not None or layer.class_name not in _VALUE_PRESERVING:
            break
    return inputs, [TensorSpec(last.name, None, _output_dtype(last), activation)]


def _functional_signature(
    entry: Mapping[str, Any],
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    model_config = _layer_config(entry)
    layers = {layer.name: layer for layer in map(_as_layer, _layer_list(model_config))}
    inputs = []
    for name, _, _ in _refs(model_config.get("input_layers")):
        layer = layers.get(name)
        layer_config = layer.config if layer else {}
        shape = _input_layer_shape(layer_config) or []
        inputs.append(TensorSpec(name, shape, _input_dtype(layer_config.get("dtype"))))
    outputs = []
    for name, node_index, tensor_index in _refs(model_config.get("output_layers")):
        layer = layers.get(name)
        outputs.append(
            TensorSpec(
                name if tensor_index == 0 else f"{name}_{tensor_index}",
                None,
                _output_dtype(layer) if layer else "float32",
                _traced_activation(layers, name, node_index, tensor_index),
            )
        )
    return inputs, outputs


def _traced_activation(
    layers: dict[str, _Layer], name: str, node_index: int, tensor: int
) -> str | None:
    """The activation that produced a functional output, looking behind dropout, reshape..."""
    seen: set[tuple[str, int]] = set()
    while (name, node_index) not in seen:
        seen.add((name, node_index))
        layer = layers.get(name)
        if layer is None:
            return None
        activation = _layer_activation(layer, tensor)
        if activation is not None or layer.class_name not in _VALUE_PRESERVING:
            return activation
        if node_index >= len(layer.nodes) or not layer.nodes[node_index]:
            return None
        name, node_index, tensor = layer.nodes[node_index][0]
    return None


def _layer_activation(layer: _Layer, tensor_index: int) -> str | None:
    if layer.class_name in _ACTIVATION_LAYERS:
        return _ACTIVATION_LAYERS[layer.class_name]
    if layer.class_name in MODEL_CLASSES:
        _, outputs = _model_signature(layer.entry)
        return outputs[tensor_index].activation if tensor_index < len(outputs) else None
    if layer.class_name in _RECURRENT or "activation" not in layer.config:
        return None
    return _activation_name(layer.config.get("activation"))


def _activation_name(value: Any) -> str | None:
    if value is None:
        return "linear"  # Keras' default when a layer is given activation=None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if value.get("class_name") == "function" and isinstance(value.get("config"), str):
            return str(value["config"])
        class_name = value.get("class_name")
        if isinstance(class_name, str):
            return _ACTIVATION_LAYERS.get(class_name, class_name)
    return None


def _node_refs(node: Any) -> list[Ref]:
    """One inbound node, in the Keras 2 list form or the Keras 3 ``{"args", "kwargs"}`` form."""
    refs: list[Ref] = []
    if isinstance(node, dict):
        for tensor in _keras_tensors([node.get("args"), node.get("kwargs")]):
            history = tensor.get("keras_history")
            if isinstance(history, list) and history and isinstance(history[0], str):
                refs.append(_ref(history))
    elif isinstance(node, list):
        # tf_keras writes a call with one input and kwargs as a flat [name, 0, 0, {...}].
        items = [node] if node and isinstance(node[0], str) else node
        for item in items:
            if isinstance(item, list) and item and isinstance(item[0], str):
                refs.append(_ref(item))
    return refs


def _keras_tensors(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__" and isinstance(value.get("config"), dict):
            yield value["config"]
            return
        for child in value.values():
            yield from _keras_tensors(child)
    elif isinstance(value, list):
        for child in value:
            yield from _keras_tensors(child)


def _ref(item: list[Any]) -> Ref:
    node_index = item[1] if len(item) > 1 and isinstance(item[1], int) else 0
    tensor_index = item[2] if len(item) > 2 and isinstance(item[2], int) else 0
    return (item[0], node_index, tensor_index)


def _refs(value: Any) -> list[Ref]:
    """input_layers / output_layers: one ref, a list of refs, or (Keras 3) a dict of refs."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [_ref(value)]
    if isinstance(value, dict):
        # Keras flattens dict structures in sorted key order.
        return [ref for key in sorted(value) for ref in _refs(value[key])]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


# --- declared shapes and dtypes ------------------------------------------------------------------


def _shape(value: Any) -> Shape | None:
    """A shape from a config: a list, a TensorShape dict, or a Keras 3 ``__tuple__``."""
    if isinstance(value, dict):
        if isinstance(value.get("items"), list):  # {"class_name": "TensorShape", "items": [...]}
            value = value["items"]
        elif isinstance(value.get("config"), dict) and "value" in value["config"]:
            value = value["config"]["value"]  # {"class_name": "__tuple__", ...}
        else:
            return None
    if not isinstance(value, list | tuple):
        return None
    if any(isinstance(dim, list | tuple | dict) for dim in value):
        return None  # a list of shapes, not a shape
    return [dim if isinstance(dim, int) and not isinstance(dim, bool) else None for dim in value]


def _input_layer_shape(config: Mapping[str, Any]) -> Shape | None:
    for key in ("batch_shape", "batch_input_shape"):
        shape = _shape(config.get(key))
        if shape is not None:
            return shape
    shape = _shape(config.get("shape")) or _shape(config.get("input_shape"))
    return [None, *shape] if shape is not None else None


def _declared_input_shape(config: Mapping[str, Any]) -> Shape | None:
    """The input shape a Sequential's first layer was given (batch_input_shape & co.)."""
    for key in ("batch_input_shape", "batch_shape"):
        shape = _shape(config.get(key))
        if shape is not None:
            return shape
    shape = _shape(config.get("input_shape"))
    if shape is not None:
        return [None, *shape]
    input_dim = config.get("input_dim")
    if isinstance(input_dim, int) and not isinstance(input_dim, bool):
        input_length = config.get("input_length")
        if isinstance(input_length, int):  # Keras 1 / 2 recurrent layers
            return [None, input_length, input_dim]
        return [None, input_dim]
    return None


def _policy_name(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        config = value.get("config")
        if isinstance(config, dict) and isinstance(config.get("name"), str):
            return str(config["name"])
    return None


def _input_dtype(value: Any) -> str:
    name = _policy_name(value)
    if name is None:
        return "float32"
    if name.startswith("mixed_"):
        return "float32"  # mixed-precision models take float32 inputs and cast them
    return name.split("_from_")[-1]


def _compute_dtype(value: Any) -> str:
    name = _policy_name(value)
    if name is None:
        return "float32"
    if name.startswith("mixed_"):
        return name[len("mixed_") :]
    return name.split("_from_")[-1]


def _output_dtype(layer: _Layer) -> str:
    config = layer.config
    lookup = layer.class_name in ("TextVectorization", "StringLookup", "IntegerLookup")
    if lookup and config.get("output_mode", "int") == "int":
        return "int64"
    if layer.class_name == "Hashing":
        return "int64"
    if layer.class_name == "InputLayer":
        return _input_dtype(config.get("dtype"))
    if layer.class_name in MODEL_CLASSES:
        _, outputs = _model_signature(layer.entry)
        return outputs[0].dtype if outputs else "float32"
    return _compute_dtype(config.get("dtype"))
