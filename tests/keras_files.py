"""Builders of real Keras model files with known weights, for tests across the project.

Every builder is ``def name(directory: Path) -> Path``: it writes one file into ``directory``
(a distinct file name per builder, so builders can share a directory) and returns its path.
Builders cache nothing and set every weight explicitly, so the expected predictions are plain
numpy arithmetic (the ``expected_*`` functions below); only the ``LAYER_ZOO`` builders, whose
predictions no test checks, keep Keras's random initial weights.

Keras 3 (``import keras``) and tf_keras 2.x (``import tf_keras``) coexist in one process. They
are imported inside the builders so that importing this module (for its constants) stays cheap.

Some files cannot be written by any Keras installed here (standalone Keras 2.2 / 2.3, Keras 2
``CuDNNLSTM``). Those are written with h5py in the exact layout those versions produced
(``keras/engine/saving.py`` with ``H5Dict`` in Keras 2.2.3-2.3.1): root attributes
``keras_version``, ``backend``, ``model_config`` and ``training_config`` as ``bytes``; a
``model_weights`` group whose attributes ``layer_names``, ``backend`` and ``keras_version`` are
bytes; one group per layer with a ``weight_names`` attribute (bytes) and one dataset per weight
at ``<layer>/<layer>/<weight>:0``.
"""

from __future__ import annotations

import functools
import io
import json
import re
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

# --- known weights ---------------------------------------------------------------------------

#: Dense(3, softmax) on 4 float inputs, shared by every "dense" builder.
DENSE_KERNEL = np.array(
    [
        [0.2, -0.1, 0.4],
        [0.5, 0.3, -0.2],
        [-0.3, 0.8, 0.1],
        [0.1, -0.4, 0.6],
    ],
    dtype=np.float32,
)
DENSE_BIAS = np.array([0.05, -0.1, 0.2], dtype=np.float32)

#: A second set of weights for the same Dense(3, softmax): a deployment that moves to it.
DENSE_B_KERNEL = np.array(
    [
        [-0.6, 0.3, 0.2],
        [0.1, -0.7, 0.4],
        [0.9, 0.2, -0.5],
        [-0.2, 0.5, 0.3],
    ],
    dtype=np.float32,
)
DENSE_B_BIAS = np.array([-0.2, 0.3, 0.0], dtype=np.float32)

#: Dense(1, sigmoid) on 4 float inputs (binary classifier).
SIGMOID_KERNEL = np.array([[0.7], [-0.4], [0.25], [-0.9]], dtype=np.float32)
SIGMOID_BIAS = np.array([0.1], dtype=np.float32)

#: LSTM(4) on sequences of 5 steps x 3 features, then Dense(1, sigmoid). Keras gate order i, f, c, o.
LSTM_TIMESTEPS = 5
LSTM_FEATURES = 3
LSTM_UNITS = 4
_lstm_rng = np.random.default_rng(20240611)
LSTM_KERNEL = _lstm_rng.uniform(-0.5, 0.5, (LSTM_FEATURES, 4 * LSTM_UNITS)).astype(np.float32)
LSTM_RECURRENT_KERNEL = _lstm_rng.uniform(-0.5, 0.5, (LSTM_UNITS, 4 * LSTM_UNITS)).astype(
    np.float32
)
LSTM_BIAS = _lstm_rng.uniform(-0.2, 0.2, (4 * LSTM_UNITS,)).astype(np.float32)
LSTM_DENSE_KERNEL = _lstm_rng.uniform(-1.0, 1.0, (LSTM_UNITS, 1)).astype(np.float32)
LSTM_DENSE_BIAS = np.array([0.05], dtype=np.float32)
#: How the CuDNNLSTM file splits LSTM_BIAS into input and recurrent biases (they sum to it).
#: Deliberately uneven: a converter must add the halves, not assume 50/50.
_CUDNN_RECURRENT_BIAS = _lstm_rng.uniform(-0.3, 0.3, (4 * LSTM_UNITS,)).astype(np.float32)
CUDNN_LSTM_BIAS = np.concatenate([LSTM_BIAS - _CUDNN_RECURRENT_BIAS, _CUDNN_RECURRENT_BIAS])

#: Keras 2.3 Dense(3, linear) -> BatchNormalization -> Activation(softmax) on 4 float inputs.
BN_GAMMA = np.array([1.5, 0.5, -1.0], dtype=np.float32)
BN_BETA = np.array([0.1, -0.2, 0.3], dtype=np.float32)
BN_MOVING_MEAN = np.array([0.2, -0.3, 0.1], dtype=np.float32)
BN_MOVING_VARIANCE = np.array([0.5, 2.0, 1.0], dtype=np.float32)
BN_EPSILON = 0.001

#: Small CNN: 8x8x1 image -> Conv2D(4, 3, relu) -> Flatten -> Dense(10, softmax).
_cnn_rng = np.random.default_rng(7)
CNN_CONV_KERNEL = _cnn_rng.normal(0.0, 0.5, (3, 3, 1, 4)).astype(np.float32)
CNN_CONV_BIAS = _cnn_rng.normal(0.0, 0.1, (4,)).astype(np.float32)
CNN_DENSE_KERNEL = _cnn_rng.normal(0.0, 0.1, (6 * 6 * 4, 10)).astype(np.float32)
CNN_DENSE_BIAS = _cnn_rng.normal(0.0, 0.1, (10,)).astype(np.float32)

#: Text model: string -> TextVectorization(int, length 4) -> Embedding(7, 2) -> mean -> Dense(2).
TEXT_VOCABULARY = ["good", "bad", "movie", "great", "awful"]
TEXT_SEQUENCE_LENGTH = 4
# Row 0 is padding, row 1 the out-of-vocabulary token, then the vocabulary in order.
TEXT_EMBEDDINGS = np.array(
    [[0.0, 0.0], [0.1, 0.1], [1.0, -1.0], [-1.0, 1.0], [0.2, 0.2], [1.5, -0.5], [-1.5, 0.5]],
    dtype=np.float32,
)
TEXT_DENSE_KERNEL = np.array([[2.0, -2.0], [-1.0, 1.0]], dtype=np.float32)
TEXT_DENSE_BIAS = np.array([0.0, 0.1], dtype=np.float32)

#: Multi-input / multi-output: inputs a (3,) and b (2,), concatenated to 5 features; outputs
#: "score" Dense(1, sigmoid) and "kind" Dense(3, softmax).
MULTI_SCORE_KERNEL = np.array([[0.3], [-0.2], [0.5], [0.1], [-0.6]], dtype=np.float32)
MULTI_SCORE_BIAS = np.array([-0.05], dtype=np.float32)
MULTI_KIND_KERNEL = np.array(
    [
        [0.1, 0.2, -0.3],
        [-0.4, 0.5, 0.6],
        [0.7, -0.8, 0.9],
        [0.2, 0.1, -0.1],
        [-0.3, 0.4, 0.2],
    ],
    dtype=np.float32,
)
MULTI_KIND_BIAS = np.array([0.0, 0.1, -0.1], dtype=np.float32)


# --- expected predictions (numpy only) -------------------------------------------------------


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed in float64."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic sigmoid, computed in float64."""
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))
    return out


def expected_dense_softmax(x: Any) -> np.ndarray:
    """What every dense builder's model predicts: softmax(x @ DENSE_KERNEL + DENSE_BIAS)."""
    x = np.asarray(x, dtype=np.float64)
    return softmax(x @ DENSE_KERNEL + DENSE_BIAS)


def expected_dense_b_softmax(x: Any) -> np.ndarray:
    """What ``tf_keras_h5_b_file`` predicts: softmax(x @ DENSE_B_KERNEL + DENSE_B_BIAS)."""
    x = np.asarray(x, dtype=np.float64)
    return softmax(x @ DENSE_B_KERNEL + DENSE_B_BIAS)


def expected_sigmoid(x: Any) -> np.ndarray:
    """What ``sigmoid_binary_h5_file`` predicts, shape (n, 1)."""
    x = np.asarray(x, dtype=np.float64)
    return sigmoid(x @ SIGMOID_KERNEL + SIGMOID_BIAS)


def expected_lstm_sigmoid(x: Any) -> np.ndarray:
    """What ``tf_keras_lstm_h5_file`` (and a correctly converted CuDNNLSTM file) predicts."""
    x = np.asarray(x, dtype=np.float64)
    u = LSTM_UNITS
    h = np.zeros((x.shape[0], u))
    c = np.zeros((x.shape[0], u))
    for t in range(x.shape[1]):
        z = x[:, t, :] @ LSTM_KERNEL + h @ LSTM_RECURRENT_KERNEL + LSTM_BIAS
        i, f, g, o = (z[:, k * u : (k + 1) * u] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    return sigmoid(h @ LSTM_DENSE_KERNEL + LSTM_DENSE_BIAS)


def expected_keras23_batchnorm(x: Any) -> np.ndarray:
    """What ``keras23_batchnorm_h5_file`` predicts (BatchNormalization in inference mode)."""
    h = np.asarray(x, dtype=np.float64) @ DENSE_KERNEL + DENSE_BIAS
    normed = (h - BN_MOVING_MEAN) / np.sqrt(BN_MOVING_VARIANCE.astype(np.float64) + BN_EPSILON)
    return softmax(BN_GAMMA * normed + BN_BETA)


def expected_small_cnn(x: Any) -> np.ndarray:
    """What ``small_cnn_keras_file`` predicts for images of shape (n, 8, 8, 1)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    conv = np.zeros((n, 6, 6, 4))
    for r in range(6):
        for c in range(6):
            patch = x[:, r : r + 3, c : c + 3, :]  # (n, 3, 3, 1)
            conv[:, r, c, :] = np.tensordot(patch, CNN_CONV_KERNEL, axes=([1, 2, 3], [0, 1, 2]))
    conv = np.maximum(conv + CNN_CONV_BIAS, 0.0)
    return softmax(conv.reshape(n, -1) @ CNN_DENSE_KERNEL + CNN_DENSE_BIAS)


_PUNCTUATION = re.compile(r"[!\"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~']")


def text_token_ids(text: str) -> list[int]:
    """The ids TextVectorization gives ``text``: lower-cased, punctuation stripped, padded."""
    lookup = {word: i + 2 for i, word in enumerate(TEXT_VOCABULARY)}
    words = _PUNCTUATION.sub("", text.lower()).split()
    ids = [lookup.get(word, 1) for word in words][:TEXT_SEQUENCE_LENGTH]
    return ids + [0] * (TEXT_SEQUENCE_LENGTH - len(ids))


def expected_text_softmax(texts: Sequence[str]) -> np.ndarray:
    """What ``text_vectorization_keras_file`` predicts for a list of strings, shape (n, 2)."""
    pooled = np.array([TEXT_EMBEDDINGS[text_token_ids(t)].mean(axis=0) for t in texts])
    return softmax(pooled @ TEXT_DENSE_KERNEL + TEXT_DENSE_BIAS)


def expected_multi_io(a: Any, b: Any) -> dict[str, np.ndarray]:
    """What ``multi_io_keras_file`` predicts: ``{"score": (n, 1), "kind": (n, 3)}``."""
    ab = np.concatenate([np.asarray(a, np.float64), np.asarray(b, np.float64)], axis=-1)
    return {
        "score": sigmoid(ab @ MULTI_SCORE_KERNEL + MULTI_SCORE_BIAS),
        "kind": softmax(ab @ MULTI_KIND_KERNEL + MULTI_KIND_BIAS),
    }


def keras_lstm_to_cudnn(
    kernel: np.ndarray, recurrent_kernel: np.ndarray, units: int
) -> tuple[np.ndarray, np.ndarray]:
    """LSTM kernels in the layout Keras 2's CuDNNLSTM saved (inverse of its loader's conversion).

    CuDNNLSTM fed each gate's slice of its saved kernel, flattened in C order, to cuDNN as a
    (units, input_dim) matrix; Keras 2's ``_convert_rnn_weights`` undoes that per gate with
    ``k.T.reshape(k.shape, order="F")`` (input kernels) and ``k.T`` (recurrent kernels).
    """
    kernels = np.hstack([k.T.reshape(k.shape, order="C") for k in np.hsplit(kernel, 4)]).astype(
        np.float32
    )
    recurrent = np.hstack([k.T for k in np.hsplit(recurrent_kernel, 4)]).astype(np.float32)
    assert kernels.shape == (kernel.shape[0], 4 * units)
    return kernels, recurrent


# --- small helpers ---------------------------------------------------------------------------


def _quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ and Python logging out of test output."""
    import logging
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


@functools.cache
def _tf_keras() -> Any:
    _quiet_tensorflow()
    import tf_keras

    return tf_keras


@functools.cache
def _keras() -> Any:
    _quiet_tensorflow()
    import keras

    return keras


def _save_quietly(model: Any, path: Path) -> Path:
    """``model.save(path)`` without the "HDF5 is legacy" warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(path))
    return path


# --- Keras 3 ---------------------------------------------------------------------------------


def _keras3_dense_model() -> Any:
    keras = _keras()
    x = keras.Input(shape=(4,), name="x")
    probs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(x, probs, name="dense_softmax")
    model.get_layer("probs").set_weights([DENSE_KERNEL, DENSE_BIAS])
    return model


def keras3_keras_file(directory: Path) -> Path:
    """Keras 3 ``.keras`` zip: Input x (4,) -> Dense "probs" (3, softmax)."""
    model = _keras3_dense_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return _save_quietly(model, directory / "keras3_dense.keras")


def keras3_h5_file(directory: Path) -> Path:
    """Keras 3 writing legacy ``.h5``: ``batch_shape`` and DTypePolicy dicts in the config."""
    model = _keras3_dense_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return _save_quietly(model, directory / "keras3_dense.h5")


def keras3_sequential_h5_file(directory: Path) -> Path:
    """Keras 3 Sequential in legacy ``.h5`` (explicit InputLayer named "x")."""
    keras = _keras()
    model = keras.Sequential(
        [
            keras.Input(shape=(4,), name="x"),
            keras.layers.Dense(3, activation="softmax", name="probs"),
        ],
        name="dense_softmax_seq",
    )
    model.get_layer("probs").set_weights([DENSE_KERNEL, DENSE_BIAS])
    return _save_quietly(model, directory / "keras3_sequential_dense.h5")


def keras3_weights_only_h5_file(directory: Path) -> Path:
    """Keras 3 ``save_weights()`` output (``.weights.h5``): weights, no model config."""
    model = _keras3_dense_model()
    path = directory / "keras3_dense.weights.h5"
    model.save_weights(str(path))
    return path


def small_cnn_keras_file(directory: Path) -> Path:
    """Keras 3 ``.keras``: image (8, 8, 1) -> Conv2D(4, 3, relu) -> Flatten -> Dense(10, softmax)."""
    keras = _keras()
    image = keras.Input(shape=(8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = keras.layers.Flatten(name="flatten")(x)
    digits = keras.layers.Dense(10, activation="softmax", name="digits")(x)
    model = keras.Model(image, digits, name="small_cnn")
    model.get_layer("conv").set_weights([CNN_CONV_KERNEL, CNN_CONV_BIAS])
    model.get_layer("digits").set_weights([CNN_DENSE_KERNEL, CNN_DENSE_BIAS])
    return _save_quietly(model, directory / "small_cnn.keras")


def text_vectorization_keras_file(directory: Path) -> Path:
    """Keras 3 ``.keras``: string (None, 1) -> TextVectorization -> Embedding -> mean -> Dense(2)."""
    keras = _keras()
    text = keras.Input(shape=(1,), dtype="string", name="text")
    vectorize = keras.layers.TextVectorization(
        output_mode="int",
        output_sequence_length=TEXT_SEQUENCE_LENGTH,
        vocabulary=TEXT_VOCABULARY,
        name="vectorize",
    )
    x = vectorize(text)
    x = keras.layers.Embedding(len(TEXT_EMBEDDINGS), 2, name="embed")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    sentiment = keras.layers.Dense(2, activation="softmax", name="sentiment")(x)
    model = keras.Model(text, sentiment, name="text_classifier")
    model.get_layer("embed").set_weights([TEXT_EMBEDDINGS])
    model.get_layer("sentiment").set_weights([TEXT_DENSE_KERNEL, TEXT_DENSE_BIAS])
    return _save_quietly(model, directory / "text_classifier.keras")


def multi_io_keras_file(directory: Path) -> Path:
    """Keras 3 ``.keras``: inputs "a" (3,), "b" (2,); outputs "score" (1, sigmoid), "kind" (3)."""
    keras = _keras()
    a = keras.Input(shape=(3,), name="a")
    b = keras.Input(shape=(2,), name="b")
    ab = keras.layers.Concatenate(name="ab")([a, b])
    score = keras.layers.Dense(1, activation="sigmoid", name="score")(ab)
    kind = keras.layers.Dense(3, activation="softmax", name="kind")(ab)
    model = keras.Model([a, b], [score, kind], name="multi_io")
    model.get_layer("score").set_weights([MULTI_SCORE_KERNEL, MULTI_SCORE_BIAS])
    model.get_layer("kind").set_weights([MULTI_KIND_KERNEL, MULTI_KIND_BIAS])
    return _save_quietly(model, directory / "multi_io.keras")


def lambda_keras_file(directory: Path) -> Path:
    """Keras 3 ``.keras`` with a Lambda layer "my_lambda" (serialized bytecode): unsafe."""
    keras = _keras()
    x = keras.Input(shape=(4,), name="x")
    logits = keras.layers.Dense(3, name="logits")(x)
    doubled = keras.layers.Lambda(lambda t: t * 2.0, name="my_lambda")(logits)
    model = keras.Model(x, doubled, name="with_lambda")
    model.get_layer("logits").set_weights([DENSE_KERNEL, DENSE_BIAS])
    return _save_quietly(model, directory / "with_lambda.keras")


@functools.cache
def _doubler_layer_class() -> type:
    # Registered once per process: Keras refuses to register the same name twice.
    keras = _keras()
    layer_base: Any = keras.layers.Layer

    @keras.saving.register_keras_serializable(package="kscore_tests")
    class Doubler(layer_base):
        def call(self, inputs: Any) -> Any:
            return inputs * 2.0

    return Doubler


def custom_layer_keras_file(directory: Path) -> Path:
    """Keras 3 ``.keras`` with a registered custom layer "doubler" (kscore_tests>Doubler): unsafe."""
    keras = _keras()
    doubler_class = _doubler_layer_class()
    x = keras.Input(shape=(4,), name="x")
    logits = keras.layers.Dense(3, name="logits")(x)
    doubled = doubler_class(name="doubler")(logits)
    model = keras.Model(x, doubled, name="with_custom_layer")
    model.get_layer("logits").set_weights([DENSE_KERNEL, DENSE_BIAS])
    return _save_quietly(model, directory / "with_custom_layer.keras")


# --- tf_keras 2.x ----------------------------------------------------------------------------


def tf_keras_h5_file(directory: Path) -> Path:
    """tf_keras functional ``.h5`` compiled with Adam (``Custom>Adam`` in training_config)."""
    return _tf_keras_dense_h5(directory / "tf_keras_dense.h5", DENSE_KERNEL, DENSE_BIAS)


def tf_keras_h5_b_file(directory: Path) -> Path:
    """``tf_keras_h5_file``'s model with the B weights (``expected_dense_b_softmax``)."""
    return _tf_keras_dense_h5(directory / "tf_keras_dense_b.h5", DENSE_B_KERNEL, DENSE_B_BIAS)


def _tf_keras_dense_h5(path: Path, kernel: np.ndarray, bias: np.ndarray) -> Path:
    tf_keras = _tf_keras()
    x = tf_keras.Input(shape=(4,), name="x")
    probs = tf_keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = tf_keras.Model(x, probs, name="dense_softmax")
    model.get_layer("probs").set_weights([kernel, bias])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return _save_quietly(model, path)


def tf_keras_sequential_h5_file(directory: Path) -> Path:
    """tf_keras Sequential ``.h5``: Dense "probs" (3, softmax) with ``input_shape=(4,)``."""
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [tf_keras.layers.Dense(3, activation="softmax", input_shape=(4,), name="probs")],
        name="dense_softmax_seq",
    )
    model.get_layer("probs").set_weights([DENSE_KERNEL, DENSE_BIAS])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return _save_quietly(model, directory / "tf_keras_sequential_dense.h5")


def sigmoid_binary_h5_file(directory: Path) -> Path:
    """tf_keras Sequential ``.h5`` binary classifier: Dense "score" (1, sigmoid) on 4 floats."""
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [tf_keras.layers.Dense(1, activation="sigmoid", input_shape=(4,), name="score")],
        name="binary",
    )
    model.get_layer("score").set_weights([SIGMOID_KERNEL, SIGMOID_BIAS])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return _save_quietly(model, directory / "sigmoid_binary.h5")


def tf_keras_lstm_h5_file(directory: Path) -> Path:
    """tf_keras ``.h5``: LSTM "lstm" (4) on (5, 3) -> Dense "score" (1, sigmoid).

    Its config carries ``time_major``, which Keras 3 rejects, so only tf_keras can load it.
    """
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [
            tf_keras.layers.LSTM(
                LSTM_UNITS, input_shape=(LSTM_TIMESTEPS, LSTM_FEATURES), name="lstm"
            ),
            tf_keras.layers.Dense(1, activation="sigmoid", name="score"),
        ],
        name="sequence_classifier",
    )
    model.get_layer("lstm").set_weights([LSTM_KERNEL, LSTM_RECURRENT_KERNEL, LSTM_BIAS])
    model.get_layer("score").set_weights([LSTM_DENSE_KERNEL, LSTM_DENSE_BIAS])
    return _save_quietly(model, directory / "tf_keras_lstm.h5")


def lambda_h5_file(directory: Path) -> Path:
    """tf_keras functional ``.h5`` with a Lambda layer "my_lambda": unsafe.

    tf_keras runs a Lambda's bytecode while loading an ``.h5`` even with ``safe_mode=True``.
    """
    tf_keras = _tf_keras()
    x = tf_keras.Input(shape=(4,), name="x")
    logits = tf_keras.layers.Dense(3, name="logits")(x)
    doubled = tf_keras.layers.Lambda(lambda t: t * 2.0, name="my_lambda")(logits)
    model = tf_keras.Model(x, doubled, name="with_lambda")
    model.get_layer("logits").set_weights([DENSE_KERNEL, DENSE_BIAS])
    return _save_quietly(model, directory / "with_lambda.h5")


def weights_only_h5_file(directory: Path) -> Path:
    """tf_keras ``save_weights()`` to ``.h5``: weights and layer names, no model_config."""
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [tf_keras.layers.Dense(3, activation="softmax", input_shape=(4,), name="probs")]
    )
    model.get_layer("probs").set_weights([DENSE_KERNEL, DENSE_BIAS])
    path = directory / "weights_only.h5"
    model.save_weights(str(path))
    return path


# --- Keras 2.x standalone dialects, written with h5py ----------------------------------------


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _keras2_glorot_uniform() -> dict[str, Any]:
    # Keras 2.x serialized glorot_uniform as the VarianceScaling it is.
    return {
        "class_name": "VarianceScaling",
        "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None},
    }


def _keras2_layer_base(
    name: str, *, batch_input_shape: list[int | None] | None, dtype_on_every_layer: bool
) -> dict[str, Any]:
    # Keras 2.x Layer.get_config: batch_input_shape and dtype only when the layer was given an
    # input shape (the first layer of a Sequential); Keras 2.3 writes dtype on every layer.
    config: dict[str, Any] = {"name": name, "trainable": True}
    if batch_input_shape is not None:
        config["batch_input_shape"] = batch_input_shape
    if batch_input_shape is not None or dtype_on_every_layer:
        config["dtype"] = "float32"
    return config


def _keras2_dense_config(
    name: str,
    units: int,
    activation: str,
    *,
    batch_input_shape: list[int | None] | None = None,
    dtype_on_every_layer: bool = False,
) -> dict[str, Any]:
    config = _keras2_layer_base(
        name, batch_input_shape=batch_input_shape, dtype_on_every_layer=dtype_on_every_layer
    )
    config.update(
        {
            "units": units,
            "activation": activation,
            "use_bias": True,
            "kernel_initializer": _keras2_glorot_uniform(),
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "activity_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
        }
    )
    return {"class_name": "Dense", "config": config}


def _keras2_training_config(keras_version: str, loss: str) -> dict[str, Any]:
    # Keras 2.3 renamed the optimizer's "lr" to "learning_rate". Floats are what float32
    # variables read back as, which is what Keras 2 wrote.
    lr_key = "learning_rate" if _version_tuple(keras_version) >= (2, 3) else "lr"
    return {
        "optimizer_config": {
            "class_name": "Adam",
            "config": {
                lr_key: 0.0010000000474974513,
                "beta_1": 0.8999999761581421,
                "beta_2": 0.9990000128746033,
                "decay": 0.0,
                "epsilon": 1e-07,
                "amsgrad": False,
            },
        },
        "loss": loss,
        "metrics": ["accuracy"],
        "weighted_metrics": None,
        "sample_weight_mode": None,
        "loss_weights": None,
    }


def _write_keras2_h5(
    path: Path,
    *,
    keras_version: str,
    model_config: dict[str, Any],
    layer_weights: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]],
    training_config: dict[str, Any] | None,
) -> Path:
    """Write an HDF5 file the way Keras 2.1-2.3's ``save_model`` did (bytes attributes)."""
    # h5py 2.x stored bytes as fixed-length strings ("S" dtype), which h5py 3 reads back as
    # numpy.bytes_; h5py 3 would store plain bytes as variable-length strings read as str.
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = np.bytes_(keras_version.encode("utf8"))
        f.attrs["backend"] = np.bytes_(b"tensorflow")
        f.attrs["model_config"] = np.bytes_(json.dumps(model_config).encode("utf-8"))
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = np.array([name.encode("utf8") for name, _ in layer_weights])
        group.attrs["backend"] = np.bytes_(b"tensorflow")
        group.attrs["keras_version"] = np.bytes_(keras_version.encode("utf8"))
        for layer_name, weights in layer_weights:
            layer_group = group.create_group(layer_name)
            names = [weight_name.encode("utf8") for weight_name, _ in weights]
            # An empty list was stored as an empty float64 array, as h5py does with [].
            layer_group.attrs["weight_names"] = np.array(names) if names else np.zeros((0,))
            for weight_name, value in weights:
                layer_group.create_dataset(weight_name, data=np.asarray(value, np.float32))
        if training_config is not None:
            f.attrs["training_config"] = np.bytes_(json.dumps(training_config).encode("utf8"))
    return path


def keras2_standalone_h5_file(
    directory: Path, keras_version: str = "2.2.4", *, sequential_as_list: bool | None = None
) -> Path:
    """Standalone Keras 2.x Sequential ``.h5``: Dense "dense_1" (3, softmax) on 4 floats.

    Written as ``keras.models.save_model`` of that version wrote it. Keras <= 2.2.2 stored a
    Sequential config as a bare list of layer configs; Keras 2.2.3 (#11133) switched to
    ``{"name", "layers"}``. ``sequential_as_list`` overrides what ``keras_version`` implies.
    """
    if sequential_as_list is None:
        sequential_as_list = _version_tuple(keras_version) < (2, 2, 3)
    layers = [_keras2_dense_config("dense_1", 3, "softmax", batch_input_shape=[None, 4])]
    config: Any = layers if sequential_as_list else {"name": "sequential_1", "layers": layers}
    tag = keras_version.replace(".", "")
    return _write_keras2_h5(
        directory / f"keras{tag}_dense{'_list' if sequential_as_list else ''}.h5",
        keras_version=keras_version,
        model_config={"class_name": "Sequential", "config": config},
        layer_weights=[
            ("dense_1", [("dense_1/kernel:0", DENSE_KERNEL), ("dense_1/bias:0", DENSE_BIAS)])
        ],
        training_config=_keras2_training_config(keras_version, "categorical_crossentropy"),
    )


def keras23_batchnorm_h5_file(directory: Path) -> Path:
    """Keras 2.3.1 Sequential ``.h5``: Dense(3) -> BatchNormalization -> Activation(softmax)."""
    keras_version = "2.3.1"
    batchnorm = _keras2_layer_base(
        "batch_normalization_1", batch_input_shape=None, dtype_on_every_layer=True
    )
    batchnorm.update(
        {
            "axis": -1,
            "momentum": 0.99,
            "epsilon": BN_EPSILON,
            "center": True,
            "scale": True,
            "beta_initializer": {"class_name": "Zeros", "config": {}},
            "gamma_initializer": {"class_name": "Ones", "config": {}},
            "moving_mean_initializer": {"class_name": "Zeros", "config": {}},
            "moving_variance_initializer": {"class_name": "Ones", "config": {}},
            "beta_regularizer": None,
            "gamma_regularizer": None,
            "beta_constraint": None,
            "gamma_constraint": None,
        }
    )
    activation = _keras2_layer_base(
        "activation_1", batch_input_shape=None, dtype_on_every_layer=True
    )
    activation["activation"] = "softmax"
    layers = [
        _keras2_dense_config(
            "dense_1", 3, "linear", batch_input_shape=[None, 4], dtype_on_every_layer=True
        ),
        {"class_name": "BatchNormalization", "config": batchnorm},
        {"class_name": "Activation", "config": activation},
    ]
    bn = "batch_normalization_1"
    return _write_keras2_h5(
        directory / "keras231_batchnorm.h5",
        keras_version=keras_version,
        model_config={
            "class_name": "Sequential",
            "config": {"name": "sequential_1", "layers": layers},
        },
        layer_weights=[
            ("dense_1", [("dense_1/kernel:0", DENSE_KERNEL), ("dense_1/bias:0", DENSE_BIAS)]),
            (
                bn,
                [
                    (f"{bn}/gamma:0", BN_GAMMA),
                    (f"{bn}/beta:0", BN_BETA),
                    (f"{bn}/moving_mean:0", BN_MOVING_MEAN),
                    (f"{bn}/moving_variance:0", BN_MOVING_VARIANCE),
                ],
            ),
            ("activation_1", []),
        ],
        training_config=_keras2_training_config(keras_version, "categorical_crossentropy"),
    )


def cudnn_lstm_h5_file(directory: Path) -> Path:
    """Keras 2.2.4 ``.h5`` with ``CuDNNLSTM`` "cu_dnnlstm_1" (4) on (5, 3) -> Dense(1, sigmoid).

    The config is what Keras 2.2.4's CuDNNLSTM.get_config wrote (no activation, dropout,
    implementation... keys). Weights are LSTM_* in CuDNN layout: kernels re-laid out per gate
    (see ``keras_lstm_to_cudnn``) and a bias of shape (8 * units,) = input biases then recurrent
    biases (``CUDNN_LSTM_BIAS``). Converted to a plain LSTM it predicts ``expected_lstm_sigmoid``.
    """
    keras_version = "2.2.4"
    lstm = _keras2_layer_base(
        "cu_dnnlstm_1",
        batch_input_shape=[None, LSTM_TIMESTEPS, LSTM_FEATURES],
        dtype_on_every_layer=False,
    )
    lstm.update(
        {
            "return_sequences": False,
            "return_state": False,
            "go_backwards": False,
            "stateful": False,
            "units": LSTM_UNITS,
            "kernel_initializer": _keras2_glorot_uniform(),
            "recurrent_initializer": {
                "class_name": "Orthogonal",
                "config": {"gain": 1.0, "seed": None},
            },
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "unit_forget_bias": True,
            "kernel_regularizer": None,
            "recurrent_regularizer": None,
            "bias_regularizer": None,
            "activity_regularizer": None,
            "kernel_constraint": None,
            "recurrent_constraint": None,
            "bias_constraint": None,
        }
    )
    kernel, recurrent = keras_lstm_to_cudnn(LSTM_KERNEL, LSTM_RECURRENT_KERNEL, LSTM_UNITS)
    return _write_keras2_h5(
        directory / "keras224_cudnn_lstm.h5",
        keras_version=keras_version,
        model_config={
            "class_name": "Sequential",
            "config": {
                "name": "sequential_1",
                "layers": [
                    {"class_name": "CuDNNLSTM", "config": lstm},
                    _keras2_dense_config("dense_1", 1, "sigmoid"),
                ],
            },
        },
        layer_weights=[
            (
                "cu_dnnlstm_1",
                [
                    ("cu_dnnlstm_1/kernel:0", kernel),
                    ("cu_dnnlstm_1/recurrent_kernel:0", recurrent),
                    ("cu_dnnlstm_1/bias:0", CUDNN_LSTM_BIAS),
                ],
            ),
            (
                "dense_1",
                [("dense_1/kernel:0", LSTM_DENSE_KERNEL), ("dense_1/bias:0", LSTM_DENSE_BIAS)],
            ),
        ],
        training_config=_keras2_training_config(keras_version, "binary_crossentropy"),
    )


# --- many layer kinds (weights left random: for signatures and output shapes) -----------------


def tf_keras_cnn_h5_file(directory: Path) -> Path:
    """tf_keras Sequential ``.h5``: strided Conv2D, pooling, BatchNorm, Dense(2, softmax), Dropout."""
    layers = _tf_keras().layers
    model = _tf_keras().Sequential(
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
    )
    return _save_quietly(model, directory / "tf_keras_cnn.h5")


def tf_keras_embedding_rnn_h5_file(directory: Path) -> Path:
    """tf_keras Sequential ``.h5``: Embedding on (6,) -> LSTM (sequences) -> GRU -> Dense(1)."""
    layers = _tf_keras().layers
    model = _tf_keras().Sequential(
        [
            layers.Embedding(20, 4, input_shape=(6,)),
            layers.LSTM(5, return_sequences=True),
            layers.GRU(3),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    return _save_quietly(model, directory / "tf_keras_embedding_rnn.h5")


def tf_keras_conv1d_h5_file(directory: Path) -> Path:
    """tf_keras Sequential ``.h5``: causal Conv1D, pooling, up-sampling, padding, cropping,
    Reshape(-1), Dense(2) then a Softmax layer."""
    layers = _tf_keras().layers
    model = _tf_keras().Sequential(
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
    )
    return _save_quietly(model, directory / "tf_keras_conv1d.h5")


def tf_keras_image_two_outputs_h5_file(directory: Path) -> Path:
    """tf_keras functional ``.h5``: image "img" (7, 7, 3) through depthwise, separable and
    transposed convolutions; outputs "a" (Dense tanh) and "b" (Activation sigmoid)."""
    tk = _tf_keras()
    layers = tk.layers
    x = tk.Input((7, 7, 3), name="img")
    y = layers.DepthwiseConv2D(3, depth_multiplier=2)(x)
    y = layers.SeparableConv2D(4, 2, strides=2, padding="same")(y)
    y = layers.Conv2DTranspose(2, 3, strides=2)(y)
    y = layers.ZeroPadding2D(((1, 0), (0, 2)))(y)
    y = layers.Cropping2D(1)(y)
    y = layers.UpSampling2D((2, 1))(y)
    a = layers.Dense(3, activation="tanh", name="a")(layers.GlobalMaxPooling2D()(y))
    b = layers.Activation("sigmoid", name="b")(layers.GlobalAveragePooling2D()(y))
    return _save_quietly(tk.Model(x, [a, b]), directory / "tf_keras_image_two_outputs.h5")


def tf_keras_sequence_two_outputs_h5_file(directory: Path) -> Path:
    """tf_keras functional ``.h5``: "seq" (10,) reshaped to (5, 2), Bidirectional LSTM,
    TimeDistributed Dense, Permute; outputs a Dense(2, softmax) and an Add of a Concatenate."""
    tk = _tf_keras()
    layers = tk.layers
    s = tk.Input((10,), name="seq")
    r = layers.Reshape((5, 2))(s)
    h = layers.Bidirectional(layers.LSTM(3, return_sequences=True))(r)
    h = layers.TimeDistributed(layers.Dense(4))(h)
    out = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling1D()(h))
    side = layers.Dense(1)(layers.Flatten()(layers.Permute((2, 1))(r)))
    merged = layers.Concatenate()([out, side])
    model = tk.Model(s, [out, layers.Add()([merged, merged])])
    return _save_quietly(model, directory / "tf_keras_sequence_two_outputs.h5")


def keras3_image_keras_file(directory: Path) -> Path:
    """Keras 3 ``.keras``: image "img" (7, 7, 3), Conv2D, pooling, Conv2DTranspose, global
    pooling with keepdims, Flatten, Dense(3, softmax)."""
    keras = _keras()
    layers = keras.layers
    x = keras.Input((7, 7, 3), name="img")
    y = layers.Conv2D(4, 3, padding="same")(x)
    y = layers.MaxPooling2D(2, strides=1)(y)
    y = layers.Conv2DTranspose(2, 3, strides=2, padding="same")(y)
    y = layers.GlobalAveragePooling2D(keepdims=True)(y)
    y = layers.Flatten()(y)
    model = keras.Model(x, layers.Dense(3, activation="softmax")(y))
    return _save_quietly(model, directory / "keras3_image.keras")


def keras3_attention_keras_file(directory: Path) -> Path:
    """Keras 3 ``.keras``: int32 "tokens" (6,), Embedding, Bidirectional GRU (sum),
    MultiHeadAttention, LayerNormalization, Concatenate, Dense(1, sigmoid)."""
    keras = _keras()
    layers = keras.layers
    s = keras.Input((6,), name="tokens", dtype="int32")
    e = layers.Embedding(30, 4)(s)
    h = layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode="sum")(e)
    h = layers.MultiHeadAttention(num_heads=2, key_dim=2)(h, h)
    h = layers.LayerNormalization()(h)
    pooled = layers.GlobalMaxPooling1D()(h)
    both = layers.Concatenate(axis=-1)([pooled, layers.Dense(2)(pooled)])
    model = keras.Model(s, layers.Dense(1, activation="sigmoid")(both))
    return _save_quietly(model, directory / "keras3_attention.keras")


def keras3_fully_convolutional_keras_file(directory: Path) -> Path:
    """Keras 3 ``.keras``: images of any size (None, None, 3) -> Conv2D(4, 3, same, relu) ->
    Conv2D(2, 1, softmax): an output of shape (None, None, None, 2)."""
    keras = _keras()
    layers = keras.layers
    x = keras.Input((None, None, 3), name="image")
    y = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    mask = layers.Conv2D(2, 1, activation="softmax", name="mask")(y)
    return _save_quietly(keras.Model(x, mask), directory / "keras3_fully_convolutional.keras")


def tf_keras_sequence_tagger_h5_file(directory: Path) -> Path:
    """tf_keras Sequential ``.h5``: (7, 3) -> LSTM(5, sequences) -> TimeDistributed(Dense(4,
    softmax)): one prediction per step, shape (None, 7, 4)."""
    tk = _tf_keras()
    model = tk.Sequential(
        [
            tk.layers.LSTM(5, return_sequences=True, input_shape=(7, 3)),
            tk.layers.TimeDistributed(tk.layers.Dense(4, activation="softmax"), name="tags"),
        ]
    )
    return _save_quietly(model, directory / "tf_keras_sequence_tagger.h5")


#: The builders above: models whose output shapes take many of Keras's shape rules to work out.
LAYER_ZOO = (
    tf_keras_cnn_h5_file,
    tf_keras_embedding_rnn_h5_file,
    tf_keras_conv1d_h5_file,
    tf_keras_image_two_outputs_h5_file,
    tf_keras_sequence_two_outputs_h5_file,
    keras3_image_keras_file,
    keras3_attention_keras_file,
    keras3_fully_convolutional_keras_file,
    tf_keras_sequence_tagger_h5_file,
)


# --- not models, and archives ----------------------------------------------------------------


def not_a_model_file(directory: Path) -> Path:
    """A text file named like a model (``notes.h5``)."""
    path = directory / "notes.h5"
    path.write_text("these are my notes, not a model\n")
    return path


def empty_file(directory: Path) -> Path:
    """A zero-byte file named ``empty.h5``."""
    path = directory / "empty.h5"
    path.write_bytes(b"")
    return path


ExtraMember = Path | tuple[str, bytes]


def _member_bytes(members: Iterable[ExtraMember]) -> list[tuple[str, bytes]]:
    return [
        (member.name, member.read_bytes()) if isinstance(member, Path) else member
        for member in members
    ]


def tar_gz_of(
    model_path: Path | None,
    directory: Path,
    *,
    arcname: str | None = None,
    extra_members: Iterable[ExtraMember] = (),
    name: str | None = None,
) -> Path:
    """A ``.tar.gz`` of ``model_path`` (stored as ``arcname``) and ``extra_members``.

    An extra member is a file path (stored under its name) or a ``(name, bytes)`` pair.
    """
    path = directory / (name or f"{model_path.name if model_path else 'archive'}.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        if model_path is not None:
            tar.add(str(model_path), arcname=arcname or model_path.name)
        for member_name, data in _member_bytes(extra_members):
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def zip_of(
    model_path: Path | None,
    directory: Path,
    *,
    arcname: str | None = None,
    extra_members: Iterable[ExtraMember] = (),
    name: str | None = None,
) -> Path:
    """A ``.zip`` of ``model_path`` (stored as ``arcname``) and ``extra_members``.

    An extra member is a file path (stored under its name) or a ``(name, bytes)`` pair.
    """
    path = directory / (name or f"{model_path.name if model_path else 'archive'}.zip")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if model_path is not None:
            zf.write(model_path, arcname=arcname or model_path.name)
        for member_name, data in _member_bytes(extra_members):
            zf.writestr(member_name, data)
    return path
