"""Signatures read from configs (shared.keras_file.signature): inputs as declared, output names
and final activations; output shapes left to the worker that loads the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.errors import UnsupportedModelFile
from tests import keras_files as kf
from tests.shared.keras_file.helpers import (
    Builder,
    Built,
    dense,
    functional,
    h5_with_config,
    inspect,
    shapes,
)

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
    assert shapes(info.outputs) == [None]  # only Keras knows: the worker records it
    assert [(spec.dtype, spec.activation) for spec in info.outputs] == [("float32", "softmax")]
    assert "Dense" in info.layer_classes


@pytest.mark.parametrize(
    ("builder", "input_name", "output_name"),
    [
        (kf.keras3_keras_file, "x", "probs"),
        (kf.keras3_h5_file, "x", "probs"),
        (kf.keras3_sequential_h5_file, "x", "probs"),
        (kf.tf_keras_h5_file, "x", "probs"),
        (kf.tf_keras_sequential_h5_file, "probs_input", "probs"),
        (kf.keras2_standalone_h5_file, "dense_1_input", "dense_1"),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_input_and_output_names_in_every_dialect(
    built: Built, builder: Builder, input_name: str, output_name: str
) -> None:
    info = inspect(built(builder))
    assert [spec.name for spec in info.inputs] == [input_name]
    assert [spec.name for spec in info.outputs] == [output_name]


def test_keras23_batchnorm(built: Built) -> None:
    info = inspect(built(kf.keras23_batchnorm_h5_file))
    assert info.keras_version == "2.3.1"
    assert info.layer_classes == ["Dense", "BatchNormalization", "Activation"]
    assert shapes(info.inputs) == [[None, 4]]
    assert info.outputs[0].activation == "softmax"
    assert info.outputs[0].name == "activation_1"


def test_sigmoid_binary(built: Built) -> None:
    info = inspect(built(kf.sigmoid_binary_h5_file))
    assert shapes(info.inputs) == [[None, 4]]
    assert [(o.name, o.shape, o.activation) for o in info.outputs] == [("score", None, "sigmoid")]


def test_small_cnn(built: Built) -> None:
    info = inspect(built(kf.small_cnn_keras_file))
    assert [(i.name, i.shape, i.dtype) for i in info.inputs] == [
        ("image", [None, 8, 8, 1], "float32")
    ]
    assert [(o.name, o.shape, o.activation) for o in info.outputs] == [("digits", None, "softmax")]
    assert info.layer_classes == ["InputLayer", "Conv2D", "Flatten", "Dense"]


def test_lstm_files_keep_their_sequence_input(built: Built) -> None:
    tf_lstm = inspect(built(kf.tf_keras_lstm_h5_file))
    cudnn = inspect(built(kf.cudnn_lstm_h5_file))
    assert shapes(tf_lstm.inputs) == shapes(cudnn.inputs) == [[None, 5, 3]]
    assert tf_lstm.outputs[0].activation == cudnn.outputs[0].activation == "sigmoid"
    assert "LSTM" in tf_lstm.layer_classes
    assert cudnn.layer_classes == ["CuDNNLSTM", "Dense"]
    assert cudnn.keras_version == "2.2.4"


def test_text_input_is_a_string(built: Built) -> None:
    info = inspect(built(kf.text_vectorization_keras_file))
    assert [(i.name, i.shape, i.dtype) for i in info.inputs] == [("text", [None, 1], "string")]
    assert [(o.name, o.shape, o.dtype, o.activation) for o in info.outputs] == [
        ("sentiment", None, "float32", "softmax")
    ]
    assert "TextVectorization" in info.layer_classes


def test_multi_input_multi_output_in_model_order(built: Built) -> None:
    info = inspect(built(kf.multi_io_keras_file))
    assert [(i.name, i.shape) for i in info.inputs] == [("a", [None, 3]), ("b", [None, 2])]
    assert [(o.name, o.shape, o.activation) for o in info.outputs] == [
        ("score", None, "sigmoid"),
        ("kind", None, "softmax"),
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
    assert info.outputs[1].to_dict() == {
        "name": "kind",
        "shape": None,
        "dtype": "float32",
        "activation": "softmax",
    }


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


def test_activation_is_traced_behind_dropout_and_from_activation_layers(built: Built) -> None:
    def activations(builder: Builder) -> list[str | None]:
        return [o.activation for o in inspect(built(builder)).outputs]

    assert activations(kf.tf_keras_cnn_h5_file) == ["softmax"]
    assert activations(kf.tf_keras_conv1d_h5_file) == ["softmax"]
    assert activations(kf.tf_keras_image_two_outputs_h5_file) == ["tanh", "sigmoid"]
    assert activations(kf.tf_keras_sequence_two_outputs_h5_file) == ["softmax", None]
    assert activations(kf.keras3_image_keras_file) == ["softmax"]


def test_input_dtype_and_variable_lengths(built: Built) -> None:
    info = inspect(built(kf.keras3_attention_keras_file))
    assert [(i.name, i.shape, i.dtype) for i in info.inputs] == [("tokens", [None, 6], "int32")]
    assert "MultiHeadAttention" in info.layer_classes


def test_layer_classes_reach_into_wrappers(built: Built) -> None:
    classes = inspect(built(kf.tf_keras_sequence_two_outputs_h5_file)).layer_classes
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
    assert [(o.name, o.shape, o.activation) for o in info.outputs] == [("a", None, "relu")]


def test_nested_sequential_model_as_a_layer(tmp_path: Path) -> None:
    inner = {
        "class_name": "Sequential",
        "config": {"name": "inner", "layers": [dense("in_d", units=2, activation="sigmoid")]},
    }
    config = functional(inner)
    info = inspect(h5_with_config(tmp_path, config))
    assert [(o.name, o.shape, o.activation) for o in info.outputs] == [("inner", None, "sigmoid")]
    assert info.layer_classes == ["InputLayer", "Sequential", "Dense"]


def test_mixed_precision_policy_gives_float16_outputs_and_float32_inputs(tmp_path: Path) -> None:
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_float16"}}
    info = inspect(h5_with_config(tmp_path, functional(dense(dtype=policy)), "3.5.0"))
    assert info.inputs[0].dtype == "float32"
    assert info.outputs[0].dtype == "float16"


def test_unusual_layer_config_is_not_an_error(tmp_path: Path) -> None:
    info = inspect(h5_with_config(tmp_path, functional(dense(units="many"))))
    assert [(o.name, o.shape, o.activation) for o in info.outputs] == [("d", None, "softmax")]
    assert info.inputs[0].shape == [None, 4]


def test_functional_output_of_a_multi_output_layer_is_named_by_its_index(tmp_path: Path) -> None:
    config = functional(
        {"class_name": "LSTM", "config": {"name": "rnn", "units": 2, "return_state": True}}
    )
    config["config"]["output_layers"] = [["rnn", 0, 0], ["rnn", 0, 1]]
    info = inspect(h5_with_config(tmp_path, config))
    assert [(o.name, o.shape, o.activation) for o in info.outputs] == [
        ("rnn", None, None),
        ("rnn_1", None, None),
    ]


def test_keras3_dict_outputs_are_in_key_order(built: Built, tmp_path: Path) -> None:
    config = functional(dense("p", activation="relu"), dense("q", activation="tanh"))
    config["config"]["output_layers"] = {"z": ["p", 0, 0], "a": ["q", 0, 0]}
    info = inspect(h5_with_config(tmp_path, config, "3.5.0"))
    assert [(o.name, o.activation) for o in info.outputs] == [("q", "tanh"), ("p", "relu")]


# --- nested inputs and outputs (issue 7, kind 3) -----------------------------------------------


@pytest.mark.parametrize("keras_version", ["2.15.0", "3.5.0"])
def test_nested_output_and_input_lists_are_named_flat_in_order(
    tmp_path: Path, keras_version: str
) -> None:
    # Model([[x1, x2], x3], [[a, b], c]) in either dialect: nested lists of refs.
    def input_layer(name: str, width: int) -> dict[str, Any]:
        return {
            "class_name": "InputLayer",
            "name": name,
            "config": {"name": name, "batch_input_shape": [None, width], "dtype": "float32"},
            "inbound_nodes": [],
        }

    def head(name: str, activation: str) -> dict[str, Any]:
        return {**dense(name, activation=activation), "name": name,
                "inbound_nodes": [[["x1", 0, 0, {}]]]}  # fmt: skip

    config = {
        "class_name": "Functional",
        "config": {
            "name": "m",
            "layers": [input_layer("x1", 2), input_layer("x2", 3), input_layer("x3", 1),
                       head("a", "softmax"), head("b", "linear"), head("c", "sigmoid")],
            "input_layers": [[["x1", 0, 0], ["x2", 0, 0]], ["x3", 0, 0]],
            "output_layers": [[["a", 0, 0], ["b", 0, 0]], ["c", 0, 0]],
        },
    }  # fmt: skip
    info = inspect(h5_with_config(tmp_path, config, keras_version))
    assert [(i.name, i.shape) for i in info.inputs] == [
        ("x1", [None, 2]),
        ("x2", [None, 3]),
        ("x3", [None, 1]),
    ]
    assert [(o.name, o.activation) for o in info.outputs] == [
        ("a", "softmax"),
        ("b", "linear"),
        ("c", "sigmoid"),
    ]
    # Keras 3 dicts holding lists flatten with sorted keys, depth first.
    config["config"]["output_layers"] = {"q": ["c", 0, 0], "p": [["b", 0, 0], ["a", 0, 0]]}
    info = inspect(h5_with_config(tmp_path, config, keras_version))
    assert [o.name for o in info.outputs] == ["b", "a", "c"]


def test_bidirectional_input_shape_saved_on_the_wrapped_rnn_is_read(tmp_path: Path) -> None:
    # keras-team/keras#10626: Keras 2.2.0 kept the shape in the wrapped layer's config only.
    lstm = {
        "class_name": "LSTM",
        "config": {"name": "l", "units": 3, "batch_input_shape": [None, 4, 2]},
    }
    config = {
        "class_name": "Sequential",
        "config": [{"class_name": "Bidirectional", "config": {"name": "bi", "layer": lstm}}],
    }  # fmt: skip
    info = inspect(h5_with_config(tmp_path, config, "2.2.0"))
    assert [(i.name, i.shape) for i in info.inputs] == [("bi_input", [None, 4, 2])]
