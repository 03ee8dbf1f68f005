"""Read a Keras model file without TensorFlow: what it is, its signature, and whether it is safe.

Runs in the API process, so it uses h5py, zipfile and json only and never imports TensorFlow
or Keras. It reads every dialect found in the wild:

- standalone Keras 2.0-2.3 ``.h5``: attributes stored as bytes, a Sequential config that may
  be a bare list of layers (Keras <= 2.2.2), shapes in ``batch_input_shape``;
- tf.keras / tf_keras 2.x ``.h5``: class ``Functional``, ``Model`` or ``Sequential``;
- Keras 3 writing legacy ``.h5``: ``batch_shape`` and dtype-policy dicts;
- Keras 3 ``.keras`` zips: ``config.json``, ``metadata.json`` and ``model.weights.h5``.

The safety check (:func:`check_config_safe`) reads the config only. It must never call a
loader: some loaders (tf_keras with ``.h5``) run a Lambda's bytecode even in safe mode.
"""

from __future__ import annotations

import binascii
import json
import math
import posixpath
import shutil
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import h5py

from shared.errors import PayloadTooLarge, UnsafeModel, UnsupportedModelFile

Shape = list[int | None]


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. ``shape`` includes the batch dimension as None."""

    name: str
    shape: list[int | None]
    dtype: str
    activation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": self.shape,
            "dtype": self.dtype,
            "activation": self.activation,
        }


@dataclass(frozen=True)
class ModelInfo:
    """What inspection learned about a model file."""

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


MODEL_EXTENSIONS = (".h5", ".hdf5", ".keras")
ARCHIVE_EXTENSIONS = (".tar.gz", ".tgz", ".zip")

#: Largest model member extracted from an archive when the caller gives no limit.
DEFAULT_MAX_EXTRACTED_BYTES = 1024**3
#: Largest config.json read from a .keras zip (real ones are kilobytes to a few megabytes).
MAX_CONFIG_BYTES = 64 * 1024**2
#: Members listed in an archive before giving up (a model archive has a handful).
MAX_ARCHIVE_MEMBERS = 10_000

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 allows a user block before the superblock, at 0 or a power of two from 512 up.
_HDF5_SIGNATURE_OFFSETS = (0, 512, 1024, 2048, 4096)

_NOT_A_MODEL = (
    "not a Keras model file: expected an HDF5 (.h5/.hdf5) or Keras zip (.keras) file "
    "written by model.save()."
)

# --- what counts as built-in -----------------------------------------------------------------

#: Model classes a config may name at the top or nested as a layer.
MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})

#: Built-in layer classes of Keras 2.x, tf.keras / tf_keras 2.x and Keras 3, as class names
#: appear in saved configs. Deliberately absent: Lambda, TFOpLambda, SlicingOpLambda,
#: TensorFlowOpLayer, TFSMLayer, TorchModuleWrapper, JaxLayer, FlaxLayer (they run code or
#: load files named in the config), DenseFeatures (feature columns), and the abstract bases
#: (Layer, Wrapper, AbstractRNNCell, PreprocessingLayer).
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
    "TFOpLambda": "calls a TensorFlow function named in the file",
    "SlicingOpLambda": "calls a TensorFlow function named in the file",
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
_NESTED_LAYER_KEYS = ("layer", "backward_layer", "cell", "cells", "layers")

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


# --- file kinds and reading --------------------------------------------------------------------


def detect_kind(path: Path) -> str:
    """What ``path`` holds by its magic bytes: "hdf5", "zip", "gzip", "empty" or "unknown"."""
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with path.open("rb") as f:
        head = f.read(8)
        if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
            return "zip"
        if head.startswith(b"\x1f\x8b"):
            return "gzip"
        for offset in _HDF5_SIGNATURE_OFFSETS:
            if offset + 8 > size:
                break
            f.seek(offset)
            if f.read(8) == _HDF5_SIGNATURE:
                return "hdf5"
    return "unknown"


@dataclass
class _RawModel:
    """A model config as read from a file, before interpretation."""

    format: str
    keras_version: str | None
    backend: str | None
    config: Any
    # Configs outside the architecture (training / compile): scanned for code only.
    other_configs: dict[str, Any] = field(default_factory=dict)


def inspect_model_file(path: Path, filename: str) -> ModelInfo:
    """Inspect a bare model file (.h5/.hdf5/.keras); raise UnsupportedModelFile/UnsafeModel."""
    raw = _read_model(path, filename)
    check_config_safe(raw.config, **raw.other_configs)
    return _describe(raw, filename)


def read_model_config(path: Path, filename: str) -> Any:
    """The model config (architecture) stored in a model file, parsed from JSON."""
    return _read_model(path, filename).config


def _read_model(path: Path, filename: str) -> _RawModel:
    kind = detect_kind(path)
    details = {"filename": filename}
    if kind == "empty":
        raise UnsupportedModelFile(
            f"{filename} is empty: upload the file written by model.save().", details=details
        )
    extension = _model_extension(filename)
    if kind == "hdf5":
        if extension == ".keras":
            raise UnsupportedModelFile(
                f"{filename} is an HDF5 file, not a Keras zip: rename it to end in .h5 and "
                "upload it again.",
                details=details,
            )
        return _read_h5(path, filename)
    if kind == "zip":
        if extension in (".h5", ".hdf5"):
            raise UnsupportedModelFile(
                f"{filename} is a Keras zip, not an HDF5 file: rename it to end in .keras "
                "and upload it again.",
                details=details,
            )
        return _read_keras_zip(path, filename)
    raise UnsupportedModelFile(f"{filename} is {_NOT_A_MODEL}", details=details)


def _model_extension(filename: str) -> str | None:
    lowered = filename.lower()
    return next((ext for ext in MODEL_EXTENSIONS if lowered.endswith(ext)), None)


def _attr_text(value: Any) -> str | None:
    """An HDF5 attribute as text: Keras 2 wrote bytes, tf_keras and Keras 3 write str."""
    if value is None:
        return None
    if hasattr(value, "shape") and hasattr(value, "tolist"):  # numpy scalar or 1-item array
        value = value.tolist()
        if isinstance(value, list):
            if len(value) != 1:
                return None
            value = value[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    return None


def _parse_json(text: str, what: str, filename: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnsupportedModelFile(
            f"{filename} has a {what} that is not valid JSON ({exc.msg} at line {exc.lineno}); "
            "the file is damaged or was not written by Keras.",
            details={"filename": filename},
        ) from None


def _read_h5(path: Path, filename: str) -> _RawModel:
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise UnsupportedModelFile(
            f"{filename} is {_NOT_A_MODEL} It starts like HDF5 but cannot be read as HDF5.",
            details={"filename": filename},
        ) from None
    with f:
        attrs = f.attrs
        config_text = _attr_text(attrs.get("model_config"))
        if config_text is None:
            weights_only = (
                "layer_names" in attrs or "model_weights" in f or ("layers" in f and "vars" in f)
            )
            what = (
                "only weights (written by save_weights()), not a model"
                if weights_only
                else "no Keras model (no model_config attribute)"
            )
            raise UnsupportedModelFile(
                f"{filename} holds {what}. Save the whole model with model.save() "
                "(to a .keras or .h5 file) and upload that file.",
                details={"filename": filename},
            )
        weights_attrs = f["model_weights"].attrs if "model_weights" in f else {}
        keras_version = _attr_text(attrs.get("keras_version")) or _attr_text(
            weights_attrs.get("keras_version")
        )
        backend = _attr_text(attrs.get("backend")) or _attr_text(weights_attrs.get("backend"))
        training_text = _attr_text(attrs.get("training_config"))
    config = _parse_json(config_text, "model_config", filename)
    others: dict[str, Any] = {}
    if training_text:
        others["training_config"] = _parse_json(training_text, "training_config", filename)
    return _RawModel("h5", keras_version, backend, config, others)


def _read_keras_zip(path: Path, filename: str) -> _RawModel:
    details = {"filename": filename}
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise UnsupportedModelFile(
            f"{filename} is {_NOT_A_MODEL} It starts like a zip but cannot be read as one.",
            details=details,
        ) from None
    with zf:
        names = set(zf.namelist())
        if "config.json" not in names:
            raise UnsupportedModelFile(
                f"{filename} is a zip without config.json, so it is not a Keras .keras file. "
                "Save the model with model.save('model.keras') and upload that file.",
                details=details,
            )
        config_text = _read_zip_text(zf, "config.json", filename)
        metadata_text = (
            _read_zip_text(zf, "metadata.json", filename) if "metadata.json" in names else None
        )
    config = _parse_json(config_text, "config.json", filename)
    metadata = _parse_json(metadata_text, "metadata.json", filename) if metadata_text else {}
    keras_version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    backend = metadata.get("backend") if isinstance(metadata, dict) else None
    # compile_config sits inside config.json's top level, so the safety check sees it there.
    return _RawModel(
        "keras",
        str(keras_version) if keras_version else None,
        str(backend) if backend else None,
        config,
    )


def _read_zip_text(zf: zipfile.ZipFile, name: str, filename: str) -> str:
    info = zf.getinfo(name)
    if info.file_size > MAX_CONFIG_BYTES:
        raise UnsupportedModelFile(
            f"{filename}: its {name} is {info.file_size} bytes, more than a Keras config "
            f"ever needs ({MAX_CONFIG_BYTES} bytes).",
            details={"filename": filename},
        )
    try:
        with zf.open(info) as member:
            return member.read(MAX_CONFIG_BYTES + 1).decode("utf-8")
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError, EOFError):
        raise UnsupportedModelFile(
            f"{filename}: its {name} cannot be read; the file is damaged.",
            details={"filename": filename},
        ) from None


# --- the safety check ------------------------------------------------------------------------


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
) -> list[dict[str, str]]:
    """Layers (and other config parts) that could run code when loaded; empty if safe."""
    findings: dict[tuple[str, str], _Finding] = {}
    if isinstance(config, list):  # a bare Sequential layer list
        config = {"class_name": "Sequential", "config": config}
    if isinstance(config, dict):
        _check_model_entry(config, findings)
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
    config: Any, *, training_config: Any = None, compile_config: Any = None
) -> None:
    """Raise UnsafeModel if the model config names code a loader would run or import."""
    unsafe = find_unsafe_layers(
        config, training_config=training_config, compile_config=compile_config
    )
    if not unsafe:
        return
    shown = []
    for item in unsafe[:10]:
        class_level = item["class_name"] in CODE_RUNNING_LAYERS or item["reason"].startswith(
            "not a built-in"
        )
        suffix = "" if class_level else f": {item['reason']}"
        shown.append(f'"{item["name"]}" ({item["class_name"]}{suffix})')
    more = f" and {len(unsafe) - 10} more" if len(unsafe) > 10 else ""
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


def _entry_name(entry: Mapping[str, Any]) -> str:
    config = entry.get("config")
    name = entry.get("name")
    if not isinstance(name, str) and isinstance(config, dict):
        name = config.get("name")
    return name if isinstance(name, str) else "?"


def _check_model_entry(entry: Mapping[str, Any], findings: dict[tuple[str, str], _Finding]) -> None:
    """A top-level or nested model: its class, then every layer in it."""
    class_name = str(entry.get("class_name"))
    name = _entry_name(entry)
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
    if isinstance(layers, list):
        for layer in layers:
            _check_layer_entry(layer, findings)


def _check_layer_entry(entry: Any, findings: dict[tuple[str, str], _Finding]) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        return
    class_name: str = entry["class_name"]
    if class_name in MODEL_CLASSES:
        _check_model_entry(entry, findings)
        return
    name = _entry_name(entry)
    if class_name in CODE_RUNNING_LAYERS:
        _add(findings, name, class_name, CODE_RUNNING_LAYERS[class_name])
    elif class_name not in BUILTIN_LAYER_CLASSES:
        _add(findings, name, class_name, "not a built-in Keras layer")
    for reason in _origin_reasons(entry):
        _add(findings, name, class_name, reason)
    config = entry.get("config")
    if not isinstance(config, dict):
        return
    own = {k: v for k, v in config.items() if k not in _NESTED_LAYER_KEYS}
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
    for key in _NESTED_LAYER_KEYS:
        nested = config.get(key)
        for item in nested if isinstance(nested, list) else [nested]:
            _check_layer_entry(item, findings)


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


# --- describing the model --------------------------------------------------------------------


def _describe(raw: _RawModel, filename: str) -> ModelInfo:
    config = raw.config
    if isinstance(config, list):
        config = {"class_name": "Sequential", "config": config}
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise UnsupportedModelFile(
            f"{filename} has a model config without a model class; the file is damaged or was "
            "not written by Keras model.save().",
            details={"filename": filename},
        )
    signature = _model_signature(config, None)
    # An empty shape marks an input whose shape the config does not record.
    missing = [spec.name for spec in signature.inputs if not spec.shape]
    if not signature.inputs or missing:
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
        inputs=signature.inputs,
        outputs=signature.outputs,
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
        for key in _NESTED_LAYER_KEYS:
            nested = config.get(key)
            children.extend(nested if isinstance(nested, list) else [nested])
    for child in children:
        if isinstance(child, dict) and isinstance(child.get("class_name"), str):
            if child["class_name"] not in out:
                out.append(child["class_name"])
            _collect_layer_classes(child, out)


@dataclass
class _Signature:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@dataclass
class _LayerNode:
    refs: list[tuple[str, int, int]]
    # Keras 3 records each input's shape in the node; None where it did not.
    recorded: list[Shape | None]


@dataclass
class _Layer:
    name: str
    class_name: str
    config: dict[str, Any]
    entry: dict[str, Any]
    nodes: list[_LayerNode]


def _model_signature(entry: Mapping[str, Any], given: list[Shape | None] | None) -> _Signature:
    """Inputs and outputs of a model config; ``given`` are input shapes when nested."""
    config = entry.get("config")
    if isinstance(config, list) or entry.get("class_name") == "Sequential":
        return _sequential_signature(entry, given)
    return _functional_signature(entry, given)


def _layer_list(config: Any) -> list[dict[str, Any]]:
    layers = config if isinstance(config, list) else (config or {}).get("layers")
    if not isinstance(layers, list):
        return []
    return [layer for layer in layers if isinstance(layer, dict)]


def _layer_config(entry: Mapping[str, Any]) -> dict[str, Any]:
    config = entry.get("config")
    return config if isinstance(config, dict) else {}


def _sequential_signature(entry: Mapping[str, Any], given: list[Shape | None] | None) -> _Signature:
    model_config = entry.get("config")
    layers = _layer_list(model_config)
    if not layers:
        return _Signature([], [])
    first = layers[0]
    first_config = _layer_config(first)
    first_name = _entry_name(first)
    if first.get("class_name") == "InputLayer":
        input_name = first_name
        input_shape = _input_layer_shape(first_config)
        input_dtype = _input_dtype(first_config.get("dtype"))
        layers = layers[1:]
    else:
        input_name = f"{first_name}_input"
        input_shape = _declared_input_shape(first_config)
        if input_shape is None and isinstance(model_config, dict):
            input_shape = _shape(model_config.get("build_input_shape"))
        if input_shape is None:
            build_config = entry.get("build_config")
            if isinstance(build_config, dict):
                input_shape = _shape(build_config.get("input_shape"))
        input_dtype = _input_dtype(first_config.get("dtype"))
    if input_shape is None and given:
        input_shape = given[0]
    inputs = [TensorSpec(input_name, input_shape or [], input_dtype)]
    shape: Shape | None = input_shape
    produced_by: list[_Layer] = []
    for layer_entry in layers:
        layer = _Layer(
            _entry_name(layer_entry),
            str(layer_entry.get("class_name")),
            _layer_config(layer_entry),
            layer_entry,
            [],
        )
        outputs = _layer_outputs(layer, [shape])
        shape = outputs[0] if outputs else None
        produced_by.append(layer)
    if not produced_by:
        return _Signature(inputs, [TensorSpec(input_name, input_shape or [None], input_dtype)])
    last = produced_by[-1]
    activation = None
    for layer in reversed(produced_by):
        activation = _layer_activation(layer, 0)
        if activation is not None or layer.class_name not in _VALUE_PRESERVING:
            break
    output = TensorSpec(last.name, _known_or_placeholder(shape), _output_dtype(last), activation)
    return _Signature(inputs, [output])


def _functional_signature(entry: Mapping[str, Any], given: list[Shape | None] | None) -> _Signature:
    model_config = _layer_config(entry)
    layers: dict[str, _Layer] = {}
    for layer_entry in _layer_list(model_config):
        name = _entry_name(layer_entry)
        nodes = layer_entry.get("inbound_nodes")
        layers[name] = _Layer(
            name,
            str(layer_entry.get("class_name")),
            _layer_config(layer_entry),
            layer_entry,
            [_parse_node(node) for node in nodes] if isinstance(nodes, list) else [],
        )
    input_refs = _refs(model_config.get("input_layers"))
    output_refs = _refs(model_config.get("output_layers"))
    known: dict[tuple[str, int], list[Shape | None]] = {}
    inputs: list[TensorSpec] = []
    for index, (name, node_index, _) in enumerate(input_refs):
        layer = layers.get(name)
        layer_config = layer.config if layer else {}
        shape = _input_layer_shape(layer_config)
        if shape is None and given and index < len(given):
            shape = given[index]
        known[(name, node_index)] = [shape]
        inputs.append(TensorSpec(name, shape or [], _input_dtype(layer_config.get("dtype"))))
    _propagate(layers, known)
    outputs = []
    for name, node_index, tensor_index in output_refs:
        shapes = known.get((name, node_index)) or []
        shape = shapes[tensor_index] if tensor_index < len(shapes) else None
        layer = layers.get(name)
        outputs.append(
            TensorSpec(
                name if tensor_index == 0 else f"{name}_{tensor_index}",
                _known_or_placeholder(shape),
                _output_dtype(layer) if layer else "float32",
                _traced_activation(layers, name, node_index, tensor_index),
            )
        )
    return _Signature(inputs, outputs)


def _propagate(layers: dict[str, _Layer], known: dict[tuple[str, int], list[Shape | None]]) -> None:
    """Fill ``known`` with every layer call's output shapes, in dependency order."""
    pending = [
        (layer, index)
        for layer in layers.values()
        for index in range(len(layer.nodes))
        if (layer.name, index) not in known
    ]
    # Configs list layers in dependency order, so one pass usually suffices; the bound only
    # stops a malformed (cyclic or dangling) graph from looping.
    for _ in range(len(pending) + 1):
        remaining = []
        for layer, index in pending:
            node = layer.nodes[index]
            if not all((ref[0], ref[1]) in known for ref in node.refs):
                remaining.append((layer, index))
                continue
            in_shapes: list[Shape | None] = []
            for position, (name, node_index, tensor_index) in enumerate(node.refs):
                recorded = node.recorded[position] if position < len(node.recorded) else None
                outs = known[(name, node_index)]
                computed = outs[tensor_index] if tensor_index < len(outs) else None
                in_shapes.append(recorded if recorded is not None else computed)
            known[(layer.name, index)] = _layer_outputs(layer, in_shapes)
        if len(remaining) == len(pending):
            break
        pending = remaining


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
        if node_index >= len(layer.nodes) or not layer.nodes[node_index].refs:
            return None
        name, node_index, tensor = layer.nodes[node_index].refs[0]
    return None


def _layer_activation(layer: _Layer, tensor_index: int) -> str | None:
    if layer.class_name in _ACTIVATION_LAYERS:
        return _ACTIVATION_LAYERS[layer.class_name]
    if layer.class_name in MODEL_CLASSES:
        outputs = _model_signature(layer.entry, None).outputs
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


def _parse_node(node: Any) -> _LayerNode:
    """One inbound node, in the Keras 2 list form or the Keras 3 ``{"args", "kwargs"}`` form."""
    refs: list[tuple[str, int, int]] = []
    recorded: list[Shape | None] = []
    if isinstance(node, dict):
        for tensor in _keras_tensors([node.get("args"), node.get("kwargs")]):
            history = tensor.get("keras_history")
            if isinstance(history, list) and history and isinstance(history[0], str):
                refs.append(_ref(history))
                recorded.append(_shape(tensor.get("shape")))
    elif isinstance(node, list):
        # tf_keras writes a call with one input and kwargs as a flat [name, 0, 0, {...}].
        items = [node] if node and isinstance(node[0], str) else node
        for item in items:
            if isinstance(item, list) and item and isinstance(item[0], str):
                refs.append(_ref(item))
                recorded.append(None)
    return _LayerNode(refs, recorded)


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


def _ref(item: list[Any]) -> tuple[str, int, int]:
    node_index = item[1] if len(item) > 1 and isinstance(item[1], int) else 0
    tensor_index = item[2] if len(item) > 2 and isinstance(item[2], int) else 0
    return (item[0], node_index, tensor_index)


def _refs(value: Any) -> list[tuple[str, int, int]]:
    """input_layers / output_layers: one ref, a list of refs, or (Keras 3) a dict of refs."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [_ref(value)]
    if isinstance(value, dict):
        # Keras flattens dict structures in sorted key order.
        return [ref for key in sorted(value) for ref in _refs(value[key])]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


# --- shapes and dtypes -----------------------------------------------------------------------


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
        outputs = _model_signature(layer.entry, None).outputs
        return outputs[0].dtype if outputs else "float32"
    return _compute_dtype(config.get("dtype"))


def _known_or_placeholder(shape: Shape | None) -> Shape:
    return shape if shape is not None else [None]


def _layer_outputs(layer: _Layer, in_shapes: list[Shape | None]) -> list[Shape | None]:
    """Output shapes of one layer call; None where they cannot be worked out cheaply."""
    if layer.class_name == "InputLayer":
        return [_input_layer_shape(layer.config)]
    if layer.class_name in MODEL_CLASSES:
        return [spec.shape for spec in _model_signature(layer.entry, in_shapes).outputs]
    try:
        return _shape_rules(layer.class_name, layer.config, in_shapes)
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError):
        # An unusual config this cheap inference does not follow: the shape stays unknown and
        # the loader, which is the authority, will decide.
        first = in_shapes[0] if in_shapes else None
        return [[None] * len(first)] if first else [None]


def _ints(value: Any, rank: int) -> list[int]:
    if isinstance(value, int):
        return [value] * rank
    if isinstance(value, dict):
        value = _shape(value)
    values = list(value)
    if len(values) == 1 and rank > 1:
        values = values * rank
    return [int(v) for v in values[:rank]]


def _conv_length(
    length: int | None, kernel: int, stride: int, padding: str, dilation: int
) -> int | None:
    if length is None:
        return None
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        return (length - effective) // stride + 1
    if padding == "full":
        return (length + effective - 2) // stride + 1
    return -(-length // stride)  # "same" and "causal"


def _deconv_length(
    length: int | None,
    kernel: int,
    stride: int,
    padding: str,
    dilation: int,
    output_padding: int | None,
) -> int | None:
    if length is None:
        return None
    kernel = kernel + (kernel - 1) * (dilation - 1)
    if output_padding is None:
        if padding == "valid":
            return length * stride + max(kernel - stride, 0)
        if padding == "full":
            return length * stride - (stride + kernel - 2)
        return length * stride
    pad = {"same": kernel // 2, "valid": 0, "full": kernel - 1}.get(padding, 0)
    return (length - 1) * stride + kernel - 2 * pad + output_padding


def _split_channels(config: Mapping[str, Any], shape: Shape) -> tuple[bool, Shape, int | None]:
    channels_first = config.get("data_format") == "channels_first"
    spatial = shape[2:] if channels_first else shape[1:-1]
    channels = shape[1] if channels_first else shape[-1]
    return channels_first, spatial, channels


def _join_channels(
    channels_first: bool, batch: int | None, spatial: Shape, channels: int | None
) -> Shape:
    return [batch, channels, *spatial] if channels_first else [batch, *spatial, channels]


def _conv_shape(class_name: str, config: Mapping[str, Any], shape: Shape) -> Shape:
    rank = len(shape) - 2
    channels_first, spatial, channels = _split_channels(config, shape)
    kernel = _ints(config["kernel_size"], rank)
    strides = _ints(config.get("strides", 1), rank)
    dilation = _ints(config.get("dilation_rate", 1), rank)
    padding = str(config.get("padding", "valid")).lower()
    if "Transpose" in class_name:
        raw_padding = config.get("output_padding")
        output_padding: list[int | None] = (
            [None] * rank if raw_padding is None else list(_ints(raw_padding, rank))
        )
        out = [
            _deconv_length(
                spatial[i], kernel[i], strides[i], padding, dilation[i], output_padding[i]
            )
            for i in range(rank)
        ]
    else:
        out = [
            _conv_length(spatial[i], kernel[i], strides[i], padding, dilation[i])
            for i in range(rank)
        ]
    if class_name.startswith("Depthwise"):
        multiplier = int(config.get("depth_multiplier", 1))
        filters = channels * multiplier if channels is not None else None
    else:
        filters = int(config["filters"])
    return _join_channels(channels_first, shape[0], out, filters)


def _pool_shape(config: Mapping[str, Any], shape: Shape) -> Shape:
    rank = len(shape) - 2
    channels_first, spatial, channels = _split_channels(config, shape)
    pool = _ints(config.get("pool_size", 2), rank)
    strides = _ints(config.get("strides") or pool, rank)
    padding = str(config.get("padding", "valid")).lower()
    out = [_conv_length(spatial[i], pool[i], strides[i], padding, 1) for i in range(rank)]
    return _join_channels(channels_first, shape[0], out, channels)


def _global_pool_shape(config: Mapping[str, Any], shape: Shape) -> Shape:
    channels_first, spatial, channels = _split_channels(config, shape)
    if config.get("keepdims"):
        return _join_channels(channels_first, shape[0], [1] * len(spatial), channels)
    return [shape[0], channels]


def _recurrent_shapes(
    config: Mapping[str, Any], shape: Shape, class_name: str
) -> list[Shape | None]:
    units = config.get("units")
    if units is None and isinstance(config.get("cell"), dict):
        units = _layer_config(config["cell"]).get("units")
    units = units if isinstance(units, int) else None
    out: Shape = (
        [shape[0], shape[1], units] if config.get("return_sequences") else [shape[0], units]
    )
    if not config.get("return_state"):
        return [out]
    states = 2 if "LSTM" in class_name else 1
    state: Shape = [shape[0], units]
    return [out, *([state] * states)]


def _merge_shape(shapes: list[Shape | None]) -> Shape | None:
    known = [s for s in shapes if s is not None]
    if not known or len({len(s) for s in known}) != 1:
        return None
    merged: Shape = []
    for dims in zip(*known, strict=True):
        sizes = {d for d in dims if d is not None and d != 1}
        merged.append(
            sizes.pop() if len(sizes) == 1 else (1 if all(d == 1 for d in dims) else None)
        )
    return merged


def _concat_shape(config: Mapping[str, Any], shapes: list[Shape | None]) -> Shape | None:
    if any(s is None for s in shapes) or not shapes:
        return None
    known = [s for s in shapes if s is not None]
    rank = len(known[0])
    axis = int(config.get("axis", -1)) % rank
    out = list(known[0])
    sizes = [s[axis] for s in known]
    out[axis] = (
        sum(d for d in sizes if d is not None) if all(d is not None for d in sizes) else None
    )
    return out


def _reshape_shape(config: Mapping[str, Any], shape: Shape) -> Shape:
    target = [int(d) if d is not None else -1 for d in (_shape(config["target_shape"]) or [])]
    if -1 in target:
        total = math.prod(d for d in shape[1:] if d is not None)
        known = math.prod(d for d in target if d != -1)
        resolved = total // known if None not in shape[1:] and known else None
        return [shape[0], *[resolved if d == -1 else d for d in target]]
    return [shape[0], *target]


def _pad_amounts(value: Any, rank: int) -> list[int]:
    if isinstance(value, int):
        return [2 * value] * rank
    values = list(value)
    if rank == 1 and len(values) == 2 and all(isinstance(v, int) for v in values):
        return [values[0] + values[1]]
    out = []
    for item in values[:rank]:
        out.append(2 * item if isinstance(item, int) else int(item[0]) + int(item[1]))
    return out


def _padding_shape(config: Mapping[str, Any], shape: Shape, key: str, sign: int) -> Shape:
    rank = len(shape) - 2
    channels_first, spatial, channels = _split_channels(config, shape)
    amounts = _pad_amounts(config.get(key, 1), rank)
    out = [d + sign * amounts[i] if d is not None else None for i, d in enumerate(spatial)]
    return _join_channels(channels_first, shape[0], out, channels)


def _upsampling_shape(config: Mapping[str, Any], shape: Shape) -> Shape:
    rank = len(shape) - 2
    channels_first, spatial, channels = _split_channels(config, shape)
    size = _ints(config.get("size", 2), rank)
    out = [d * size[i] if d is not None else None for i, d in enumerate(spatial)]
    return _join_channels(channels_first, shape[0], out, channels)


def _text_vectorization_shape(config: Mapping[str, Any], shape: Shape) -> Shape:
    mode = config.get("output_mode", "int")
    if mode == "int":
        length = config.get("output_sequence_length")
        return [shape[0], length if isinstance(length, int) else None]
    size = config.get("max_tokens") or config.get("vocabulary_size")
    return [shape[0], size if isinstance(size, int) else None]


def _shape_rules(
    class_name: str, config: Mapping[str, Any], in_shapes: list[Shape | None]
) -> list[Shape | None]:
    shape = in_shapes[0] if in_shapes else None
    if class_name in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
        return [_merge_shape(in_shapes)]
    if class_name == "Concatenate":
        return [_concat_shape(config, in_shapes)]
    if shape is None:
        return [None]
    if class_name == "Dense":
        return [[*shape[:-1], int(config["units"])]]
    if class_name in _IDENTITY_SHAPE or (
        class_name.startswith("Random")
        and class_name not in ("RandomCrop", "RandomFourierFeatures")
    ):
        return [list(shape)]
    if class_name == "Flatten":
        rest = shape[1:]
        return [
            [shape[0], math.prod(d for d in rest if d is not None) if None not in rest else None]
        ]
    if class_name == "Reshape":
        return [_reshape_shape(config, shape)]
    if class_name == "Permute":
        return [[shape[0], *[shape[int(d)] for d in config["dims"]]]]
    if class_name == "RepeatVector":
        return [[shape[0], int(config["n"]), *shape[1:]]]
    if class_name == "Embedding":
        return [[*shape, int(config["output_dim"])]]
    if class_name in _CONV_LAYERS:
        return [_conv_shape(class_name, config, shape)]
    if class_name in _POOL_LAYERS:
        return [_pool_shape(config, shape)]
    if class_name.startswith(("GlobalMax", "GlobalAv")):
        return [_global_pool_shape(config, shape)]
    if class_name.startswith("Adaptive"):
        channels_first, spatial, channels = _split_channels(config, shape)
        sizes: Shape = list(_ints(config["output_size"], len(spatial)))
        return [_join_channels(channels_first, shape[0], sizes, channels)]
    if class_name in _RECURRENT:
        return _recurrent_shapes(config, shape, class_name)
    if class_name == "Bidirectional":
        inner = _layer_config(config["layer"])
        outs = _recurrent_shapes(inner, shape, str(config["layer"].get("class_name")))
        out = outs[0]
        mode = config.get("merge_mode", "concat")
        if out is not None and mode == "concat" and out[-1] is not None:
            out = [*out[:-1], out[-1] * 2]
        return [out] if mode is not None else [out, out]
    if class_name == "TimeDistributed":
        inner_entry = config["layer"]
        wrapped = _Layer(
            "inner", str(inner_entry.get("class_name")), _layer_config(inner_entry), inner_entry, []
        )
        inner_out = _layer_outputs(wrapped, [[shape[0], *shape[2:]]])[0]
        return [[shape[0], shape[1], *inner_out[1:]] if inner_out is not None else None]
    if class_name.startswith("ZeroPadding"):
        return [_padding_shape(config, shape, "padding", 1)]
    if class_name.startswith("Cropping"):
        return [_padding_shape(config, shape, "cropping", -1)]
    if class_name.startswith("UpSampling"):
        return [_upsampling_shape(config, shape)]
    if class_name in ("Resizing", "CenterCrop", "RandomCrop"):
        channels_first, _, channels = _split_channels(config, shape)
        size = [int(config["height"]), int(config["width"])]
        return [_join_channels(channels_first, shape[0], list(size), channels)]
    if class_name == "TextVectorization":
        return [_text_vectorization_shape(config, shape)]
    if class_name in ("StringLookup", "IntegerLookup", "Hashing", "Discretization"):
        if config.get("output_mode", "int") == "int":
            return [list(shape)]
        return [[shape[0], None]]
    if class_name == "CategoryEncoding":
        return [[shape[0], int(config["num_tokens"])]]
    if class_name in ("MultiHeadAttention", "GroupQueryAttention", "GroupedQueryAttention"):
        output_shape = config.get("output_shape")
        last = output_shape if isinstance(output_shape, int) else shape[-1]
        return [[*shape[:-1], last]]
    if class_name in ("Attention", "AdditiveAttention"):
        value = in_shapes[1] if len(in_shapes) > 1 and in_shapes[1] is not None else shape
        return [[*shape[:-1], value[-1]]]
    if class_name == "RandomFourierFeatures":
        return [[shape[0], int(config["output_dim"])]]
    return [[None] * len(shape)]


_IDENTITY_SHAPE = frozenset(
    {
        "Activation", "Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise",
        "ActivityRegularization", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
        "BatchNormalization", "BatchNormalizationV1", "BatchNormalizationV2",
        "SyncBatchNormalization", "LayerNormalization", "GroupNormalization",
        "UnitNormalization", "RMSNormalization", "Normalization", "Rescaling", "Softmax",
        "ReLU", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU", "Masking", "Identity",
        "AutoContrast", "Equalization", "Solarization", "AugMix", "CutMix", "MixUp",
        "RandAugment", "ContrastLimitedAdaptiveHistogramEqualization",
    }
)  # fmt: skip

_CONV_LAYERS = frozenset(
    {
        "Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D",
        "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Convolution1DTranspose",
        "Convolution2DTranspose", "Convolution3DTranspose", "SeparableConv1D",
        "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D",
        "DepthwiseConv1D", "DepthwiseConv2D", "LocallyConnected1D", "LocallyConnected2D",
    }
)  # fmt: skip

_POOL_LAYERS = frozenset(
    {
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "MaxPool1D", "MaxPool2D", "MaxPool3D",
        "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "AvgPool1D", "AvgPool2D",
        "AvgPool3D",
    }
)  # fmt: skip


# --- archives --------------------------------------------------------------------------------


def extract_model_file(
    path: Path, filename: str, workdir: Path, *, max_bytes: int = DEFAULT_MAX_EXTRACTED_BYTES
) -> tuple[Path, str]:
    """The model file inside an upload: ``path`` itself, or the one member of an archive."""
    lowered = filename.lower()
    if lowered.endswith(MODEL_EXTENSIONS):
        return path, filename
    if lowered.endswith((".tar.gz", ".tgz")):
        return _extract_from_tar(path, filename, workdir, max_bytes)
    if lowered.endswith(".zip"):
        return _extract_from_zip(path, filename, workdir, max_bytes)
    raise UnsupportedModelFile(
        f"{filename!r} is not a file kscore accepts: upload a Keras model file "
        "(.h5, .hdf5, .keras) or a .tar.gz, .tgz or .zip archive holding exactly one.",
        details={
            "filename": filename,
            "accepted_extensions": list(MODEL_EXTENSIONS + ARCHIVE_EXTENSIONS),
        },
    )


def _is_junk(name: str) -> bool:
    """macOS archive litter: ``__MACOSX/`` folders and ``._name`` resource forks."""
    parts = [part for part in name.replace("\\", "/").split("/") if part]
    return any(part == "__MACOSX" for part in parts) or bool(parts and parts[-1].startswith("._"))


def _is_model_name(name: str) -> bool:
    return name.lower().endswith(MODEL_EXTENSIONS) and not _is_junk(name)


def _unsafe_member_name(name: str) -> bool:
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return True
    return ".." in normalized.split("/")


def _listing(names: list[str]) -> str:
    if not names:
        return "the archive is empty"
    shown = ", ".join(names[:10])
    return f"found: {shown}" + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _pick_member(names: list[str], filename: str) -> str:
    models = [name for name in names if _is_model_name(name)]
    details: dict[str, Any] = {"filename": filename, "members": names[:50]}
    if not models:
        others = [name for name in names if not _is_junk(name)]
        raise UnsupportedModelFile(
            f"{filename} holds no Keras model file (.h5, .hdf5, .keras); {_listing(others)}. "
            "Put exactly one model file written by model.save() in the archive.",
            details=details,
        )
    if len(models) > 1:
        raise UnsupportedModelFile(
            f"{filename} holds {len(models)} model files ({', '.join(models[:10])}); kscore "
            "needs exactly one per archive. Upload each model separately.",
            details=details,
        )
    member = models[0]
    if _unsafe_member_name(member):
        raise UnsupportedModelFile(
            f"{filename}: the member {member!r} has an unsafe path (absolute or with '..'). "
            "Archive the model file under a plain relative name.",
            details=details,
        )
    return member


def _target(workdir: Path, member: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    # Only the base name is used, so nothing can land outside workdir.
    base = posixpath.basename(member.replace("\\", "/"))
    return workdir / base


def _copy_bounded(source: IO[bytes], target: Path, max_bytes: int, filename: str) -> None:
    written = 0
    try:
        with target.open("wb") as out:
            while chunk := source.read(1024 * 1024):
                written += len(chunk)
                if written > max_bytes:
                    raise PayloadTooLarge(
                        f"The model file in {filename} is larger than the limit of {max_bytes} "
                        "bytes (KSCORE_MAX_MODEL_BYTES).",
                        details={"limit_bytes": max_bytes, "filename": filename},
                    )
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _extract_from_tar(path: Path, filename: str, workdir: Path, max_bytes: int) -> tuple[Path, str]:
    try:
        with tarfile.open(path, "r:*") as tar:
            members: list[tarfile.TarInfo] = []
            for info in _bounded(tar, filename):
                if not info.isdir():
                    members.append(info)
            by_name = {info.name: info for info in members}
            member = by_name[_pick_member([info.name for info in members], filename)]
            if not member.isfile():
                raise UnsupportedModelFile(
                    f"{filename}: the member {member.name!r} is a link, not a file. Archive "
                    "the model file itself.",
                    details={"filename": filename},
                )
            if member.size > max_bytes:
                raise _too_large(filename, max_bytes)
            source = tar.extractfile(member)
            if source is None:
                raise UnsupportedModelFile(
                    f"{filename}: the member {member.name!r} cannot be read.",
                    details={"filename": filename},
                )
            target = _target(workdir, member.name)
            with source:
                _copy_bounded(source, target, max_bytes, filename)
            return target, target.name
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnsupportedModelFile(
            f"{filename} is not a readable .tar.gz archive ({type(exc).__name__}: {exc}).",
            details={"filename": filename},
        ) from None


def _bounded(tar: tarfile.TarFile, filename: str) -> Iterator[tarfile.TarInfo]:
    for count, info in enumerate(tar, start=1):
        if count > MAX_ARCHIVE_MEMBERS:
            raise UnsupportedModelFile(
                f"{filename} has more than {MAX_ARCHIVE_MEMBERS} members; a model archive "
                "should hold the model file and little else.",
                details={"filename": filename},
            )
        yield info


def _too_large(filename: str, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The model file in {filename} is larger than the limit of {max_bytes} bytes "
        "(KSCORE_MAX_MODEL_BYTES).",
        details={"limit_bytes": max_bytes, "filename": filename},
    )


def _extract_from_zip(path: Path, filename: str, workdir: Path, max_bytes: int) -> tuple[Path, str]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ARCHIVE_MEMBERS:
                raise UnsupportedModelFile(
                    f"{filename} has more than {MAX_ARCHIVE_MEMBERS} members; a model archive "
                    "should hold the model file and little else.",
                    details={"filename": filename},
                )
            names = [info.filename for info in infos if not info.is_dir()]
            if "config.json" in names:
                # A Keras 3 .keras file renamed to .zip (WML users uploaded them so): the
                # upload is the model; loaders need the .keras extension.
                return _as_keras_file(path, filename, workdir, max_bytes)
            info = zf.getinfo(_pick_member(names, filename))
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise UnsupportedModelFile(
                    f"{filename}: the member {info.filename!r} is a symbolic link, not a file. "
                    "Archive the model file itself.",
                    details={"filename": filename},
                )
            if info.flag_bits & 0x1:
                raise UnsupportedModelFile(
                    f"{filename}: the member {info.filename!r} is encrypted; upload an "
                    "unencrypted archive.",
                    details={"filename": filename},
                )
            if info.file_size > max_bytes:
                raise _too_large(filename, max_bytes)
            target = _target(workdir, info.filename)
            with zf.open(info) as source:
                _copy_bounded(source, target, max_bytes, filename)
            return target, target.name
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise UnsupportedModelFile(
            f"{filename} is not a readable .zip archive ({type(exc).__name__}: {exc}).",
            details={"filename": filename},
        ) from None


def _as_keras_file(path: Path, filename: str, workdir: Path, max_bytes: int) -> tuple[Path, str]:
    if path.stat().st_size > max_bytes:
        raise _too_large(filename, max_bytes)
    stem = posixpath.basename(filename.replace("\\", "/"))[: -len(".zip")] or "model"
    target = _target(workdir, f"{stem}.keras")
    shutil.copyfile(path, target)
    return target, target.name
