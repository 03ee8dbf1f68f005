"""Model files of the kinds real users bring (issue: real Keras files, whole kinds).

Each builder writes a file the way the Keras of its era did (keras, tf_keras, and h5py edits
for the older dialects) and returns it with rows and the predictions of the Keras that wrote
it, so a test compares kscore's answer over HTTP with the writer's own, row for row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tests.keras_files import _keras, _save_quietly, _tf_keras


@dataclass(frozen=True)
class BuiltFile:
    """A model file, rows to score (one array per input, model order), and Keras's answer."""

    path: Path
    inputs: list[np.ndarray]
    expected: list[np.ndarray]


def _edit_h5_config(path: Path, edit: Any, keras_version: str | None = None) -> None:
    """Rewrite the ``model_config`` attribute of a Keras .h5 with ``edit(config)``."""
    with h5py.File(path, "r+") as f:
        raw = f.attrs["model_config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        edit(config)
        f.attrs["model_config"] = json.dumps(config).encode()
        if keras_version is not None:
            f.attrs["keras_version"] = keras_version.encode()


def _layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    inner = config["config"]
    return inner["layers"] if isinstance(inner, dict) else inner


def gru_before_reset_after_h5(directory: Path) -> BuiltFile:
    """A GRU as Keras 2.1.2 wrote it: no ``reset_after`` key (the layer predates it).

    Built by tf_keras with ``reset_after=False`` (the only GRU Keras 2.1.2 had), then the key
    is removed from the config and the root ``keras_version`` set to 2.1.2 with h5py.
    """
    tf_keras = _tf_keras()
    rng = np.random.default_rng(7)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.GRU(4, reset_after=False, input_shape=(5, 3), name="gru"),
            tf_keras.layers.Dense(3, activation="softmax", name="probs"),
        ]
    )
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
    x = rng.normal(size=(6, 5, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    path = _save_quietly(model, directory / "gru_keras212.h5")

    def drop_reset_after(config: dict[str, Any]) -> None:
        for layer in _layers(config):
            layer["config"].pop("reset_after", None)

    _edit_h5_config(path, drop_reset_after, keras_version="2.1.2")
    return BuiltFile(path, [x], [expected])


def bidirectional_gru_before_reset_after_h5(directory: Path) -> BuiltFile:
    """The same kind one level down: a ``Bidirectional(GRU)`` from Keras 2.1.2."""
    tf_keras = _tf_keras()
    rng = np.random.default_rng(8)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Bidirectional(
                tf_keras.layers.GRU(3, reset_after=False), input_shape=(4, 2), name="bi"
            ),
            tf_keras.layers.Dense(2, activation="softmax", name="probs"),
        ]
    )
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
    x = rng.normal(size=(5, 4, 2)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    path = _save_quietly(model, directory / "bigru_keras212.h5")

    def drop_reset_after(config: dict[str, Any]) -> None:
        for layer in _layers(config):
            if layer["class_name"] == "Bidirectional":
                layer["config"]["layer"]["config"].pop("reset_after", None)

    _edit_h5_config(path, drop_reset_after, keras_version="2.1.2")
    return BuiltFile(path, [x], [expected])


# Ids past float32's exact range: 16777217 read as float32 is 16777216.
BIG_IDS = [16777217, 16777216, 16777217]
WORDS = ["b", "a", "zzz"]


def string_and_int64_keras(directory: Path) -> BuiltFile:
    """Keras 3 ``.keras``: a string input through StringLookup and an int64 id input through
    IntegerLookup, one-hot encoded and concatenated into a softmax: the answer depends on the
    exact id, so an id that went through float32 scores differently."""
    keras = _keras()
    text = keras.Input(shape=(1,), dtype="string", name="text")
    ids = keras.Input(shape=(1,), dtype="int64", name="ids")
    words = keras.layers.StringLookup(vocabulary=["a", "b"], name="words")(text)
    known = keras.layers.IntegerLookup(vocabulary=[16777216, 16777217], name="known_ids")(ids)
    one_hot_words = keras.layers.CategoryEncoding(3, output_mode="one_hot", name="w1h")(words)
    one_hot_ids = keras.layers.CategoryEncoding(3, output_mode="one_hot", name="i1h")(known)
    both = keras.layers.Concatenate(name="both")([one_hot_words, one_hot_ids])
    probs = keras.layers.Dense(2, activation="softmax", name="probs")(both)
    model = keras.Model([text, ids], probs, name="text_and_ids")
    rng = np.random.default_rng(9)
    model.get_layer("probs").set_weights(
        [rng.normal(size=(6, 2)).astype(np.float32), np.zeros(2, np.float32)]
    )
    import tensorflow as tf

    text_rows = np.array([[w] for w in WORDS], dtype=object)
    id_rows = np.array([[i] for i in BIG_IDS], dtype=np.int64)
    expected = np.asarray(model([tf.constant(text_rows.astype(str)), tf.constant(id_rows)]))
    path = _save_quietly(model, directory / "text_and_ids.keras")
    return BuiltFile(path, [text_rows, id_rows], [expected])


def lstm_without_recurrent_activation_h5(
    directory: Path, keras_version: str, activation: str
) -> BuiltFile:
    """An LSTM whose config lacks ``recurrent_activation``, written by ``keras_version``: its
    default was hard_sigmoid up to Keras 2.2.5 and sigmoid from 2.3.0 (tf_keras: sigmoid).
    Built by tf_keras with ``activation`` (that version's default), then the key removed."""
    tf_keras = _tf_keras()
    rng = np.random.default_rng(10)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.LSTM(
                3, recurrent_activation=activation, input_shape=(4, 2), name="lstm"
            ),
            tf_keras.layers.Dense(2, activation="softmax", name="probs"),
        ]
    )
    model.set_weights([rng.normal(scale=0.8, size=w.shape) for w in model.get_weights()])
    x = rng.normal(size=(5, 4, 2)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    path = _save_quietly(model, directory / f"lstm_{keras_version}.h5")

    def drop(config: dict[str, Any]) -> None:
        for layer in _layers(config):
            layer["config"].pop("recurrent_activation", None)

    _edit_h5_config(path, drop, keras_version=keras_version)
    return BuiltFile(path, [x], [expected])


def unknown_argument_h5(directory: Path) -> Path:
    """A Keras 2.2.4 .h5 whose Dense "probs" carries an argument no Keras has ("units_v2")."""
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [tf_keras.layers.Dense(3, activation="softmax", input_shape=(4,), name="probs")]
    )
    path = _save_quietly(model, directory / "unknown_argument.h5")

    def add(config: dict[str, Any]) -> None:
        for layer in _layers(config):
            if layer["class_name"] == "Dense":
                layer["config"]["units_v2"] = 3

    _edit_h5_config(path, add, keras_version="2.2.4")
    return path
