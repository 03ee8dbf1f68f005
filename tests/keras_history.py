"""Model files from Keras's history (issue 7): nested inputs and outputs, Keras 1 files, and
files a Keras wrote with a config that Keras itself could not read back.

Each builder returns a ``BuiltFile``: the file, rows to score (one array per input, in the
order kscore lists the inputs) and the predictions of the Keras that built the model (one
array per output, in the order kscore lists the outputs), so a test compares kscore's answer
over HTTP with the writer's own, row for row.

Keras 1 files are written with h5py in the layout Keras 1.2.2's ``save_model`` used (root
``keras_version`` and ``model_config``; a ``model_weights`` group with ``layer_names`` and per
layer ``weight_names``, and no ``keras_version`` there), from a tf_keras model with known
weights: the config is the one Keras 1.2.2's ``get_config`` wrote, and LSTM weights are split
into Keras 1's twelve arrays (gates i, c, f, o, each W, U, b).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tests.keras_files import _keras, _save_quietly, _tf_keras
from tests.keras_kinds import BuiltFile, _edit_h5_config


def _randomize(model: Any, seed: int, scale: float = 0.5) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=scale, size=w.shape) for w in model.get_weights()])
    return rng


def _flat(result: Any) -> list[np.ndarray]:
    import tensorflow as tf

    return [np.asarray(t) for t in tf.nest.flatten(result)]


# --- kind 3: nested inputs and outputs -----------------------------------------------------


def nested_outputs_h5(directory: Path) -> BuiltFile:
    """tf_keras ``Model(x, [[a, b], c])``: three Dense heads on one input, outputs nested."""
    tf_keras = _tf_keras()
    x = tf_keras.Input((4,), name="x")
    a = tf_keras.layers.Dense(2, activation="softmax", name="a")(x)
    b = tf_keras.layers.Dense(3, name="b")(x)
    c = tf_keras.layers.Dense(1, activation="sigmoid", name="c")(x)
    model = tf_keras.Model(x, [[a, b], c])
    rng = _randomize(model, 31)
    rows = rng.normal(size=(5, 4)).astype(np.float32)
    expected = _flat(model.predict(rows, verbose=0))
    return BuiltFile(_save_quietly(model, directory / "nested_outputs.h5"), [rows], expected)


def nested_inputs_h5(directory: Path) -> BuiltFile:
    """tf_keras ``Model([[x1, x2], x3], out)``: inputs named and ordered x1, x2, x3."""
    tf_keras = _tf_keras()
    x1 = tf_keras.Input((2,), name="x1")
    x2 = tf_keras.Input((3,), name="x2")
    x3 = tf_keras.Input((1,), name="x3")
    joined = tf_keras.layers.Concatenate(name="joined")([x1, x2, x3])
    out = tf_keras.layers.Dense(3, activation="softmax", name="out")(joined)
    model = tf_keras.Model([[x1, x2], x3], out)
    rng = _randomize(model, 32)
    rows = [rng.normal(size=(4, n)).astype(np.float32) for n in (2, 3, 1)]
    expected = _flat(model.predict([[rows[0], rows[1]], rows[2]], verbose=0))
    return BuiltFile(_save_quietly(model, directory / "nested_inputs.h5"), rows, expected)


def _keras3_three_inputs(
    names: tuple[str, str, str] = ("x1", "x2", "x3"),
) -> tuple[Any, Any, Any, Any, Any, Any]:
    keras = _keras()
    x1, x2, x3 = (keras.Input((n,), name=name) for n, name in zip((2, 3, 1), names, strict=True))
    joined = keras.layers.Concatenate(name="joined")([x1, x2, x3])
    a = keras.layers.Dense(2, activation="softmax", name="a")(joined)
    b = keras.layers.Dense(3, name="b")(joined)
    c = keras.layers.Dense(1, activation="sigmoid", name="c")(joined)
    return x1, x2, x3, a, b, c


def keras3_nested_lists_keras(directory: Path) -> BuiltFile:
    """Keras 3 ``.keras``: ``Model([[x1, x2], x3], [[a, b], c])``."""
    keras = _keras()
    x1, x2, x3, a, b, c = _keras3_three_inputs()
    model = keras.Model([[x1, x2], x3], [[a, b], c])
    rng = _randomize(model, 33)
    rows = [rng.normal(size=(4, n)).astype(np.float32) for n in (2, 3, 1)]
    expected = _flat(model([[rows[0], rows[1]], rows[2]]))
    return BuiltFile(_save_quietly(model, directory / "nested_lists.keras"), rows, expected)


def keras3_dicts_keras(directory: Path) -> BuiltFile:
    """Keras 3 ``.keras`` with dict inputs and a dict of outputs holding a list.

    ``Model({"zz": zz, "aa": aa, "mm": mm}, {"q": c, "p": [b, a]})``: Keras flattens dicts in
    sorted key order, so the inputs are aa, mm, zz and the outputs b, a, c, whatever order the
    dicts were written in.
    """
    keras = _keras()
    zz, aa, mm, a, b, c = _keras3_three_inputs(("zz", "aa", "mm"))
    model = keras.Model({"zz": zz, "aa": aa, "mm": mm}, {"q": c, "p": [b, a]})
    rng = _randomize(model, 34)
    r_zz, r_aa, r_mm = (rng.normal(size=(4, n)).astype(np.float32) for n in (2, 3, 1))
    expected = _flat(model({"zz": r_zz, "aa": r_aa, "mm": r_mm}))
    return BuiltFile(_save_quietly(model, directory / "dicts.keras"), [r_aa, r_mm, r_zz], expected)


# --- kind 6: Keras 1 files ------------------------------------------------------------------


def _keras1_base(name: str, batch_input_shape: list[int | None] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"name": name, "trainable": True}
    if batch_input_shape is not None:
        config["batch_input_shape"] = batch_input_shape
        config["input_dtype"] = "float32"
    return config


_NO_REGULARIZERS = {
    "W_regularizer": None,
    "b_regularizer": None,
    "activity_regularizer": None,
    "W_constraint": None,
    "b_constraint": None,
}


def keras1_dense_config(
    name: str, units: int, activation: str, batch_input_shape: list[int | None] | None = None
) -> dict[str, Any]:
    """A Dense as Keras 1.2.2's ``get_config`` wrote it."""
    config = _keras1_base(name, batch_input_shape)
    config.update(
        {"output_dim": units, "init": "glorot_uniform", "activation": activation, "bias": True}
    )
    config.update(_NO_REGULARIZERS)
    config["input_dim"] = batch_input_shape[-1] if batch_input_shape else None
    return {"class_name": "Dense", "config": config}


def keras1_lstm_config(name: str, units: int, timesteps: int, features: int) -> dict[str, Any]:
    """An LSTM (first layer) as Keras 1.2.2 wrote it: input_dim/input_length, no shape."""
    return {
        "class_name": "LSTM",
        "config": {
            "name": name,
            "trainable": True,
            "return_sequences": False,
            "go_backwards": False,
            "stateful": False,
            "unroll": False,
            "consume_less": "cpu",
            "input_dim": features,
            "input_length": timesteps,
            "output_dim": units,
            "init": "glorot_uniform",
            "inner_init": "orthogonal",
            "forget_bias_init": "one",
            "activation": "tanh",
            "inner_activation": "hard_sigmoid",
            "W_regularizer": None,
            "U_regularizer": None,
            "b_regularizer": None,
            "dropout_W": 0.0,
            "dropout_U": 0.0,
        },
    }


def keras1_conv2d_config(
    name: str,
    filters: int,
    kernel: tuple[int, int],
    *,
    dim_ordering: str = "tf",
    batch_input_shape: list[int | None] | None = None,
) -> dict[str, Any]:
    """A Convolution2D as Keras 1.2.2 wrote it."""
    config = _keras1_base(name, batch_input_shape)
    config.update(
        {
            "nb_filter": filters,
            "nb_row": kernel[0],
            "nb_col": kernel[1],
            "init": "glorot_uniform",
            "activation": "relu",
            "border_mode": "valid",
            "subsample": [1, 1],
            "dim_ordering": dim_ordering,
            "bias": True,
        }
    )
    config.update(_NO_REGULARIZERS)
    return {"class_name": "Convolution2D", "config": config}


def _lstm_as_keras1(
    kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray, name: str
) -> list[tuple[str, np.ndarray]]:
    """Keras 2 LSTM weights (gates i, f, c, o concatenated) as Keras 1's twelve arrays."""
    units = recurrent.shape[0]
    gates = {g: slice(k * units, (k + 1) * units) for k, g in enumerate("ifco")}
    arrays = []
    for gate in "icfo":  # Keras 1.2.2 LSTM.trainable_weights order
        part = gates[gate]
        arrays += [
            (f"{name}_W_{gate}", kernel[:, part]),
            (f"{name}_U_{gate}", recurrent[:, part]),
            (f"{name}_b_{gate}", bias[part]),
        ]
    return arrays


def write_keras1_h5(
    path: Path,
    model_config: dict[str, Any],
    layer_weights: list[tuple[str, list[tuple[str, np.ndarray]]]],
    keras_version: str = "1.2.2",
) -> Path:
    """An HDF5 file as Keras 1.2.2's ``save_model`` wrote it."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = np.bytes_(keras_version.encode())
        f.attrs["model_config"] = np.bytes_(json.dumps(model_config).encode())
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = np.array([name.encode() for name, _ in layer_weights])
        for layer_name, weights in layer_weights:
            layer_group = group.create_group(layer_name)
            names = [weight_name.encode() for weight_name, _ in weights]
            layer_group.attrs["weight_names"] = np.array(names) if names else np.zeros((0,))
            for weight_name, value in weights:
                layer_group.create_dataset(weight_name, data=np.asarray(value, np.float32))
    return path


def keras1_lstm_dense_h5(directory: Path) -> BuiltFile:
    """Keras 1.2.2 Sequential: LSTM(4, inner_activation hard_sigmoid) -> Dense(3, softmax)."""
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [
            tf_keras.layers.LSTM(4, recurrent_activation="hard_sigmoid", input_shape=(5, 3)),
            tf_keras.layers.Dense(3, activation="softmax"),
        ]
    )
    rng = _randomize(model, 41, scale=0.8)
    rows = rng.normal(size=(6, 5, 3)).astype(np.float32)
    expected = [model.predict(rows, verbose=0)]
    kernel, recurrent, bias, dense_kernel, dense_bias = model.get_weights()
    config = {
        "class_name": "Sequential",
        "config": [
            keras1_lstm_config("lstm_1", 4, 5, 3),
            keras1_dense_config("dense_1", 3, "softmax"),
        ],
    }
    path = write_keras1_h5(
        directory / "keras1_lstm_dense.h5",
        config,
        [
            ("lstm_1", _lstm_as_keras1(kernel, recurrent, bias, "lstm_1")),
            ("dense_1", [("dense_1_W", dense_kernel), ("dense_1_b", dense_bias)]),
        ],
    )
    return BuiltFile(path, [rows], expected)


def keras1_conv2d_h5(directory: Path, dim_ordering: str = "tf") -> BuiltFile:
    """Keras 1.2.2 Sequential: Convolution2D(4, 3, 3, dim_ordering "tf") -> MaxPooling2D ->
    Flatten -> Dense(2, softmax), on 6x6x2 images. With "th" the file must be refused."""
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Conv2D(4, (3, 3), activation="relu", input_shape=(6, 6, 2)),
            tf_keras.layers.MaxPooling2D((2, 2)),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(2, activation="softmax"),
        ]
    )
    rng = _randomize(model, 42)
    rows = rng.normal(size=(5, 6, 6, 2)).astype(np.float32)
    expected = [model.predict(rows, verbose=0)]
    conv_kernel, conv_bias, dense_kernel, dense_bias = model.get_weights()
    pooling = {
        "class_name": "MaxPooling2D",
        "config": {
            "name": "maxpooling2d_1",
            "trainable": True,
            "pool_size": [2, 2],
            "border_mode": "valid",
            "strides": [2, 2],
            "dim_ordering": dim_ordering,
        },
    }
    config = {
        "class_name": "Sequential",
        "config": [
            keras1_conv2d_config(
                "convolution2d_1", 4, (3, 3), dim_ordering=dim_ordering,
                batch_input_shape=[None, 6, 6, 2],
            ),
            pooling,
            {"class_name": "Flatten", "config": {"name": "flatten_1", "trainable": True}},
            keras1_dense_config("dense_1", 2, "softmax"),
        ],
    }  # fmt: skip
    path = write_keras1_h5(
        directory / f"keras1_conv2d_{dim_ordering}.h5",
        config,
        [
            ("convolution2d_1", [("convolution2d_1_W", conv_kernel), ("convolution2d_1_b", conv_bias)]),
            ("maxpooling2d_1", []),
            ("flatten_1", []),
            ("dense_1", [("dense_1_W", dense_kernel), ("dense_1_b", dense_bias)]),
        ],
    )  # fmt: skip
    return BuiltFile(path, [rows], expected)


_MERGE_LAYERS = {"concat": "Concatenate", "sum": "Add", "mul": "Multiply", "ave": "Average",
                 "max": "Maximum"}  # fmt: skip


def keras1_functional_merge_h5(directory: Path, mode: str = "concat") -> BuiltFile:
    """Keras 1.2.2 functional ``Model``: two Dense(3) branches on one input joined by
    ``merge(mode=mode)``, then Dense(2, softmax)."""
    tf_keras = _tf_keras()
    x = tf_keras.Input((4,), name="input_1")
    left = tf_keras.layers.Dense(3, activation="tanh", name="dense_1")(x)
    right = tf_keras.layers.Dense(3, activation="relu", name="dense_2")(x)
    merge_class = getattr(tf_keras.layers, _MERGE_LAYERS[mode])
    joined = merge_class(name="merge_1")([left, right])
    out = tf_keras.layers.Dense(2, activation="softmax", name="dense_3")(joined)
    model = tf_keras.Model(x, out)
    rng = _randomize(model, 43)
    rows = rng.normal(size=(5, 4)).astype(np.float32)
    expected = [model.predict(rows, verbose=0)]

    def node(*names: str) -> list[list[list[Any]]]:
        return [[[n, 0, 0] for n in names]]

    merge = {
        "name": "merge_1",
        "mode": mode,
        "mode_type": "raw",
        "concat_axis": -1,
        "dot_axes": -1,
        "output_shape": None,
        "output_shape_type": "raw",
        "output_mask": None,
        "output_mask_type": "raw",
        "arguments": {},
    }
    layers = [
        {
            "class_name": "InputLayer",
            "name": "input_1",
            "config": {
                "batch_input_shape": [None, 4], "input_dtype": "float32", "sparse": False,
                "name": "input_1",
            },
            "inbound_nodes": [],
        },
        {**keras1_dense_config("dense_1", 3, "tanh"), "name": "dense_1", "inbound_nodes": node("input_1")},
        {**keras1_dense_config("dense_2", 3, "relu"), "name": "dense_2", "inbound_nodes": node("input_1")},
        {"class_name": "Merge", "name": "merge_1", "config": merge, "inbound_nodes": node("dense_1", "dense_2")},
        {**keras1_dense_config("dense_3", 2, "softmax"), "name": "dense_3", "inbound_nodes": node("merge_1")},
    ]  # fmt: skip
    config = {
        "class_name": "Model",
        "config": {
            "name": "model_1",
            "layers": layers,
            "input_layers": [["input_1", 0, 0]],
            "output_layers": [["dense_3", 0, 0]],
        },
    }
    weights = {w.name: v for w, v in zip(model.weights, model.get_weights(), strict=True)}

    def dense(name: str) -> tuple[str, list[tuple[str, np.ndarray]]]:
        return name, [
            (f"{name}_W", weights[f"{name}/kernel:0"]),
            (f"{name}_b", weights[f"{name}/bias:0"]),
        ]

    path = write_keras1_h5(
        directory / f"keras1_merge_{mode}.h5",
        config,
        [("input_1", []), dense("dense_1"), dense("dense_2"), ("merge_1", []), dense("dense_3")],
    )
    return BuiltFile(path, [rows], expected)


def _keras1_recurrent_config(
    class_name: str, name: str, units: int, **extra: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name, "trainable": True, "return_sequences": False, "go_backwards": False,
        "stateful": False, "unroll": False, "consume_less": "cpu", "input_dim": None,
        "input_length": None, "output_dim": units, "init": "glorot_uniform",
        "inner_init": "orthogonal", "activation": "tanh", "W_regularizer": None,
        "U_regularizer": None, "b_regularizer": None, "dropout_W": 0.0, "dropout_U": 0.0,
    }  # fmt: skip
    if class_name == "GRU":
        config["inner_activation"] = "hard_sigmoid"
    config.update(extra)
    return {"class_name": class_name, "config": config}


def keras1_embedding_gru_h5(directory: Path) -> BuiltFile:
    """Keras 1.2.2 Sequential: Embedding(10, 3, input_length=5; input_dtype int32) ->
    GRU(4, return_sequences) -> SimpleRNN(3, go_backwards) -> Dense(2, softmax)."""
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [
            tf_keras.Input((5,), dtype="int32"),
            tf_keras.layers.Embedding(10, 3),
            tf_keras.layers.GRU(
                4, recurrent_activation="hard_sigmoid", reset_after=False, return_sequences=True
            ),
            tf_keras.layers.SimpleRNN(3, go_backwards=True),
            tf_keras.layers.Dense(2, activation="softmax"),
        ]
    )
    rng = _randomize(model, 44, scale=0.8)
    rows = rng.integers(0, 10, size=(6, 5)).astype(np.int32)
    expected = [model.predict(rows, verbose=0)]
    embeddings, gru_k, gru_r, gru_b, rnn_k, rnn_r, rnn_b, dense_k, dense_b = model.get_weights()
    embedding = {
        "class_name": "Embedding",
        "config": {
            "name": "embedding_1", "trainable": True, "batch_input_shape": [None, 5],
            "input_dtype": "int32", "input_dim": 10, "output_dim": 3, "init": "uniform",
            "input_length": 5, "mask_zero": False, "activity_regularizer": None,
            "W_regularizer": None, "W_constraint": None, "dropout": 0.0,
        },
    }  # fmt: skip
    config = {
        "class_name": "Sequential",
        "config": [
            embedding,
            _keras1_recurrent_config("GRU", "gru_1", 4, return_sequences=True),
            _keras1_recurrent_config("SimpleRNN", "simplernn_1", 3, go_backwards=True),
            keras1_dense_config("dense_1", 2, "softmax"),
        ],
    }
    units = 4
    gru = []
    for k, gate in enumerate("zrh"):  # Keras 1.2.2 GRU.trainable_weights order
        part = slice(k * units, (k + 1) * units)
        gru += [(f"gru_1_W_{gate}", gru_k[:, part]), (f"gru_1_U_{gate}", gru_r[:, part]),
                (f"gru_1_b_{gate}", gru_b[part])]  # fmt: skip
    path = write_keras1_h5(
        directory / "keras1_embedding_gru.h5",
        config,
        [
            ("embedding_1", [("embedding_1_W", embeddings)]),
            ("gru_1", gru),
            ("simplernn_1", [("simplernn_1_W", rnn_k), ("simplernn_1_U", rnn_r), ("simplernn_1_b", rnn_b)]),
            ("dense_1", [("dense_1_W", dense_k), ("dense_1_b", dense_b)]),
        ],
    )  # fmt: skip
    return BuiltFile(path, [rows], expected)


def keras1_conv1d_batchnorm_h5(directory: Path) -> BuiltFile:
    """Keras 1.2.2 Sequential: Convolution1D(4, 3; input_dim 2, input_length 7) ->
    BatchNormalization(mode 0) -> MaxPooling1D(2) -> GlobalAveragePooling1D -> Dense(2)."""
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Conv1D(4, 3, activation="relu", input_shape=(7, 2)),
            tf_keras.layers.BatchNormalization(epsilon=1e-3),
            tf_keras.layers.MaxPooling1D(2),
            tf_keras.layers.GlobalAveragePooling1D(),
            tf_keras.layers.Dense(2, activation="softmax"),
        ]
    )
    rng = _randomize(model, 45)
    conv_k, conv_b, gamma, beta, mean, variance, dense_k, dense_b = model.get_weights()
    variance = rng.uniform(0.5, 2.0, size=variance.shape).astype(np.float32)
    model.set_weights([conv_k, conv_b, gamma, beta, mean, variance, dense_k, dense_b])
    rows = rng.normal(size=(5, 7, 2)).astype(np.float32)
    expected = [model.predict(rows, verbose=0)]
    conv = {
        "class_name": "Convolution1D",
        "config": {
            "name": "convolution1d_1", "trainable": True, "batch_input_shape": [None, 7, 2],
            "input_dtype": "float32", "nb_filter": 4, "filter_length": 3,
            "init": "glorot_uniform", "activation": "relu", "border_mode": "valid",
            "subsample_length": 1, **_NO_REGULARIZERS, "bias": True, "input_dim": 2,
            "input_length": 7,
        },
    }  # fmt: skip
    batchnorm = {
        "class_name": "BatchNormalization",
        "config": {
            "name": "batchnormalization_1", "trainable": True, "epsilon": 1e-3, "mode": 0,
            "axis": -1, "gamma_regularizer": None, "beta_regularizer": None, "momentum": 0.99,
        },
    }  # fmt: skip
    pooling = {
        "class_name": "MaxPooling1D",
        "config": {"name": "maxpooling1d_1", "trainable": True, "stride": 2, "pool_length": 2,
                   "border_mode": "valid"},
    }  # fmt: skip
    global_pooling = {
        "class_name": "GlobalAveragePooling1D",
        "config": {"name": "globalaveragepooling1d_1", "trainable": True},
    }
    config = {
        "class_name": "Sequential",
        "config": [conv, batchnorm, pooling, global_pooling, keras1_dense_config("dense_1", 2, "softmax")],
    }  # fmt: skip
    bn = [("batchnormalization_1_gamma", gamma), ("batchnormalization_1_beta", beta),
          ("batchnormalization_1_running_mean", mean),
          ("batchnormalization_1_running_std", variance)]  # fmt: skip
    path = write_keras1_h5(
        directory / "keras1_conv1d_bn.h5",
        config,
        [
            # Keras 1.2.2 stored Convolution1D kernels as (filter_length, 1, input_dim, filters).
            ("convolution1d_1", [("convolution1d_1_W", conv_k[:, None]), ("convolution1d_1_b", conv_b)]),
            ("batchnormalization_1", bn),
            ("maxpooling1d_1", []),
            ("globalaveragepooling1d_1", []),
            ("dense_1", [("dense_1_W", dense_k), ("dense_1_b", dense_b)]),
        ],
    )  # fmt: skip
    return BuiltFile(path, [rows], expected)


def keras1_highway_h5(directory: Path) -> Path:
    """A Keras 1.2.2 file with a ``Highway`` layer (Keras 2 dropped it): refused at upload."""
    config = {
        "class_name": "Sequential",
        "config": [
            keras1_dense_config("dense_1", 4, "relu", batch_input_shape=[None, 4]),
            {
                "class_name": "Highway",
                "config": {"name": "highway_1", "trainable": True, "activation": "relu",
                           "init": "glorot_uniform", "transform_bias": -2, "bias": True,
                           "input_dim": None, **_NO_REGULARIZERS},
            },
        ],
    }  # fmt: skip
    return write_keras1_h5(directory / "keras1_highway.h5", config, [])


# --- kind 2: configs a Keras wrote that it could not read back ------------------------------


def relu_ndarray_config_h5(directory: Path) -> BuiltFile:
    """A ReLU(max_value=6, negative_slope=0.1, threshold=0.5) as tf.keras 1.11/1.12 saved it.

    That ReLU cast its arguments with ``K.cast_to_floatx`` (0-d numpy arrays) and the h5 JSON
    encoder wrote each as ``{"type": "ndarray", "value": 6.0}``, which its own ``__init__``
    then refused on load (tensorflow/tensorflow#22697, fixed by #22073). Built by tf_keras,
    then the config edited to what tf.keras 1.12 wrote ("2.1.6-tf").
    """
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Dense(4, input_shape=(3,), name="dense"),
            tf_keras.layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5, name="relu6"),
            tf_keras.layers.Dense(2, activation="softmax", name="probs"),
        ]
    )
    rng = _randomize(model, 51, scale=2.0)
    rows = rng.normal(scale=3.0, size=(8, 3)).astype(np.float32)
    expected = [model.predict(rows, verbose=0)]
    path = _save_quietly(model, directory / "relu_tf112.h5")

    def as_ndarrays(config: dict[str, Any]) -> None:
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "ReLU":
                for key in ("max_value", "negative_slope", "threshold"):
                    layer["config"][key] = {"type": "ndarray", "value": float(layer["config"][key])}

    _edit_h5_config(path, as_ndarrays, keras_version="2.1.6-tf")
    return BuiltFile(path, [rows], expected)


def bidirectional_shape_inside_h5(directory: Path) -> BuiltFile:
    """``Sequential([Bidirectional(LSTM(3, input_shape=(4, 2))), Dense])`` as Keras 2.2.0
    saved it: the input shape only in the wrapped LSTM's config (a bare-list Sequential), which
    Keras 2.2.0 then built without layers and refused ("a weight file containing 3 layers into
    a model with 0 layers", keras-team/keras#10626). tf_keras refuses it the same way."""
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Bidirectional(
                tf_keras.layers.LSTM(3, name="lstm"), input_shape=(4, 2), name="bi"
            ),
            tf_keras.layers.Dense(2, activation="softmax", name="probs"),
        ]
    )
    rng = _randomize(model, 52)
    rows = rng.normal(size=(5, 4, 2)).astype(np.float32)
    expected = [model.predict(rows, verbose=0)]
    path = _save_quietly(model, directory / "bidirectional_keras220.h5")

    def shape_inside(config: dict[str, Any]) -> None:
        layers = [
            layer for layer in config["config"]["layers"] if layer["class_name"] != "InputLayer"
        ]
        bi = layers[0]["config"]
        shape = bi.pop("batch_input_shape", [None, 4, 2])
        bi["layer"]["config"]["batch_input_shape"] = shape
        config["config"] = layers  # Keras <= 2.2.2 wrote a Sequential as a bare list

    _edit_h5_config(path, shape_inside, keras_version="2.2.0")
    return BuiltFile(path, [rows], expected)


def shared_layer_used_before_its_input_h5(directory: Path) -> BuiltFile:
    """A layer shared by two branches, its second call on a layer listed after it, as Keras
    2.0.6 saved it (keras-team/keras#7682: that Keras's loader failed with "Missing layer";
    Keras 2.0.7 deferred such nodes, and tf_keras does too, so nothing is rewritten)."""
    tf_keras = _tf_keras()
    x = tf_keras.Input((4,), name="input_1")
    dense_a = tf_keras.layers.Dense(4, name="dense_A")
    dense_b = tf_keras.layers.Dense(3, name="dense_B")
    dense_c = tf_keras.layers.Dense(4, name="dense_C")
    joined = tf_keras.layers.Concatenate(name="concatenate_1")(
        [dense_b(dense_a(x)), dense_a(dense_c(x))]
    )
    out = tf_keras.layers.Dense(2, activation="softmax", name="probs")(joined)
    model = tf_keras.Model(x, out)
    rng = _randomize(model, 53)
    rows = rng.normal(size=(5, 4)).astype(np.float32)
    expected = [model.predict(rows, verbose=0)]
    path = _save_quietly(model, directory / "shared_layer_keras206.h5")
    order = ["input_1", "dense_A", "dense_B", "dense_C", "concatenate_1", "probs"]

    def keras206_order(config: dict[str, Any]) -> None:
        layers = config["config"]["layers"]
        config["config"]["layers"] = sorted(layers, key=lambda layer: order.index(layer["name"]))

    _edit_h5_config(path, keras206_order, keras_version="2.0.6")
    return BuiltFile(path, [rows], expected)


def bias_initializer_typo_h5(directory: Path) -> BuiltFile:
    """Conv2D and Dense as Keras 2.0.0 saved them: ``bias_initializer`` serialized from the
    kernel's initializer (keras-team/keras#5810, fixed in 2.0.1). Only initial values were
    wrong, and loaded weights replace them, so the file scores as the model did."""
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Conv2D(
                3, (2, 2), activation="relu", input_shape=(5, 5, 1), name="conv"
            ),
            tf_keras.layers.Flatten(name="flat"),
            tf_keras.layers.Dense(2, activation="softmax", name="probs"),
        ]
    )
    rng = _randomize(model, 54)
    rows = rng.normal(size=(4, 5, 5, 1)).astype(np.float32)
    expected = [model.predict(rows, verbose=0)]
    path = _save_quietly(model, directory / "bias_initializer_keras200.h5")

    def typo(config: dict[str, Any]) -> None:
        for layer in config["config"]["layers"]:
            if layer["class_name"] in ("Conv2D", "Dense"):
                layer["config"]["bias_initializer"] = layer["config"]["kernel_initializer"]

    _edit_h5_config(path, typo, keras_version="2.0.0")
    return BuiltFile(path, [rows], expected)


def keras1_layer_zoo_h5(directory: Path) -> BuiltFile:
    """Keras 1.2.2 Sequential through the remaining converted classes: Convolution2D
    (border_mode "same") -> AveragePooling2D -> Dropout(p) -> Activation ->
    GlobalAveragePooling2D -> Dense(6) -> Reshape -> Permute -> Flatten -> RepeatVector ->
    Flatten -> Dense(2, softmax), on 6x6x2 images."""
    tf_keras = _tf_keras()
    layers = tf_keras.layers
    model = tf_keras.Sequential(
        [
            layers.Conv2D(3, (3, 3), padding="same", input_shape=(6, 6, 2)),
            layers.AveragePooling2D((2, 2)),
            layers.Dropout(0.3),
            layers.Activation("tanh"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(6),
            layers.Reshape((2, 3)),
            layers.Permute((2, 1)),
            layers.Flatten(),
            layers.RepeatVector(2),
            layers.Flatten(),
            layers.Dense(2, activation="softmax"),
        ]
    )
    rng = _randomize(model, 46)
    rows = rng.normal(size=(5, 6, 6, 2)).astype(np.float32)
    expected = [model.predict(rows, verbose=0)]
    conv_k, conv_b, d1_k, d1_b, d2_k, d2_b = model.get_weights()

    def plain(class_name: str, name: str, **config: Any) -> dict[str, Any]:
        return {"class_name": class_name, "config": {"name": name, "trainable": True, **config}}

    conv = keras1_conv2d_config("conv", 3, (3, 3), batch_input_shape=[None, 6, 6, 2])
    conv["config"].update(border_mode="same", activation="linear")
    config = {
        "class_name": "Sequential",
        "config": [
            conv,
            plain("AveragePooling2D", "pool", pool_size=[2, 2], border_mode="valid",
                  strides=[2, 2], dim_ordering="tf"),
            plain("Dropout", "drop", p=0.3),
            plain("Activation", "act", activation="tanh"),
            plain("GlobalAveragePooling2D", "gap", dim_ordering="tf"),
            keras1_dense_config("dense_1", 6, "linear"),
            plain("Reshape", "reshape", target_shape=[2, 3]),
            plain("Permute", "permute", dims=[2, 1]),
            plain("Flatten", "flat_1"),
            plain("RepeatVector", "repeat", n=2),
            plain("Flatten", "flat_2"),
            keras1_dense_config("dense_2", 2, "softmax"),
        ],
    }  # fmt: skip
    no_weights = ["pool", "drop", "act", "gap", "reshape", "permute", "flat_1", "repeat", "flat_2"]
    path = write_keras1_h5(
        directory / "keras1_layer_zoo.h5",
        config,
        [
            ("conv", [("conv_W", conv_k), ("conv_b", conv_b)]),
            *[(name, []) for name in no_weights[:5]],
            ("dense_1", [("dense_1_W", d1_k), ("dense_1_b", d1_b)]),
            *[(name, []) for name in no_weights[5:]],
            ("dense_2", [("dense_2_W", d2_k), ("dense_2_b", d2_b)]),
        ],
    )
    return BuiltFile(path, [rows], expected)


def keras1_masked_lstm_h5(directory: Path) -> BuiltFile:
    """Keras 1.2.2 Sequential: Masking(0.0) -> LSTM(4) -> Dense(3, softmax), scored on
    sequences whose last steps are zero padding (skipped by the mask)."""
    tf_keras = _tf_keras()
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Masking(0.0, input_shape=(5, 3)),
            tf_keras.layers.LSTM(4, recurrent_activation="hard_sigmoid"),
            tf_keras.layers.Dense(3, activation="softmax"),
        ]
    )
    rng = _randomize(model, 47, scale=0.8)
    rows = rng.normal(size=(6, 5, 3)).astype(np.float32)
    for k, length in enumerate((5, 4, 3, 2, 1, 5)):
        rows[k, length:] = 0.0
    expected = [model.predict(rows, verbose=0)]
    kernel, recurrent, bias, dense_kernel, dense_bias = model.get_weights()
    masking = {
        "class_name": "Masking",
        "config": {"name": "masking_1", "trainable": True, "batch_input_shape": [None, 5, 3],
                   "input_dtype": "float32", "mask_value": 0.0},
    }  # fmt: skip
    lstm = keras1_lstm_config("lstm_1", 4, 5, 3)
    lstm["config"].update(input_dim=None, input_length=None)
    config = {
        "class_name": "Sequential",
        "config": [masking, lstm, keras1_dense_config("dense_1", 3, "softmax")],
    }
    path = write_keras1_h5(
        directory / "keras1_masked_lstm.h5",
        config,
        [
            ("masking_1", []),
            ("lstm_1", _lstm_as_keras1(kernel, recurrent, bias, "lstm_1")),
            ("dense_1", [("dense_1_W", dense_kernel), ("dense_1_b", dense_bias)]),
        ],
    )
    return BuiltFile(path, [rows], expected)
