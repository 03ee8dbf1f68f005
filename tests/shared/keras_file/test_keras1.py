"""Keras 1 configs rewritten as Keras 2.0 read them (shared.keras_file.keras1), on configs; the
scores are in tests/api/test_keras_history.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.errors import UnsafeModel, UnsupportedModelFile
from shared.keras_file.keras1 import convert_keras1_config, is_keras1
from tests import keras_history as kh
from tests.shared.keras_file.helpers import h5_with_config, inspect


def sequential(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"class_name": "Sequential", "config": list(layers)}


def convert(config: dict[str, Any]) -> Any:
    return convert_keras1_config(config, "old.h5", "1.2.2")


@pytest.mark.parametrize(
    ("version", "keras1"),
    [("1.2.2", True), ("1.0.8", True), ("2.0.0", False), ("2.2.4-tf", False), (None, False)],
)
def test_which_files_are_keras1(version: str | None, keras1: bool) -> None:
    assert is_keras1(version) is keras1


def test_dense_arguments_take_their_keras2_names_and_training_only_ones_are_dropped() -> None:
    config = convert(sequential(kh.keras1_dense_config("d", 3, "softmax", [None, 4])))
    input_layer, dense = config["config"]
    assert input_layer == {
        "class_name": "InputLayer",
        "config": {"batch_input_shape": [None, 4], "dtype": "float32", "sparse": False, "name": "d_input"},
    }  # fmt: skip
    assert dense == {
        "class_name": "Dense",
        "config": {"name": "d", "trainable": True, "units": 3, "activation": "softmax", "use_bias": True},
    }  # fmt: skip


def test_the_input_dtype_of_a_first_embedding_goes_to_the_input_not_the_weights() -> None:
    embedding = {
        "class_name": "Embedding",
        "config": {"name": "e", "batch_input_shape": [None, 5], "input_dtype": "int32",
                   "input_dim": 10, "output_dim": 3, "input_length": 5, "mask_zero": False,
                   "dropout": 0.2, "init": "uniform"},
    }  # fmt: skip
    input_layer, converted = convert(sequential(embedding))["config"]
    assert input_layer["config"]["dtype"] == "int32"
    assert "dtype" not in converted["config"] and "dropout" not in converted["config"]


def test_recurrent_layers_keep_their_keras1_gates() -> None:
    lstm = kh.keras1_lstm_config("l", 4, 5, 3)
    gru = {"class_name": "GRU", "config": {**lstm["config"], "name": "g"}}
    gru["config"].pop("forget_bias_init")
    converted = convert(sequential(lstm, gru))["config"]
    assert converted[0]["config"]["batch_input_shape"] == [None, 5, 3]
    lstm_config, gru_config = converted[1]["config"], converted[2]["config"]
    assert lstm_config["units"] == 4 and lstm_config["recurrent_activation"] == "hard_sigmoid"
    assert gru_config["reset_after"] is False  # the only GRU Keras 1 had
    assert not {"output_dim", "inner_activation", "consume_less", "dropout_W"} & set(gru_config)


def test_convolution2d_with_tf_ordering_becomes_conv2d_channels_last() -> None:
    conv = kh.keras1_conv2d_config("c", 4, (3, 2), batch_input_shape=[None, 6, 6, 2])
    converted = convert(sequential(conv))["config"][1]
    assert converted["class_name"] == "Conv2D"
    config = converted["config"]
    assert config["filters"] == 4 and config["kernel_size"] == [3, 2]
    assert config["strides"] == [1, 1] and config["padding"] == "valid"
    assert config["data_format"] == "channels_last" and config["use_bias"] is True


def test_merge_modes_become_merge_layers() -> None:
    merge = {"class_name": "Merge", "name": "m", "inbound_nodes": [[["a", 0, 0], ["b", 0, 0]]],
             "config": {"name": "m", "mode": "concat", "mode_type": "raw", "concat_axis": 1,
                        "dot_axes": -1, "output_shape": None, "output_shape_type": "raw",
                        "output_mask": None, "output_mask_type": "raw", "arguments": {}}}  # fmt: skip
    model = {"class_name": "Model", "config": {"name": "x", "layers": [merge]}}
    converted = convert(model)["config"]["layers"][0]
    assert converted["class_name"] == "Concatenate"
    assert converted["config"] == {"name": "m", "axis": 1}
    assert converted["inbound_nodes"] == merge["inbound_nodes"]
    merge["config"]["mode"] = "mul"
    assert convert(model)["config"]["layers"][0]["class_name"] == "Multiply"


@pytest.mark.parametrize(
    ("entry", "argument", "why"),
    [
        (kh.keras1_conv2d_config("c", 4, (3, 3), dim_ordering="th"), "dim_ordering", "Theano"),
        (
            {"class_name": "MaxPooling2D", "config": {"name": "c", "pool_size": [2, 2],
             "strides": [2, 2], "border_mode": "full", "dim_ordering": "tf"}},
            "border_mode",
            "full",
        ),
        (
            {"class_name": "Merge", "config": {"name": "c", "mode": "dot", "mode_type": "raw"}},
            "mode",
            "dot",
        ),
        (
            {"class_name": "BatchNormalization", "config": {"name": "c", "mode": 2, "axis": -1}},
            "mode",
            "modes 1 and 2",
        ),
        (
            {"class_name": "Dense", "config": {"name": "c", "output_dim": 2, "new_thing": 1}},
            "new_thing",
            "not one kscore converts",
        ),
        (
            {"class_name": "ZeroPadding2D", "config": {"name": "c", "padding": [1, 1]}},
            "dim_ordering",
            "did not save which axes",
        ),
        ({"class_name": "MaxoutDense", "config": {"name": "c"}}, None, "Keras 2 has no such"),
        ({"class_name": "Cropping2D", "config": {"name": "c"}}, None, "no proven conversion"),
    ],
    ids=[
        "th",
        "border-full",
        "merge-dot",
        "batchnorm-mode-2",
        "unknown-arg",
        "zero-padding-without-ordering",
        "maxout",
        "other",
    ],
)  # fmt: skip
def test_what_does_not_convert_is_refused_naming_layer_and_argument(
    entry: dict[str, Any], argument: str | None, why: str
) -> None:
    first = kh.keras1_dense_config("first", 4, "relu", [None, 4])
    with pytest.raises(UnsupportedModelFile) as caught:
        convert(sequential(first, entry))
    error = caught.value
    assert error.details["layer"] == "c" and error.details["argument"] == argument
    assert error.details["layer_class"] == entry["class_name"]
    assert "Keras 1.2.2 (Keras 1)" in error.message and why in error.message
    assert "Keras 2.0.x" in error.message


def test_a_lambda_is_left_for_the_safety_check_to_refuse(tmp_path: Path) -> None:
    lam = {"class_name": "Lambda", "config": {"name": "lam", "function": ["bytecode", None, None],
                                              "function_type": "lambda"}}  # fmt: skip
    config = sequential(kh.keras1_dense_config("first", 4, "relu", [None, 4]), lam)
    with pytest.raises(UnsafeModel):
        inspect(h5_with_config(tmp_path, config, "1.2.2"))


def test_inspection_describes_the_converted_config(tmp_path: Path) -> None:
    config = sequential(
        kh.keras1_lstm_config("lstm_1", 4, 5, 3), kh.keras1_dense_config("dense_1", 3, "softmax")
    )
    info = inspect(h5_with_config(tmp_path, config, "1.2.2"))
    assert info.keras_version == "1.2.2"
    assert [(i.name, i.shape, i.dtype) for i in info.inputs] == [
        ("lstm_1_input", [None, 5, 3], "float32")
    ]
    assert [(o.name, o.activation) for o in info.outputs] == [("dense_1", "softmax")]
    assert info.layer_classes == ["InputLayer", "LSTM", "Dense"]


def test_keras2_files_are_not_touched(tmp_path: Path) -> None:
    # A Keras 2 file that happens to use a Keras 1 name is Keras 2's business (and refused
    # by Keras 2 as Keras 2 would), not rewritten.
    config = sequential(kh.keras1_dense_config("d", 3, "softmax", [None, 4]))
    info = inspect(h5_with_config(tmp_path, config, "2.0.0"))
    assert info.layer_classes == ["Dense"]


def test_zero_padding_with_its_ordering_pads_the_same_sides() -> None:
    # Keras 1.0's ZeroPadding2D, and Keras 2.0's reading of it: (rows, cols) or 4 sides.
    for padding, expected in (([1, 2], [[1, 1], [2, 2]]), ([1, 2, 3, 4], [[1, 2], [3, 4]])):
        entry = {"class_name": "ZeroPadding2D",
                 "config": {"name": "z", "padding": padding, "dim_ordering": "tf"}}  # fmt: skip
        converted = convert({"class_name": "Model", "config": {"layers": [entry]}})
        config = converted["config"]["layers"][0]["config"]
        assert config["padding"] == expected and config["data_format"] == "channels_last"


def test_pooling_has_no_kernel_so_theano_ordering_converts() -> None:
    pool = {"class_name": "MaxPooling2D", "config": {"name": "p", "pool_size": [2, 2],
            "strides": [2, 2], "border_mode": "valid", "dim_ordering": "th"}}  # fmt: skip
    converted = convert({"class_name": "Model", "config": {"layers": [pool]}})
    assert converted["config"]["layers"][0]["config"]["data_format"] == "channels_first"
    pool["config"]["dim_ordering"] = "default"
    with pytest.raises(UnsupportedModelFile, match=r"keras\.json"):
        convert({"class_name": "Model", "config": {"layers": [pool]}})
