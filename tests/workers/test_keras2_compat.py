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
