"""Model files with operation layers and colliding class names (issue 7, kinds 4 and 6).

Keras 3 serialises tensor operations used in a functional model as operation classes from
``keras.src.ops`` (``NotEqual``, ``Add``, ``GetItem``...); tf_keras as ``TFOpLambda`` /
``SlicingOpLambda`` layers naming a TensorFlow function (``math.multiply``). Each builder
writes a real file with the Keras that produces that dialect and returns it with rows and
that Keras's own predictions; the ``*_refused`` builders edit a real file's config into one
that names an operation kscore must refuse.
"""

from __future__ import annotations

import functools
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tests.keras_files import _keras, _save_quietly, _tf_keras
from tests.keras_kinds import BuiltFile

#: The issue's rows: one sentence of three tokens, one all padding (fully masked).
MASKED_ROWS = np.array([[3, 5, 7, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=np.int32)


def _random_weights(model: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in model.get_weights()]
    )


def _predict(model: Any, inputs: list[np.ndarray]) -> np.ndarray:
    return np.asarray(model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0))


# --- Keras 3 operation classes ---------------------------------------------------------------


def embedding_mask_lstm_keras(directory: Path) -> BuiltFile:
    """The issue's example: ``Embedding(mask_zero=True)`` before an LSTM writes a ``NotEqual``
    operation (``keras.src.ops.numpy``) computing the mask."""
    keras = _keras()
    ids = keras.Input((6,), dtype="int32", name="ids")
    embedded = keras.layers.Embedding(10, 4, mask_zero=True, name="embedding")(ids)
    state = keras.layers.LSTM(3, name="lstm")(embedded)
    probs = keras.layers.Dense(2, activation="softmax", name="probs")(state)
    model = keras.Model(ids, probs, name="masked_lstm")
    _random_weights(model, 41)
    path = _save_quietly(model, directory / "masked_lstm.keras")
    return BuiltFile(path, [MASKED_ROWS], [_predict(model, [MASKED_ROWS])])


def keras3_operations(directory: Path, extension: str = ".keras") -> BuiltFile:
    """Keras 3 functional model on two inputs using ``x + y``, ``x * 2``, ``x[:, :2]``,
    ``x[:, 0]``, ``ops.concatenate``, ``ops.sum`` (a reduction), ``ops.cast``, ``ops.relu``
    (``keras.src.ops.nn``) and ``ops.logsumexp`` (``keras.src.ops.math``)."""
    keras = _keras()
    ops = keras.ops
    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b")
    both = a + b
    doubled = both * 2
    head = doubled[:, :2]
    first = ops.expand_dims(doubled[:, 0], -1)
    total = ops.sum(both, axis=-1, keepdims=True)
    positive = ops.cast(total > 0, "float32")
    rectified = ops.relu(a - b)
    pooled = ops.expand_dims(ops.logsumexp(rectified, axis=-1), -1)
    features = ops.concatenate([head, first, total, positive, rectified, pooled], axis=-1)
    probs = keras.layers.Dense(3, activation="softmax", name="probs")(features)
    model = keras.Model([a, b], probs, name="keras3_ops")
    _random_weights(model, 42)
    rng = np.random.default_rng(43)
    inputs = [rng.normal(size=(5, 4)).astype(np.float32) for _ in range(2)]
    path = _save_quietly(model, directory / f"keras3_ops{extension}")
    return BuiltFile(path, inputs, [_predict(model, inputs)])


# --- tf_keras TFOpLambda / SlicingOpLambda ---------------------------------------------------


def tf_keras_operations(directory: Path, extension: str = ".h5") -> BuiltFile:
    """tf_keras functional model using ``x * 2.0`` (TFOpLambda ``math.multiply``), ``x + y``
    (``__operators__.add``), slicing (SlicingOpLambda ``__operators__.getitem``),
    ``tf.reduce_sum`` (``math.reduce_sum``), ``tf.cast`` (``cast``), ``tf.nn.relu`` and
    ``tf.concat``."""
    import tensorflow as tf

    tf_keras = _tf_keras()
    a = tf_keras.Input((4,), name="a")
    b = tf_keras.Input((4,), name="b")
    both = a + b
    doubled = both * 2.0
    head = doubled[:, :2]
    total = tf.reduce_sum(both, axis=-1, keepdims=True)
    positive = tf.cast(total > 0, "float32")
    rectified = tf.nn.relu(a - b)
    features = tf.concat([head, total, positive, rectified], axis=-1)
    probs = tf_keras.layers.Dense(3, activation="softmax", name="probs")(features)
    model = tf_keras.Model([a, b], probs, name="tf_keras_ops")
    _random_weights(model, 44)
    rng = np.random.default_rng(45)
    inputs = [rng.normal(size=(5, 4)).astype(np.float32) for _ in range(2)]
    path = _save_quietly(model, directory / f"tf_keras_ops{extension}")
    return BuiltFile(path, inputs, [_predict(model, inputs)])


# --- refusals: files that name an operation kscore must not run ------------------------------


def tf_keras_multiply_h5(directory: Path) -> Path:
    """x (4,) -> ``x * 2.0`` (TFOpLambda math.multiply) -> Dense "probs"."""
    tf_keras = _tf_keras()
    x = tf_keras.Input((4,), name="x")
    probs = tf_keras.layers.Dense(3, activation="softmax", name="probs")(x * 2.0)
    model = tf_keras.Model(x, probs, name="multiply")
    _random_weights(model, 46)
    return _save_quietly(model, directory / "multiply.h5")


def _edit_h5_layers(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            edit(layer)
        f.attrs["model_config"] = json.dumps(config).encode()


def tf_keras_op_refused_h5(directory: Path, function: str, marker: Path) -> Path:
    """The multiply model with its TFOpLambda retargeted at ``function`` (e.g. io.write_file),
    its call arguments pointing at ``marker``: what an attacker edits with h5py."""
    path = tf_keras_multiply_h5(directory)

    def retarget(layer: dict[str, Any]) -> None:
        if layer["class_name"] == "TFOpLambda":
            layer["config"]["function"] = function
            layer["inbound_nodes"] = [
                ["x", 0, 0, {"filename": str(marker), "contents": "kscore ran this"}]
            ]

    _edit_h5_layers(path, retarget)
    return path


def keras3_op_refused_keras(directory: Path, module: str, class_name: str, marker: Path) -> Path:
    """The Keras 3 operations model with its ``Multiply`` operation replaced by
    ``module.class_name`` (e.g. ``tensorflow.io`` / ``write_file``), arguments at ``marker``:
    what an attacker edits in config.json."""
    source = keras3_operations(directory).path
    path = directory / "keras3_op_refused.keras"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                for layer in config["config"]["layers"]:
                    if layer["class_name"] == "Multiply" and "ops" in str(layer.get("module")):
                        layer.update(module=module, class_name=class_name)
                        layer["registered_name"] = class_name
                        layer["config"].update(filename=str(marker), contents="kscore ran this")
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    source.unlink()
    return path


# --- kind 6: a user's class named like a built-in one ----------------------------------------


@functools.cache
def _tf_keras_attention_class() -> type:
    """A user's own ``Attention``: its own weights and arguments, the built-in's class name."""
    tf_keras = _tf_keras()
    base: Any = tf_keras.layers.Layer

    class Attention(base):
        def __init__(self, units: int = 4, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape: Any) -> None:
            self.w = self.add_weight(name="w", shape=(int(input_shape[-1]), self.units))
            self.v = self.add_weight(name="v", shape=(self.units, 1))

        def call(self, inputs: Any) -> Any:
            import tensorflow as tf

            scores = tf.nn.softmax(tf.matmul(tf.tanh(tf.matmul(inputs, self.w)), self.v), axis=1)
            return tf.reduce_sum(inputs * scores, axis=1)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units}

    return Attention


def custom_attention_h5(directory: Path) -> Path:
    """tf_keras ``.h5`` of a model with a user's ``Attention`` layer "attn" (saved as class
    ``Attention``, loaded by its writer with ``custom_objects``)."""
    tf_keras = _tf_keras()
    attention = _tf_keras_attention_class()
    x = tf_keras.Input((5, 3), name="x")
    pooled = attention(units=4, name="attn")(x)
    probs = tf_keras.layers.Dense(2, activation="softmax", name="probs")(pooled)
    model = tf_keras.Model(x, probs, name="custom_attention")
    _random_weights(model, 47)
    return _save_quietly(model, directory / "custom_attention.h5")


def nested_custom_attention_h5(directory: Path) -> Path:
    """The same user's ``Attention`` one level down, inside a nested model "inner"."""
    tf_keras = _tf_keras()
    attention = _tf_keras_attention_class()
    inner_x = tf_keras.Input((5, 3), name="inner_x")
    inner = tf_keras.Model(inner_x, attention(units=4, name="attn")(inner_x), name="inner")
    x = tf_keras.Input((5, 3), name="x")
    probs = tf_keras.layers.Dense(2, activation="softmax", name="probs")(inner(x))
    model = tf_keras.Model(x, probs, name="nested_custom_attention")
    _random_weights(model, 51)
    return _save_quietly(model, directory / "nested_custom_attention.h5")


def builtin_wrappers_h5(directory: Path) -> Path:
    """tf_keras ``.h5`` with built-in layers whose weights are stored under another name:
    ``Bidirectional(LSTM)``, ``TimeDistributed(Dense)``, a nested model, BatchNormalization."""
    tf_keras = _tf_keras()
    inner_x = tf_keras.Input((5, 4), name="inner_x")
    inner_out = tf_keras.layers.TimeDistributed(tf_keras.layers.Dense(3), name="td")(inner_x)
    inner = tf_keras.Model(inner_x, inner_out, name="inner")
    x = tf_keras.Input((5, 4), name="x")
    seq = tf_keras.layers.Bidirectional(tf_keras.layers.LSTM(2), name="bi")(inner(x))
    normed = tf_keras.layers.BatchNormalization(name="bn")(seq)
    probs = tf_keras.layers.Dense(2, activation="softmax", name="probs")(normed)
    model = tf_keras.Model(x, probs, name="wrappers")
    return _save_quietly(model, directory / "wrappers.h5")


@functools.cache
def _keras3_attention_class() -> type:
    keras = _keras()
    base: Any = keras.layers.Layer

    @keras.saving.register_keras_serializable(package="my_models")
    class Attention(base):
        def __init__(self, units: int = 4, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape: Any) -> None:
            self.w = self.add_weight(name="w", shape=(int(input_shape[-1]), self.units))

        def call(self, inputs: Any) -> Any:
            return keras.ops.sum(keras.ops.matmul(inputs, self.w), axis=1)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units}

    return Attention


def custom_attention_keras(directory: Path) -> Path:
    """Keras 3 ``.keras`` with a user's ``Attention`` "attn" registered as my_models>Attention."""
    keras = _keras()
    attention = _keras3_attention_class()
    x = keras.Input((5, 3), name="x")
    pooled = attention(units=4, name="attn")(x)
    probs = keras.layers.Dense(2, activation="softmax", name="probs")(pooled)
    model = keras.Model(x, probs, name="custom_attention")
    _random_weights(model, 48)
    return _save_quietly(model, directory / "custom_attention.keras")


def builtin_attention_h5(directory: Path) -> BuiltFile:
    """tf_keras ``.h5`` with the built-in ``Attention(use_scale=True)`` (one weight,
    ``scale``): must not be mistaken for a collision."""
    tf_keras = _tf_keras()
    q = tf_keras.Input((5, 3), name="q")
    attended = tf_keras.layers.Attention(use_scale=True, name="attn")([q, q])
    pooled = tf_keras.layers.GlobalAveragePooling1D(name="pool")(attended)
    probs = tf_keras.layers.Dense(2, activation="softmax", name="probs")(pooled)
    model = tf_keras.Model(q, probs, name="builtin_attention")
    _random_weights(model, 49)
    x = np.random.default_rng(50).normal(size=(4, 5, 3)).astype(np.float32)
    path = _save_quietly(model, directory / "builtin_attention.h5")
    return BuiltFile(path, [x], [_predict(model, [x])])


def copy_to(path: Path, directory: Path) -> Path:
    """``path`` copied into ``directory`` (for a second, edited version of one file)."""
    return Path(shutil.copy(path, directory / path.name))
