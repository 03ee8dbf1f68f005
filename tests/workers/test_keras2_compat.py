"""The table of Keras 2 defaults, on configs (the scores are in tests/api/test_real_files.py)."""

from __future__ import annotations

from typing import Any

import pytest

from workers.keras2_compat import normalize_keras2_config, standalone_keras2_version


@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        ("2.1.2", (2, 1, 2)),
        ("2.3.1", (2, 3, 1)),
        (None, (2, 0, 0)),
        ("2.2.4-tf", None),  # tf.keras serialized every argument with its own defaults
        ("2.4.0", None),
        ("3.5.0", None),
    ],
)
def test_which_writers_are_standalone_keras2(attr: str | None, expected: Any) -> None:
    assert standalone_keras2_version(attr) == expected


def layer(class_name: str, **config: Any) -> dict[str, Any]:
    return {"class_name": class_name, "config": {"name": "x", **config}}


def model(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"class_name": "Sequential", "config": {"name": "m", "layers": list(layers)}}


def test_missing_arguments_take_the_writers_defaults_at_any_depth() -> None:
    config = model(
        layer("GRU", units=2),
        layer("Bidirectional", layer=layer("LSTM", units=2)),
        layer("Flatten"),
    )
    out = normalize_keras2_config(config, "2.1.2")
    gru, bidirectional, flatten = out["config"]["layers"]
    assert gru["config"]["reset_after"] is False
    assert gru["config"]["recurrent_activation"] == "hard_sigmoid"
    assert bidirectional["config"]["layer"]["config"]["recurrent_activation"] == "hard_sigmoid"
    assert flatten["config"]["data_format"] == "channels_last"
    assert "reset_after" not in config["config"]["layers"][0]["config"]  # input untouched
    later = normalize_keras2_config(config, "2.3.0")["config"]["layers"][0]["config"]
    assert later["recurrent_activation"] == "sigmoid"


def test_serialized_arguments_and_tf_keras_writers_are_left_alone() -> None:
    config = model(layer("GRU", units=2, reset_after=True, recurrent_activation="tanh"))
    kept = normalize_keras2_config(config, "2.1.6")["config"]["layers"][0]["config"]
    assert kept["reset_after"] is True and kept["recurrent_activation"] == "tanh"
    bare = model(layer("GRU", units=2))
    untouched = normalize_keras2_config(bare, "2.2.4-tf")["config"]["layers"][0]["config"]
    assert "reset_after" not in untouched


def test_cudnn_layers_keep_their_built_in_settings() -> None:
    out = normalize_keras2_config(model(layer("CuDNNGRU", units=2)), "2.1.2")
    gru = out["config"]["layers"][0]
    assert gru["class_name"] == "GRU"
    # CuDNNGRU always computed reset_after=True with sigmoid: not the 2.1.2 GRU defaults.
    assert gru["config"]["reset_after"] is True
    assert gru["config"]["recurrent_activation"] == "sigmoid"


# --- configs a Keras saved that it could not read back (issue 7, kind 2) -----------------------


def relu_as_tf112_saved_it() -> dict[str, Any]:
    ndarray = {"type": "ndarray", "value": 6.0}
    return layer("ReLU", max_value=ndarray, negative_slope={"type": "ndarray", "value": 0.0},
                 threshold={"type": "ndarray", "value": 0.0})  # fmt: skip


def test_relu_arguments_saved_as_ndarray_dicts_become_their_numbers() -> None:
    # https://github.com/tensorflow/tensorflow/issues/22697
    relu = normalize_keras2_config(model(relu_as_tf112_saved_it()), "2.1.6-tf")["config"]["layers"][
        0
    ]
    assert relu["config"] == {
        "name": "x",
        "max_value": 6.0,
        "negative_slope": 0.0,
        "threshold": 0.0,
    }


def test_only_a_number_inside_an_ndarray_dict_is_taken() -> None:
    vector = {"type": "ndarray", "value": [1.0, 2.0]}
    relu = normalize_keras2_config(model(layer("ReLU", max_value=vector)), "2.1.6-tf")
    assert relu["config"]["layers"][0]["config"]["max_value"] == vector


def test_control_tf_keras_refuses_the_relu_config_tf112_wrote() -> None:
    import tf_keras

    with pytest.raises(TypeError):
        tf_keras.layers.deserialize(relu_as_tf112_saved_it())


def bidirectional_shape_inside() -> dict[str, Any]:
    return layer("Bidirectional", layer=layer("LSTM", units=3, batch_input_shape=[None, 4, 2]))


@pytest.mark.parametrize("as_list", [True, False])
def test_bidirectional_gets_the_input_shape_saved_on_its_rnn(as_list: bool) -> None:
    # https://github.com/keras-team/keras/issues/10626
    layers = [bidirectional_shape_inside(), layer("Dense", units=2)]
    config: Any = {"class_name": "Sequential", "config": layers if as_list else {"layers": layers}}
    out = normalize_keras2_config(config, "2.2.0")
    first = (out["config"] if as_list else out["config"]["layers"])[0]
    assert first["config"]["batch_input_shape"] == [None, 4, 2]


def test_a_bidirectional_that_has_its_own_shape_keeps_it() -> None:
    bi = bidirectional_shape_inside()
    bi["config"]["batch_input_shape"] = [None, 7, 2]
    out = normalize_keras2_config(model(bi), "2.2.0")
    assert out["config"]["layers"][0]["config"]["batch_input_shape"] == [None, 7, 2]


def test_control_tf_keras_builds_no_layers_from_the_shape_inside() -> None:
    import tf_keras

    config = {
        "class_name": "Sequential",
        "config": {"name": "m", "layers": [bidirectional_shape_inside()]},
    }
    assert not tf_keras.models.model_from_config(config).built
    fixed = tf_keras.models.model_from_config(normalize_keras2_config(config, "2.2.0"))
    assert fixed.built and fixed.input_shape == (None, 4, 2)
