"""Inspection, the safety check and archive extraction, against real Keras files of every dialect."""

from __future__ import annotations

import base64
import json
import marshal
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from shared.errors import PayloadTooLarge, UnsafeModel, UnsupportedModelFile
from shared.model_inspect import (
    ModelInfo,
    check_config_safe,
    detect_kind,
    extract_model_file,
    find_unsafe_layers,
    inspect_model_file,
    read_model_config,
)
from tests import keras_files as kf

REPO = Path(__file__).resolve().parents[2]

Builder = Callable[..., Path]


class Built:
    """Builds each file once per module, each in its own folder."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._paths: dict[str, Path] = {}

    def __call__(self, builder: Builder, *args: Any, **kwargs: Any) -> Path:
        key = "-".join([builder.__name__, *map(str, args), *map(str, kwargs.values())])
        if key not in self._paths:
            folder = self._root / key
            folder.mkdir()
            self._paths[key] = builder(folder, *args, **kwargs)
        return self._paths[key]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return Built(tmp_path_factory.mktemp("keras_files"))


def inspect(path: Path) -> ModelInfo:
    return inspect_model_file(path, path.name)


def shapes(specs: list[Any]) -> list[list[int | None]]:
    return [spec.shape for spec in specs]


# --- every dialect -----------------------------------------------------------------------------


DENSE_BUILDERS = [
    kf.keras3_keras_file,
    kf.keras3_h5_file,
    kf.keras3_sequential_h5_file,
    kf.tf_keras_h5_file,
    kf.tf_keras_sequential_h5_file,
    kf.keras2_standalone_h5_file,
]


@pytest.mark.parametrize("builder", DENSE_BUILDERS, ids=lambda b: b.__name__)
def test_dense_model_signature_is_the_same_in_every_dialect(built: Built, builder: Builder) -> None:
    info = inspect(built(builder))
    assert shapes(info.inputs) == [[None, 4]]
    assert [spec.dtype for spec in info.inputs] == ["float32"]
    assert shapes(info.outputs) == [[None, 3]]
    assert [(spec.dtype, spec.activation) for spec in info.outputs] == [("float32", "softmax")]
    assert "Dense" in info.layer_classes


@pytest.mark.parametrize(
    ("builder", "fmt", "version", "backend", "model_class", "input_name", "output_name"),
    [
        (kf.keras3_keras_file, "keras", "3.", None, "Functional", "x", "probs"),
        (kf.keras3_h5_file, "h5", "3.", "tensorflow", "Functional", "x", "probs"),
        (kf.keras3_sequential_h5_file, "h5", "3.", "tensorflow", "Sequential", "x", "probs"),
        (kf.tf_keras_h5_file, "h5", "2.", "tensorflow", "Functional", "x", "probs"),
        (
            kf.tf_keras_sequential_h5_file,
            "h5",
            "2.",
            "tensorflow",
            "Sequential",
            "probs_input",
            "probs",
        ),
        (
            kf.keras2_standalone_h5_file,
            "h5",
            "2.2.4",
            "tensorflow",
            "Sequential",
            "dense_1_input",
            "dense_1",
        ),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_dialect_metadata(
    built: Built,
    builder: Builder,
    fmt: str,
    version: str,
    backend: str | None,
    model_class: str,
    input_name: str,
    output_name: str,
) -> None:
    info = inspect(built(builder))
    assert info.format == fmt
    assert info.keras_version is not None and info.keras_version.startswith(version)
    assert info.backend == backend
    assert info.model_class == model_class
    assert [spec.name for spec in info.inputs] == [input_name]
    assert [spec.name for spec in info.outputs] == [output_name]


def test_keras2_standalone_file_is_written_as_keras_224_wrote_it(built: Built) -> None:
    path = built(kf.keras2_standalone_h5_file)
    with h5py.File(path, "r") as f:
        for name in ("keras_version", "backend", "model_config", "training_config"):
            assert isinstance(f.attrs[name], np.bytes_), name  # fixed-length, as h5py 2 wrote
        assert f.attrs["keras_version"] == b"2.2.4"
        weights = f["model_weights"]
        assert weights.attrs["layer_names"].dtype.kind == "S"
        assert list(weights.attrs["layer_names"]) == [b"dense_1"]
        assert list(weights["dense_1"].attrs["weight_names"]) == [
            b"dense_1/kernel:0",
            b"dense_1/bias:0",
        ]
        np.testing.assert_array_equal(weights["dense_1/dense_1/kernel:0"][()], kf.DENSE_KERNEL)
        config = json.loads(f.attrs["model_config"])
    # Keras 2.2.3+ wrote {"name", "layers"} and no InputLayer; the first layer has the shape.
    assert config["class_name"] == "Sequential"
    assert config["config"]["name"] == "sequential_1"
    (dense,) = config["config"]["layers"]
    assert dense["config"]["batch_input_shape"] == [None, 4]
    assert dense["config"]["kernel_initializer"]["class_name"] == "VarianceScaling"


def test_keras_before_223_stored_a_sequential_as_a_bare_list(built: Built) -> None:
    path = built(kf.keras2_standalone_h5_file, "2.1.6")
    config = read_model_config(path, path.name)
    assert isinstance(config["config"], list)
    info = inspect(path)
    assert info.keras_version == "2.1.6"
    assert info.model_class == "Sequential"
    assert shapes(info.inputs) == [[None, 4]]
    assert info.outputs[0].shape == [None, 3]
    assert info.outputs[0].activation == "softmax"


def test_bare_list_can_be_forced_for_any_version(built: Built) -> None:
    path = built(kf.keras2_standalone_h5_file, "2.2.4", sequential_as_list=True)
    assert isinstance(read_model_config(path, path.name)["config"], list)
    assert inspect(path).outputs[0].shape == [None, 3]


def test_keras3_legacy_h5_records_batch_shape_and_dtype_policies(built: Built) -> None:
    path = built(kf.keras3_h5_file)
    layers = read_model_config(path, path.name)["config"]["layers"]
    assert layers[0]["config"]["batch_shape"] == [None, 4]
    assert layers[1]["config"]["dtype"]["class_name"] == "DTypePolicy"
    assert inspect(path).outputs[0].dtype == "float32"


def test_tf_keras_training_config_names_custom_adam_and_is_not_refused(built: Built) -> None:
    path = built(kf.tf_keras_h5_file)
    with h5py.File(path, "r") as f:
        training = json.loads(f.attrs["training_config"])
    assert training["optimizer_config"]["class_name"].endswith("Adam")
    assert inspect(path).model_class == "Functional"


def test_keras23_batchnorm(built: Built) -> None:
    info = inspect(built(kf.keras23_batchnorm_h5_file))
    assert info.keras_version == "2.3.1"
    assert info.layer_classes == ["Dense", "BatchNormalization", "Activation"]
    assert shapes(info.inputs) == [[None, 4]]
    assert info.outputs[0].shape == [None, 3]
    assert info.outputs[0].activation == "softmax"
    assert info.outputs[0].name == "activation_1"


def test_sigmoid_binary(built: Built) -> None:
    info = inspect(built(kf.sigmoid_binary_h5_file))
    assert shapes(info.inputs) == [[None, 4]]
    assert [(o.name, o.shape, o.activation) for o in info.outputs] == [
        ("score", [None, 1], "sigmoid")
    ]


def test_small_cnn(built: Built) -> None:
    info = inspect(built(kf.small_cnn_keras_file))
    assert [(i.name, i.shape, i.dtype) for i in info.inputs] == [
        ("image", [None, 8, 8, 1], "float32")
    ]
    assert [(o.name, o.shape, o.activation) for o in info.outputs] == [
        ("digits", [None, 10], "softmax")
    ]
    assert info.layer_classes == ["InputLayer", "Conv2D", "Flatten", "Dense"]


def test_lstm_files_keep_their_sequence_input(built: Built) -> None:
    tf_lstm = inspect(built(kf.tf_keras_lstm_h5_file))
    cudnn = inspect(built(kf.cudnn_lstm_h5_file))
    assert shapes(tf_lstm.inputs) == shapes(cudnn.inputs) == [[None, 5, 3]]
    assert shapes(tf_lstm.outputs) == shapes(cudnn.outputs) == [[None, 1]]
    assert tf_lstm.outputs[0].activation == cudnn.outputs[0].activation == "sigmoid"
    assert "LSTM" in tf_lstm.layer_classes
    assert cudnn.layer_classes == ["CuDNNLSTM", "Dense"]
    assert cudnn.keras_version == "2.2.4"


def test_text_input_is_a_string(built: Built) -> None:
    info = inspect(built(kf.text_vectorization_keras_file))
    assert [(i.name, i.shape, i.dtype) for i in info.inputs] == [("text", [None, 1], "string")]
    assert [(o.name, o.shape, o.dtype, o.activation) for o in info.outputs] == [
        ("sentiment", [None, 2], "float32", "softmax")
    ]
    assert "TextVectorization" in info.layer_classes


def test_multi_input_multi_output_in_model_order(built: Built) -> None:
    info = inspect(built(kf.multi_io_keras_file))
    assert [(i.name, i.shape) for i in info.inputs] == [("a", [None, 3]), ("b", [None, 2])]
    assert [(o.name, o.shape, o.activation) for o in info.outputs] == [
        ("score", [None, 1], "sigmoid"),
        ("kind", [None, 3], "softmax"),
    ]


def test_inspection_result_is_json_ready(built: Built) -> None:
    info = inspect(built(kf.multi_io_keras_file))
    data = json.loads(json.dumps(info.to_dict()))
    assert data["inputs"][1] == {
        "name": "b",
        "shape": [None, 2],
        "dtype": "float32",
        "activation": None,
    }
    assert info.outputs[1].to_dict()["activation"] == "softmax"


# --- refusals ----------------------------------------------------------------------------------


def test_weights_only_files_are_refused_with_what_to_do(built: Built) -> None:
    for builder in (kf.weights_only_h5_file, kf.keras3_weights_only_h5_file):
        with pytest.raises(UnsupportedModelFile) as caught:
            inspect(built(builder))
        assert caught.value.status == 400
        assert "save_weights()" in caught.value.message
        assert "model.save()" in caught.value.message


def test_hdf5_without_a_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(UnsupportedModelFile, match="no model_config"):
        inspect(path)


def test_not_a_model_file(built: Built) -> None:
    with pytest.raises(UnsupportedModelFile) as caught:
        inspect_model_file(built(kf.not_a_model_file), "model.h5")
    assert caught.value.code == "unsupported_model_file"
    assert "not a Keras model file: expected an HDF5 (.h5/.hdf5) or Keras zip (.keras) file" in (
        caught.value.message
    )


def test_empty_file(built: Built) -> None:
    with pytest.raises(UnsupportedModelFile, match="empty"):
        inspect(built(kf.empty_file))


def test_zip_without_config_json_is_not_a_keras_file(tmp_path: Path) -> None:
    path = kf.zip_of(None, tmp_path, extra_members=[("readme.txt", b"hi")], name="model.keras")
    with pytest.raises(UnsupportedModelFile, match=r"without config\.json"):
        inspect(path)


def test_damaged_config_json_is_refused(tmp_path: Path) -> None:
    path = kf.zip_of(None, tmp_path, extra_members=[("config.json", b"{oops")], name="m.keras")
    with pytest.raises(UnsupportedModelFile, match="not valid JSON"):
        inspect(path)


def test_extension_that_contradicts_the_content_says_how_to_fix_it(
    built: Built, tmp_path: Path
) -> None:
    keras_zip = shutil.copy(built(kf.keras3_keras_file), tmp_path / "model.h5")
    with pytest.raises(UnsupportedModelFile, match=r"rename it to end in \.keras"):
        inspect(Path(keras_zip))
    hdf5 = shutil.copy(built(kf.tf_keras_h5_file), tmp_path / "model.keras")
    with pytest.raises(UnsupportedModelFile, match=r"rename it to end in \.h5"):
        inspect(Path(hdf5))


def test_sequential_without_any_input_shape_is_refused(tmp_path: Path) -> None:
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [{"class_name": "Dense", "config": {"name": "d", "units": 2}}],
        },
    }
    with pytest.raises(UnsupportedModelFile, match="input shape is not recorded"):
        inspect(h5_with_config(tmp_path, config))


@pytest.mark.parametrize(
    ("builder", "name", "class_name"),
    [
        (kf.lambda_h5_file, "my_lambda", "Lambda"),
        (kf.lambda_keras_file, "my_lambda", "Lambda"),
        (kf.custom_layer_keras_file, "doubler", "Doubler"),
    ],
    ids=["lambda_h5", "lambda_keras", "custom_layer"],
)
def test_unsafe_files_are_refused_naming_the_layer(
    built: Built, builder: Builder, name: str, class_name: str
) -> None:
    with pytest.raises(UnsafeModel) as caught:
        inspect(built(builder))
    error = caught.value
    assert (error.status, error.code) == (422, "unsafe_model")
    assert error.message == (
        "Model config names layers that could run code when loaded: "
        f'"{name}" ({class_name}). kscore refuses such files; rebuild the model with built-in '
        "layers only."
    )
    assert [(item["name"], item["class_name"]) for item in error.details["layers"]] == [
        (name, class_name)
    ]


def test_custom_layer_reasons_name_its_module_and_package(built: Built) -> None:
    path = built(kf.custom_layer_keras_file)
    (finding,) = find_unsafe_layers(read_model_config(path, path.name))
    assert "not a built-in Keras layer" in finding["reason"]
    assert "'kscore_tests'" in finding["reason"]


def test_inspection_never_imports_tensorflow_or_keras(built: Built) -> None:
    paths = [
        built(kf.lambda_h5_file),
        built(kf.lambda_keras_file),
        built(kf.tf_keras_h5_file),
        built(kf.keras3_keras_file),
    ]
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from shared.model_inspect import inspect_model_file\n"
        "from shared.errors import UnsafeModel\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        inspect_model_file(Path(p), Path(p).name)\n"
        "    except UnsafeModel:\n"
        "        pass\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf_keras'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


# --- the safety check on configs ---------------------------------------------------------------


def functional(*layers: dict[str, Any]) -> dict[str, Any]:
    """A Keras 2 style functional config: input "x" (4,) then ``layers`` in a chain."""
    entries: list[dict[str, Any]] = [
        {
            "class_name": "InputLayer",
            "name": "x",
            "config": {"name": "x", "batch_input_shape": [None, 4], "dtype": "float32"},
            "inbound_nodes": [],
        }
    ]
    previous = "x"
    for layer in layers:
        name = layer["config"]["name"]
        entries.append({**layer, "name": name, "inbound_nodes": [[[previous, 0, 0, {}]]]})
        previous = name
    return {
        "class_name": "Functional",
        "config": {
            "name": "m",
            "layers": entries,
            "input_layers": [["x", 0, 0]],
            "output_layers": [[previous, 0, 0]],
        },
    }


def dense(
    name: str = "d", units: Any = 3, activation: Any = "softmax", **extra: Any
) -> dict[str, Any]:
    return {
        "class_name": "Dense",
        "config": {"name": name, "units": units, "activation": activation, **extra},
    }


def bytecode(fn: Callable[..., Any]) -> str:
    return base64.b64encode(marshal.dumps(fn.__code__)).decode("ascii")


def reasons(config: Any, **others: Any) -> dict[str, str]:
    return {item["name"]: item["reason"] for item in find_unsafe_layers(config, **others)}


def test_plain_configs_are_safe() -> None:
    check_config_safe(functional(dense()))
    assert find_unsafe_layers(functional(dense(activation=None))) == []


@pytest.mark.parametrize(
    ("activation", "expected"),
    [
        ({"value": [bytecode(lambda t: t), None, None]}, "bytecode"),
        ({"class_name": "__lambda__", "config": {"code": "AAAA", "defaults": None}}, "function"),
        (
            {
                "module": "builtins",
                "class_name": "function",
                "config": "my_act",
                "registered_name": "function",
            },
            "my_act",
        ),
        ("my_custom_activation", "not a built-in Keras activation"),
        ({"class_name": "Custom>Swish", "config": {}}, "not a built-in Keras activation"),
    ],
    ids=["tf_keras_lambda", "keras3_lambda", "python_function", "unknown_name", "custom_class"],
)
def test_functions_in_an_activation_are_refused(activation: Any, expected: str) -> None:
    config = functional(dense("probs", activation=activation))
    with pytest.raises(UnsafeModel) as caught:
        check_config_safe(config)
    assert expected in reasons(config)["probs"]
    assert '"probs" (Dense: ' in caught.value.message


def test_builtin_activation_written_as_a_keras3_function_object_is_safe() -> None:
    activation = {
        "module": "keras.activations",
        "class_name": "function",
        "config": "relu",
        "registered_name": "function",
    }
    assert find_unsafe_layers(functional(dense(activation=activation))) == []


def test_keras_20_raw_marshal_string_is_bytecode() -> None:
    raw = marshal.dumps((lambda t: t).__code__).decode("raw_unicode_escape")
    config = functional(
        {"class_name": "Lambda", "config": {"name": "l", "function": [raw, None, None]}}
    )
    assert "bytecode" in reasons(config)["l"]


def test_innocent_lists_are_not_mistaken_for_bytecode() -> None:
    text = base64.b64encode(b"just some words, not code").decode()
    config = functional(dense(vocabulary=[text, None, None], tags=["c\x00", 1, 2]))
    assert find_unsafe_layers(config) == []


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        (
            {
                "class_name": "TFOpLambda",
                "config": {"name": "tf.math.multiply", "function": "math.multiply"},
            },
            "calls a TensorFlow function",
        ),
        ({"class_name": "TFSMLayer", "config": {"name": "saved", "filepath": "/x"}}, "SavedModel"),
        ({"class_name": "Custom>Scale", "config": {"name": "scale"}}, "not a built-in Keras layer"),
        ({"class_name": "MyLayer", "config": {"name": "mine"}}, "not a built-in Keras layer"),
        (
            {
                "module": "my_pkg.layers",
                "class_name": "Dense",
                "config": {"name": "fake", "units": 3},
            },
            "module 'my_pkg.layers'",
        ),
        (
            {
                "registered_name": "my_pkg>Dense",
                "class_name": "Dense",
                "config": {"name": "reg", "units": 3},
            },
            "package 'my_pkg'",
        ),
        (
            {
                "class_name": "Dense",
                "config": {
                    "name": "init",
                    "units": 3,
                    "kernel_initializer": {"module": "evil", "class_name": "Init", "config": {}},
                },
            },
            "kernel_initializer: its class comes from the Python module 'evil'",
        ),
    ],
    ids=[
        "tf_op_lambda",
        "tfsm_layer",
        "custom_prefix",
        "unknown_class",
        "foreign_module",
        "foreign_package",
        "foreign_initializer",
    ],
)
def test_non_builtin_layers_are_refused(layer: dict[str, Any], expected: str) -> None:
    config = functional(layer)
    with pytest.raises(UnsafeModel):
        check_config_safe(config)
    (reason,) = reasons(config).values()
    assert expected in reason


def test_unsafe_layers_are_found_inside_wrappers_and_nested_models() -> None:
    lam = {"class_name": "Lambda", "config": {"name": "inner_lambda", "function": "x"}}
    nested = {
        "class_name": "Sequential",
        "config": {
            "name": "inner",
            "layers": [{"class_name": "Custom>Thing", "config": {"name": "thing"}}],
        },
    }
    wrapped = {"class_name": "TimeDistributed", "config": {"name": "td", "layer": lam}}
    bidi = {
        "class_name": "Bidirectional",
        "config": {
            "name": "bi",
            "layer": {"class_name": "LSTM", "config": {"name": "f", "units": 2}},
            "backward_layer": {"class_name": "MyRNN", "config": {"name": "back"}},
        },
    }
    rnn = {
        "class_name": "RNN",
        "config": {"name": "rnn", "cell": {"class_name": "MyCell", "config": {"name": "cell"}}},
    }
    found = reasons(functional(wrapped, nested, bidi, rnn))
    assert set(found) == {"inner_lambda", "thing", "back", "cell"}


def test_a_custom_model_class_is_refused() -> None:
    config = {
        "module": "my_models",
        "class_name": "MyModel",
        "config": {"name": "mine", "layers": []},
        "registered_name": "MyModel",
    }
    with pytest.raises(UnsafeModel, match=r'"mine" \(MyModel'):
        check_config_safe(config)


def test_lambdas_outside_the_architecture_are_refused_but_custom_optimizers_are_not() -> None:
    lam = {"class_name": "__lambda__", "config": {"code": "AAAA"}}
    config = functional(dense())
    assert reasons(
        config, training_config={"loss": {"value": [bytecode(lambda: 0), None, None]}}
    ) == {"training_config": "loss holds serialized Python bytecode"}
    assert "compile_config" in reasons(config, compile_config={"loss": lam})
    keras3 = {**config, "compile_config": {"loss": lam}}
    assert list(reasons(keras3)) == ["m"]
    tf_keras_training = {"optimizer_config": {"class_name": "Custom>Adam", "config": {}}}
    assert find_unsafe_layers(config, training_config=tf_keras_training) == []


def test_bare_list_sequential_config_is_checked() -> None:
    layers = [
        dense("ok", batch_input_shape=[None, 4]),
        {"class_name": "Lambda", "config": {"name": "l"}},
    ]
    with pytest.raises(UnsafeModel, match=r'"l" \(Lambda\)'):
        check_config_safe(layers)


def test_refusal_message_lists_several_layers() -> None:
    layers = [{"class_name": "Lambda", "config": {"name": f"l{i}"}} for i in range(12)]
    with pytest.raises(UnsafeModel) as caught:
        check_config_safe(functional(*layers))
    assert '"l0" (Lambda), "l1" (Lambda)' in caught.value.message
    assert "and 2 more" in caught.value.message
    assert len(caught.value.details["layers"]) == 12


# --- shapes through common layers --------------------------------------------------------------


def h5_with_config(directory: Path, config: Any, keras_version: str = "2.2.4") -> Path:
    path = directory / "crafted.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["keras_version"] = keras_version.encode()
        f.attrs["backend"] = b"tensorflow"
    return path


def tf_keras_models() -> Iterator[tuple[str, Any]]:
    import tf_keras as tk

    layers = tk.layers
    yield (
        "cnn",
        tk.Sequential(
            [
                layers.Conv2D(
                    4, 3, strides=2, padding="same", activation="relu", input_shape=(9, 9, 2)
                ),
                layers.MaxPooling2D(2),
                layers.Conv2D(3, 2, dilation_rate=1),
                layers.BatchNormalization(),
                layers.Flatten(),
                layers.Dense(5, activation="relu"),
                layers.Dense(2, activation="softmax"),
                layers.Dropout(0.2),
            ]
        ),
    )
    yield (
        "recurrent",
        tk.Sequential(
            [
                layers.Embedding(20, 4, input_shape=(6,)),
                layers.LSTM(5, return_sequences=True),
                layers.GRU(3),
                layers.Dense(1, activation="sigmoid"),
            ]
        ),
    )
    yield (
        "conv1d",
        tk.Sequential(
            [
                layers.Conv1D(3, 3, padding="causal", input_shape=(8, 2)),
                layers.AveragePooling1D(2, padding="same"),
                layers.UpSampling1D(2),
                layers.ZeroPadding1D(1),
                layers.Cropping1D((1, 0)),
                layers.Reshape((-1, 9)),
                layers.Flatten(),
                layers.Dense(2),
                layers.Softmax(),
            ]
        ),
    )
    x = tk.Input((7, 7, 3), name="img")
    y = layers.DepthwiseConv2D(3, depth_multiplier=2)(x)
    y = layers.SeparableConv2D(4, 2, strides=2, padding="same")(y)
    y = layers.Conv2DTranspose(2, 3, strides=2)(y)
    y = layers.ZeroPadding2D(((1, 0), (0, 2)))(y)
    y = layers.Cropping2D(1)(y)
    y = layers.UpSampling2D((2, 1))(y)
    pooled = layers.GlobalMaxPooling2D()(y)
    a = layers.Dense(3, activation="tanh", name="a")(pooled)
    b = layers.Activation("sigmoid", name="b")(layers.GlobalAveragePooling2D()(y))
    yield "image_functional", tk.Model(x, [a, b])
    s = tk.Input((10,), name="seq")
    r = layers.Reshape((5, 2))(s)
    h = layers.Bidirectional(layers.LSTM(3, return_sequences=True))(r)
    h = layers.TimeDistributed(layers.Dense(4))(h)
    out = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling1D()(h))
    side = layers.Dense(1)(layers.Flatten()(layers.Permute((2, 1))(r)))
    merged = layers.Concatenate()([out, side])
    yield "sequence_functional", tk.Model(s, [out, layers.Add()([merged, merged])])


def keras3_models() -> Iterator[tuple[str, Any]]:
    import keras

    layers = keras.layers
    x = keras.Input((7, 7, 3), name="img")
    y = layers.Conv2D(4, 3, padding="same")(x)
    y = layers.MaxPooling2D(2, strides=1)(y)
    y = layers.Conv2DTranspose(2, 3, strides=2, padding="same")(y)
    y = layers.GlobalAveragePooling2D(keepdims=True)(y)
    y = layers.Flatten()(y)
    yield "keras3_image", keras.Model(x, layers.Dense(3, activation="softmax")(y))
    s = keras.Input((6,), name="tokens", dtype="int32")
    e = layers.Embedding(30, 4)(s)
    h = layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode="sum")(e)
    h = layers.MultiHeadAttention(num_heads=2, key_dim=2)(h, h)
    h = layers.LayerNormalization()(h)
    pooled = layers.GlobalMaxPooling1D()(h)
    both = layers.Concatenate(axis=-1)([pooled, layers.Dense(2)(pooled)])
    yield "keras3_sequence", keras.Model(s, layers.Dense(1, activation="sigmoid")(both))


def _tf_keras_output_shapes(model: Any) -> list[list[int | None]]:
    shape = model.output_shape
    return [list(s) for s in shape] if isinstance(shape, list) else [list(shape)]


@pytest.fixture(scope="module")
def real_model_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    import warnings

    directory = tmp_path_factory.mktemp("shapes")
    cases: dict[str, tuple[Path, Any]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, model in tf_keras_models():
            path = directory / f"{name}.h5"
            model.save(str(path))
            cases[name] = (path, _tf_keras_output_shapes(model))
        for name, model in keras3_models():
            path = directory / f"{name}.keras"
            model.save(str(path))
            cases[name] = (path, [list(t.shape) for t in model.outputs])
    return cases


@pytest.mark.parametrize(
    "case",
    [
        "cnn",
        "recurrent",
        "conv1d",
        "image_functional",
        "sequence_functional",
        "keras3_image",
        "keras3_sequence",
    ],
)
def test_output_shapes_match_what_keras_computes(
    real_model_cases: dict[str, tuple[Path, Any]], case: str
) -> None:
    path, expected = real_model_cases[case]
    assert shapes(inspect(path).outputs) == expected


def test_activation_is_traced_behind_dropout_and_from_activation_layers(
    real_model_cases: dict[str, tuple[Path, Any]],
) -> None:
    assert [o.activation for o in inspect(real_model_cases["cnn"][0]).outputs] == ["softmax"]
    assert [o.activation for o in inspect(real_model_cases["conv1d"][0]).outputs] == ["softmax"]
    assert [o.activation for o in inspect(real_model_cases["image_functional"][0]).outputs] == [
        "tanh",
        "sigmoid",
    ]
    assert [o.activation for o in inspect(real_model_cases["sequence_functional"][0]).outputs] == [
        "softmax",
        None,
    ]


def test_input_dtype_and_variable_lengths(real_model_cases: dict[str, tuple[Path, Any]]) -> None:
    info = inspect(real_model_cases["keras3_sequence"][0])
    assert [(i.name, i.shape, i.dtype) for i in info.inputs] == [("tokens", [None, 6], "int32")]
    assert "MultiHeadAttention" in info.layer_classes


def test_layer_classes_reach_into_wrappers(real_model_cases: dict[str, tuple[Path, Any]]) -> None:
    classes = inspect(real_model_cases["sequence_functional"][0]).layer_classes
    assert {"Bidirectional", "LSTM", "TimeDistributed", "Dense", "Permute", "Add"} <= set(classes)


def test_keras2_sequential_input_from_input_shape_or_input_dim(tmp_path: Path) -> None:
    config = {
        "class_name": "Sequential",
        "config": [
            {"class_name": "Dense", "config": {"name": "d", "units": 7, "input_dim": 5}},
            {"class_name": "Activation", "config": {"name": "a", "activation": "relu"}},
        ],
    }
    info = inspect(h5_with_config(tmp_path, config, "2.0.8"))
    assert [(i.name, i.shape) for i in info.inputs] == [("d_input", [None, 5])]
    assert [(o.name, o.shape, o.activation) for o in info.outputs] == [("a", [None, 7], "relu")]


def test_nested_sequential_model_as_a_layer(tmp_path: Path) -> None:
    inner = {
        "class_name": "Sequential",
        "config": {"name": "inner", "layers": [dense("in_d", units=2, activation="sigmoid")]},
    }
    config = functional(inner)
    info = inspect(h5_with_config(tmp_path, config))
    assert [(o.name, o.shape, o.activation) for o in info.outputs] == [
        ("inner", [None, 2], "sigmoid")
    ]
    assert info.layer_classes == ["InputLayer", "Sequential", "Dense"]


def test_mixed_precision_policy_gives_float16_outputs_and_float32_inputs(tmp_path: Path) -> None:
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_float16"}}
    info = inspect(h5_with_config(tmp_path, functional(dense(dtype=policy)), "3.5.0"))
    assert info.inputs[0].dtype == "float32"
    assert info.outputs[0].dtype == "float16"


def test_unusual_layer_config_gives_unknown_dims_not_an_error(tmp_path: Path) -> None:
    info = inspect(h5_with_config(tmp_path, functional(dense(units="many"))))
    assert info.outputs[0].shape == [None, None]
    assert info.inputs[0].shape == [None, 4]


# --- archives ----------------------------------------------------------------------------------


def test_model_files_pass_through_unchanged(built: Built, tmp_path: Path) -> None:
    path = built(kf.tf_keras_h5_file)
    for name in ("model.h5", "MODEL.HDF5", "model.keras"):
        assert extract_model_file(path, name, tmp_path / "out") == (path, name)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz", ".zip"])
def test_archive_with_one_model_and_macos_junk(built: Built, tmp_path: Path, suffix: str) -> None:
    model = built(kf.tf_keras_h5_file)
    junk: list[kf.ExtraMember] = [
        ("__MACOSX/models/._model.h5", b"\x00\x05\x16\x07"),
        ("models/._model.h5", b"\x00\x05\x16\x07"),
        ("README.md", b"# my model"),
    ]
    make = kf.zip_of if suffix == ".zip" else kf.tar_gz_of
    archive = make(
        model, tmp_path, arcname="models/model.h5", extra_members=junk, name=f"up{suffix}"
    )
    extracted, inner = extract_model_file(archive, archive.name, tmp_path / "out")
    assert inner == "model.h5"
    assert extracted == tmp_path / "out" / "model.h5"
    assert extracted.read_bytes() == model.read_bytes()
    assert inspect_model_file(extracted, inner).outputs[0].activation == "softmax"


@pytest.mark.parametrize("make", [kf.tar_gz_of, kf.zip_of], ids=["tar", "zip"])
def test_archive_without_a_model_says_what_it_found(tmp_path: Path, make: Builder) -> None:
    archive = make(None, tmp_path, extra_members=[("notes.txt", b"x"), ("data.csv", b"1,2")])
    with pytest.raises(UnsupportedModelFile) as caught:
        extract_model_file(archive, archive.name, tmp_path / "out")
    assert "holds no Keras model file" in caught.value.message
    assert "notes.txt" in caught.value.message and "data.csv" in caught.value.message


@pytest.mark.parametrize("make", [kf.tar_gz_of, kf.zip_of], ids=["tar", "zip"])
def test_archive_with_two_models_names_them(built: Built, tmp_path: Path, make: Builder) -> None:
    archive = make(
        built(kf.tf_keras_h5_file), tmp_path, extra_members=[built(kf.sigmoid_binary_h5_file)]
    )
    with pytest.raises(UnsupportedModelFile) as caught:
        extract_model_file(archive, archive.name, tmp_path / "out")
    assert "2 model files" in caught.value.message
    assert "tf_keras_dense.h5" in caught.value.message
    assert "sigmoid_binary.h5" in caught.value.message


@pytest.mark.parametrize("member", ["../evil.h5", "/tmp/evil.h5", "a/../../evil.h5"])
@pytest.mark.parametrize("make", [kf.tar_gz_of, kf.zip_of], ids=["tar", "zip"])
def test_path_traversal_is_refused(
    built: Built, tmp_path: Path, make: Builder, member: str
) -> None:
    # Written through extra_members: tarfile.add and ZipFile.write would strip such names.
    model = built(kf.tf_keras_h5_file).read_bytes()
    suffix = ".zip" if make is kf.zip_of else ".tar.gz"
    archive = make(None, tmp_path, extra_members=[(member, model)], name=f"evil{suffix}")
    with pytest.raises(UnsupportedModelFile, match="unsafe path"):
        extract_model_file(archive, archive.name, tmp_path / "out")
    assert not (tmp_path / "evil.h5").exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("model.h5")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(UnsupportedModelFile, match="is a link"):
        extract_model_file(archive, archive.name, tmp_path / "out")


def test_zip_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("model.h5")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsupportedModelFile, match="symbolic link"):
        extract_model_file(archive, archive.name, tmp_path / "out")


@pytest.mark.parametrize("make", [kf.tar_gz_of, kf.zip_of], ids=["tar", "zip"])
def test_extraction_is_bounded(built: Built, tmp_path: Path, make: Builder) -> None:
    model = built(kf.tf_keras_h5_file)
    archive = make(model, tmp_path)
    with pytest.raises(PayloadTooLarge):
        extract_model_file(archive, archive.name, tmp_path / "out", max_bytes=1000)
    assert list((tmp_path / "out").glob("*")) == []


def test_keras_file_uploaded_as_zip_is_taken_as_that_model(built: Built, tmp_path: Path) -> None:
    upload = shutil.copy(built(kf.keras3_keras_file), tmp_path / "my_model.zip")
    extracted, inner = extract_model_file(Path(upload), "my_model.zip", tmp_path / "out")
    assert inner == "my_model.keras"
    assert extracted.read_bytes() == Path(upload).read_bytes()
    info = inspect_model_file(extracted, inner)
    assert (info.format, info.outputs[0].shape) == ("keras", [None, 3])


def test_keras_file_inside_a_tarball(built: Built, tmp_path: Path) -> None:
    archive = kf.tar_gz_of(built(kf.multi_io_keras_file), tmp_path)
    extracted, inner = extract_model_file(archive, archive.name, tmp_path / "out")
    assert inner == "multi_io.keras"
    assert len(inspect_model_file(extracted, inner).inputs) == 2


def test_other_extensions_are_refused_naming_the_accepted_ones(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x04")
    with pytest.raises(UnsupportedModelFile) as caught:
        extract_model_file(path, "model.pkl", tmp_path / "out")
    for ext in (".h5", ".hdf5", ".keras", ".tar.gz", ".tgz", ".zip"):
        assert ext in caught.value.message
    assert caught.value.details["accepted_extensions"] == [
        ".h5",
        ".hdf5",
        ".keras",
        ".tar.gz",
        ".tgz",
        ".zip",
    ]


@pytest.mark.parametrize("name", ["broken.tar.gz", "broken.zip"])
def test_damaged_archives_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(
        b"\x1f\x8b\x08 this is not really gzip" if name.endswith("gz") else b"PK\x03\x04 junk"
    )
    with pytest.raises(UnsupportedModelFile, match="not a readable"):
        extract_model_file(path, name, tmp_path / "out")


def test_detect_kind(built: Built, tmp_path: Path) -> None:
    assert detect_kind(built(kf.tf_keras_h5_file)) == "hdf5"
    assert detect_kind(built(kf.keras3_keras_file)) == "zip"
    assert detect_kind(kf.tar_gz_of(built(kf.tf_keras_h5_file), tmp_path)) == "gzip"
    assert detect_kind(built(kf.empty_file)) == "empty"
    assert detect_kind(built(kf.not_a_model_file)) == "unknown"


# --- the builders are what they claim ----------------------------------------------------------


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return np.random.default_rng(11).normal(size=(6, 4)).astype(np.float32)


def _predict_tf_keras(path: Path, x: Any) -> np.ndarray:
    import tf_keras

    return np.asarray(tf_keras.models.load_model(str(path), compile=False)(x))


def _predict_keras(path: Path, x: Any) -> Any:
    import keras

    return keras.saving.load_model(str(path), compile=False)(x)


@pytest.mark.parametrize(
    "builder",
    [kf.tf_keras_h5_file, kf.tf_keras_sequential_h5_file, kf.keras2_standalone_h5_file],
    ids=lambda b: b.__name__,
)
def test_dense_builders_predict_the_known_softmax(
    built: Built, rows: np.ndarray, builder: Builder
) -> None:
    np.testing.assert_allclose(
        _predict_tf_keras(built(builder), rows), kf.expected_dense_softmax(rows), atol=1e-6
    )


def test_keras3_builders_predict_the_known_values(built: Built, rows: np.ndarray) -> None:
    for builder in (kf.keras3_keras_file, kf.keras3_h5_file):
        np.testing.assert_allclose(
            np.asarray(_predict_keras(built(builder), rows)),
            kf.expected_dense_softmax(rows),
            atol=1e-6,
        )
    images = np.random.default_rng(5).normal(size=(3, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(_predict_keras(built(kf.small_cnn_keras_file), images)),
        kf.expected_small_cnn(images),
        atol=1e-6,
    )
    texts = ["Good movie!", "awful, AWFUL bad movie great extra", "unseen words", ""]
    feed = np.array([[t] for t in texts])
    np.testing.assert_allclose(
        np.asarray(_predict_keras(built(kf.text_vectorization_keras_file), feed)),
        kf.expected_text_softmax(texts),
        atol=1e-6,
    )
    a, b = rows[:, :3], rows[:, 2:]
    score, kind = _predict_keras(built(kf.multi_io_keras_file), [a, b])
    expected = kf.expected_multi_io(a, b)
    np.testing.assert_allclose(np.asarray(score), expected["score"], atol=1e-6)
    np.testing.assert_allclose(np.asarray(kind), expected["kind"], atol=1e-6)


def test_tf_keras_builders_predict_the_known_values(built: Built, rows: np.ndarray) -> None:
    np.testing.assert_allclose(
        _predict_tf_keras(built(kf.sigmoid_binary_h5_file), rows),
        kf.expected_sigmoid(rows),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        _predict_tf_keras(built(kf.keras23_batchnorm_h5_file), rows),
        kf.expected_keras23_batchnorm(rows),
        atol=1e-6,
    )
    sequences = np.random.default_rng(9).normal(size=(4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(
        _predict_tf_keras(built(kf.tf_keras_lstm_h5_file), sequences),
        kf.expected_lstm_sigmoid(sequences),
        atol=1e-6,
    )


def test_cudnn_file_has_cudnn_layout_that_keras_converts_back(built: Built, tmp_path: Path) -> None:
    path = built(kf.cudnn_lstm_h5_file)
    with h5py.File(path, "r") as f:
        group = f["model_weights/cu_dnnlstm_1"]
        assert list(group.attrs["weight_names"]) == [
            b"cu_dnnlstm_1/kernel:0",
            b"cu_dnnlstm_1/recurrent_kernel:0",
            b"cu_dnnlstm_1/bias:0",
        ]
        assert group["cu_dnnlstm_1/bias:0"].shape == (8 * kf.LSTM_UNITS,)
        lstm = json.loads(f.attrs["model_config"])["config"]["layers"][0]
    assert lstm["class_name"] == "CuDNNLSTM"
    assert not {"activation", "recurrent_activation", "dropout", "implementation"} & set(
        lstm["config"]
    )
    # tf_keras's own weight loader converts the CuDNN layout when the layer is a plain LSTM.
    converted = Path(shutil.copy(path, tmp_path / "as_lstm.h5"))
    with h5py.File(converted, "a") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"][0]["class_name"] = "LSTM"
        f.attrs["model_config"] = json.dumps(config).encode()
    sequences = np.random.default_rng(9).normal(size=(4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(
        _predict_tf_keras(converted, sequences), kf.expected_lstm_sigmoid(sequences), atol=1e-6
    )


def test_archive_helpers_accept_paths_and_bytes(built: Built, tmp_path: Path) -> None:
    other = built(kf.sigmoid_binary_h5_file)
    archive = kf.zip_of(
        built(kf.tf_keras_h5_file), tmp_path, extra_members=[other, ("x.txt", b"1")]
    )
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["sigmoid_binary.h5", "tf_keras_dense.h5", "x.txt"]
    tarball = kf.tar_gz_of(other, tmp_path, extra_members=[("x.txt", b"1")])
    with tarfile.open(tarball) as tar:
        assert sorted(tar.getnames()) == ["sigmoid_binary.h5", "x.txt"]
        member = tar.extractfile("x.txt")
        assert member is not None and member.read() == b"1"
