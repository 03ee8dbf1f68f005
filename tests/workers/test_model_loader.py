"""workers.model_loader on real model files of every dialect kscore accepts.

Expected predictions are numpy arithmetic on the weights the files were written with
(``tests/keras_files.py``), or the model as the Keras that wrote it computes it; never the
loaded model checked against itself. Files the shared builders do not write (CuDNNGRU and
Bidirectional(CuDNNLSTM) with a numpy reference of cuDNN's maths, Lambda layers that leave a
trace when run, Theano-trained and stateful Keras 2 models) are written here.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from shared.errors import ScoringInputInvalid, UnsafeModel, UnsupportedModelFile
from shared.keras_file import ModelInfo, TensorSpec
from tests import keras_files as kf
from tests import keras_history as kh
from workers import model_loader
from workers.model_loader import LoadedModel, choose_loader, load_model

SMALL = 3
LARGE = 3000  # more than direct_call_max_rows (1024): three pieces, the last one short
ATOL = 2e-5


# --- the dialects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A model file, the Keras that must read it, and what it predicts (numpy)."""

    build: Callable[[Path], Path]
    loader: str
    rows: Callable[[np.random.Generator, int], list[np.ndarray]]
    expected: Callable[[list[np.ndarray]], list[np.ndarray]]


def _dense_rows(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [rng.normal(size=(n, 4)).astype(np.float32)]


def _dense_expected(xs: list[np.ndarray]) -> list[np.ndarray]:
    return [kf.expected_dense_softmax(xs[0])]


def _dense(build: Callable[[Path], Path], loader: str) -> Case:
    return Case(build, loader, _dense_rows, _dense_expected)


def _tf_keras_zip_file(directory: Path) -> Path:
    """tf_keras 2.x's own ``.keras`` zip (metadata says 2.x): Keras 3 cannot read it."""
    import tf_keras

    model = tf_keras.Sequential(
        [tf_keras.layers.Dense(3, activation="softmax", input_shape=(4,), name="probs")]
    )
    model.get_layer("probs").set_weights([kf.DENSE_KERNEL, kf.DENSE_BIAS])
    path = directory / "tf_keras_dense.keras"
    model.save(str(path))
    return path


def _text_rows(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    words = [*kf.TEXT_VOCABULARY, "plot", "Popcorn!", "GOOD,"]
    texts = [" ".join(rng.choice(words, size=rng.integers(0, 7))) for _ in range(n)]
    return [np.array(texts, dtype=object).reshape(n, 1)]


def _multi_rows(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32)]


def _multi_expected(xs: list[np.ndarray]) -> list[np.ndarray]:
    out = kf.expected_multi_io(xs[0], xs[1])
    return [out["score"], out["kind"]]


CASES: dict[str, Case] = {
    "keras3_keras": _dense(kf.keras3_keras_file, "keras"),
    "keras3_h5": _dense(kf.keras3_h5_file, "keras"),
    "keras3_sequential_h5": _dense(kf.keras3_sequential_h5_file, "keras"),
    "tf_keras_h5": _dense(kf.tf_keras_h5_file, "tf_keras"),
    "tf_keras_sequential_h5": _dense(kf.tf_keras_sequential_h5_file, "tf_keras"),
    "tf_keras_keras_zip": _dense(_tf_keras_zip_file, "tf_keras"),
    # Keras <= 2.2.2 wrote a Sequential config as a bare list of layers.
    "keras2.1.6_list_h5": _dense(
        functools.partial(kf.keras2_standalone_h5_file, keras_version="2.1.6"), "tf_keras"
    ),
    "keras2.2.4_h5": _dense(
        functools.partial(kf.keras2_standalone_h5_file, keras_version="2.2.4"), "tf_keras"
    ),
    "keras2.3.1_h5": _dense(
        functools.partial(kf.keras2_standalone_h5_file, keras_version="2.3.1"), "tf_keras"
    ),
    "keras2.3.1_batchnorm_h5": Case(
        kf.keras23_batchnorm_h5_file,
        "tf_keras",
        _dense_rows,
        lambda xs: [kf.expected_keras23_batchnorm(xs[0])],
    ),
    "sigmoid_binary_h5": Case(
        kf.sigmoid_binary_h5_file,
        "tf_keras",
        _dense_rows,
        lambda xs: [kf.expected_sigmoid(xs[0])],
    ),
    "small_cnn_keras": Case(
        kf.small_cnn_keras_file,
        "keras",
        lambda rng, n: [rng.random((n, 8, 8, 1), dtype=np.float32)],
        lambda xs: [kf.expected_small_cnn(xs[0])],
    ),
    "tf_keras_lstm_h5": Case(
        kf.tf_keras_lstm_h5_file,
        "tf_keras",
        lambda rng, n: [rng.normal(size=(n, 5, 3)).astype(np.float32)],
        lambda xs: [kf.expected_lstm_sigmoid(xs[0])],
    ),
    "cudnn_lstm_h5": Case(
        kf.cudnn_lstm_h5_file,
        "tf_keras",
        lambda rng, n: [rng.normal(size=(n, 5, 3)).astype(np.float32)],
        lambda xs: [kf.expected_lstm_sigmoid(xs[0])],
    ),
    "text_vectorization_keras": Case(
        kf.text_vectorization_keras_file,
        "keras",
        _text_rows,
        lambda xs: [kf.expected_text_softmax([str(t) for t in xs[0][:, 0]])],
    ),
    "multi_io_keras": Case(kf.multi_io_keras_file, "keras", _multi_rows, _multi_expected),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-files")


@pytest.fixture(scope="module", params=sorted(CASES))
def loaded(request: pytest.FixtureRequest, model_dir: Path) -> tuple[Case, LoadedModel]:
    """Each dialect's file, written once and loaded once for the module."""
    case = CASES[request.param]
    path = case.build(model_dir)
    return case, load_model(path, path.name)


def _assert_outputs(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=ATOL, rtol=1e-4)


def test_each_dialect_is_read_by_the_keras_that_wrote_it(
    loaded: tuple[Case, LoadedModel],
) -> None:
    case, model = loaded
    assert model.loader == case.loader


def test_small_batch_matches_numpy(loaded: tuple[Case, LoadedModel]) -> None:
    case, model = loaded
    rows = case.rows(np.random.default_rng(1), SMALL)
    _assert_outputs(model.predict(rows), case.expected(rows))


def test_large_batch_matches_numpy_row_for_row(loaded: tuple[Case, LoadedModel]) -> None:
    case, model = loaded
    rows = case.rows(np.random.default_rng(2), LARGE)
    want = case.expected(rows)
    _assert_outputs(model.predict(rows), want)
    # Reversed rows come back reversed: pieces are reassembled in order.
    reversed_rows = [r[::-1] for r in rows]
    _assert_outputs(model.predict(reversed_rows), [w[::-1] for w in want])


def test_one_trace_serves_warm_up_and_every_batch_size(
    loaded: tuple[Case, LoadedModel],
) -> None:
    case, model = loaded
    model.warm_up()
    for n in (1, SMALL, LARGE, 5):
        model.predict(case.rows(np.random.default_rng(n), n))
    assert model.trace_count == 1


def test_output_signature_describes_what_predict_returns(
    loaded: tuple[Case, LoadedModel],
) -> None:
    case, model = loaded
    rows = case.rows(np.random.default_rng(3), SMALL)
    outputs = model.predict(rows)
    signature = model.output_signature()
    assert [s.name for s in signature] == [s.name for s in model.output_specs]
    assert [s.activation for s in signature] == [s.activation for s in model.output_specs]
    assert [[SMALL, *s.shape[1:]] for s in signature if s.shape is not None] == [
        list(o.shape) for o in outputs
    ]
    assert [s.dtype for s in signature] == [str(o.dtype) for o in outputs]
    assert model.trace_count == 1


def test_multi_io_follows_the_signature_order(model_dir: Path) -> None:
    path = kf.multi_io_keras_file(model_dir)
    model = load_model(path, path.name)
    assert [s.name for s in model.input_specs] == ["a", "b"]
    assert [s.name for s in model.output_specs] == ["score", "kind"]
    score, kind = model.predict(_multi_rows(np.random.default_rng(3), SMALL))
    assert score.shape == (SMALL, 1)
    assert kind.shape == (SMALL, 3)


@pytest.mark.parametrize(
    "build",
    [
        kh.nested_outputs_h5,
        kh.nested_inputs_h5,
        kh.keras3_nested_lists_keras,
        kh.keras3_dicts_keras,
    ],
    ids=lambda b: b.__name__,
)
def test_nested_and_dict_structures_are_fed_and_flattened_in_spec_order(
    tmp_path: Path, build: Callable[[Path], kh.BuiltFile]
) -> None:
    # Issue 7, kind 3: inputs packed into the model's own structure; outputs flattened as
    # Keras flattens them (depth first, dict keys sorted), which is the order the specs name.
    built = build(tmp_path)
    model = load_model(built.path, built.path.name)
    model.warm_up()
    outputs = model.predict(built.inputs)
    assert len(outputs) == len(built.expected) == len(model.output_specs)
    for got, expected in zip(outputs, built.expected, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    signature = model.output_signature()
    assert [s.name for s in signature] == [s.name for s in model.output_specs]
    assert [s.shape[1:] for s in signature if s.shape] == [
        list(e.shape[1:]) for e in built.expected
    ]
    assert model.trace_count == 1


def test_text_model_takes_numpy_str_arrays_too(model_dir: Path) -> None:
    path = kf.text_vectorization_keras_file(model_dir)
    model = load_model(path, path.name)
    texts = ["good movie", "awful awful plot", ""]
    (got,) = model.predict([np.array(texts).reshape(3, 1)])  # dtype <U16, not object
    np.testing.assert_allclose(got, kf.expected_text_softmax(texts), atol=ATOL)


def test_pieces_smaller_than_the_batch_keep_row_order(model_dir: Path) -> None:
    path = kf.keras3_keras_file(model_dir)
    model = load_model(path, path.name, direct_call_max_rows=7)
    (x,) = _dense_rows(np.random.default_rng(4), 101)  # 14 full pieces and one of 3 rows
    (got,) = model.predict([x])
    np.testing.assert_allclose(got, kf.expected_dense_softmax(x), atol=ATOL)


def test_zero_rows_give_zero_rows(model_dir: Path) -> None:
    path = kf.keras3_keras_file(model_dir)
    (got,) = load_model(path, path.name).predict([np.zeros((0, 4), np.float32)])
    assert got.shape == (0, 3)


def test_file_stored_without_an_extension_loads_by_its_filename(
    model_dir: Path, tmp_path: Path
) -> None:
    blob = tmp_path / "3f2a9c"  # the cache names files by content, not by upload name
    blob.write_bytes(kf.keras3_keras_file(model_dir).read_bytes())
    model = load_model(blob, "uploaded.keras")
    (x,) = _dense_rows(np.random.default_rng(5), SMALL)
    np.testing.assert_allclose(model.predict([x])[0], kf.expected_dense_softmax(x), atol=ATOL)


# --- GPU-only layers ------------------------------------------------------------------------
#
# The reference models what cuDNN computed, not what the converter does: Keras 2's CuDNNLSTM /
# CuDNNGRU (and tf.compat.v1's) handed cuDNN each gate's slice of the saved kernel flattened in
# C order, which cuDNN reads as a row-major (units, input_dim) matrix W, computing x @ W.T; and
# two bias vectors (input, recurrent) per gate. cuDNN LSTM gates are i, f, c, o; cuDNN GRU is
#   r = s(Wr x + bWr + Rr h + bRr),  z = s(Wz x + bWz + Rz h + bRz),
#   n = tanh(Wh x + bWh + r * (Rh h + bRh)),  h' = (1 - z) * n + z * h
# with the saved kernel's gate blocks in Keras order z, r, h.

T, D, U = 5, 3, 4  # input_dim != units, so a transposed kernel cannot pass by accident


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


def _cudnn_matrix(kernel: np.ndarray, gate: int) -> np.ndarray:
    block = np.ascontiguousarray(kernel[:, gate * U : (gate + 1) * U], dtype=np.float64)
    return block.reshape(-1).reshape(U, kernel.shape[0])


def _cudnn_lstm(
    x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    w = [_cudnn_matrix(kernel, g) for g in range(4)]
    r = [_cudnn_matrix(recurrent, g) for g in range(4)]
    b = [bias[g * U : (g + 1) * U] + bias[(4 + g) * U : (5 + g) * U] for g in range(4)]
    h = np.zeros((len(x), U))
    c = np.zeros((len(x), U))
    for t in range(x.shape[1]):
        i, f, g, o = (x[:, t] @ w[k].T + h @ r[k].T + b[k] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
    return h


def _cudnn_gru_sequence(
    x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    gates = {name: k for k, name in enumerate("zrh")}
    w = {n: _cudnn_matrix(kernel, k) for n, k in gates.items()}
    r = {n: _cudnn_matrix(recurrent, k) for n, k in gates.items()}
    bw = {n: bias[k * U : (k + 1) * U] for n, k in gates.items()}
    br = {n: bias[(3 + k) * U : (4 + k) * U] for n, k in gates.items()}
    h = np.zeros((len(x), U))
    steps = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        reset = _sigmoid(xt @ w["r"].T + bw["r"] + h @ r["r"].T + br["r"])
        update = _sigmoid(xt @ w["z"].T + bw["z"] + h @ r["z"].T + br["z"])
        new = np.tanh(xt @ w["h"].T + bw["h"] + reset * (h @ r["h"].T + br["h"]))
        h = (1 - update) * new + update * h
        steps.append(h)
    return np.stack(steps, axis=1)


def _keras2_rnn_config(class_name: str, name: str, **extra: Any) -> dict[str, Any]:
    """What Keras 2.2.4's CuDNNLSTM / CuDNNGRU get_config wrote."""
    config: dict[str, Any] = {
        "name": name,
        "trainable": True,
        "return_sequences": False,
        "return_state": False,
        "go_backwards": False,
        "stateful": False,
        "units": U,
        "kernel_initializer": {"class_name": "VarianceScaling", "config": {"seed": None}},
        "recurrent_initializer": {"class_name": "Orthogonal", "config": {"gain": 1.0}},
        "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": None,
        "recurrent_regularizer": None,
        "bias_regularizer": None,
        "activity_regularizer": None,
        "kernel_constraint": None,
        "recurrent_constraint": None,
        "bias_constraint": None,
        **extra,
    }
    return {"class_name": class_name, "config": config}


def _write_keras224_h5(
    path: Path,
    layers: list[dict[str, Any]],
    weights: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]],
    *,
    functional: bool = False,
) -> Path:
    """An .h5 laid out as Keras 2.2.4's save_model wrote it (bytes attributes).

    A Sequential of ``layers``, or with ``functional`` a Model chaining them from an InputLayer
    (the first layer's batch_input_shape moves to it).
    """
    config: dict[str, Any] = {
        "class_name": "Sequential",
        "config": {"name": "sequential_1", "layers": layers},
    }
    if functional:
        first = layers[0]["config"]
        nodes: list[dict[str, Any]] = [
            {
                "name": "input_1",
                "class_name": "InputLayer",
                "config": {
                    "batch_input_shape": first.pop("batch_input_shape"),
                    "dtype": first.pop("dtype"),
                    "sparse": False,
                    "name": "input_1",
                },
                "inbound_nodes": [],
            }
        ]
        for layer in layers:
            previous = nodes[-1]["name"]
            name = layer["config"]["name"]
            nodes.append({**layer, "name": name, "inbound_nodes": [[[previous, 0, 0, {}]]]})
        config = {
            "class_name": "Model",
            "config": {
                "name": "model_1",
                "layers": nodes,
                "input_layers": [["input_1", 0, 0]],
                "output_layers": [[nodes[-1]["name"], 0, 0]],
            },
        }
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        group = f.create_group("model_weights")
        group.attrs["keras_version"] = b"2.2.4"
        group.attrs["backend"] = b"tensorflow"
        group.attrs["layer_names"] = np.array([name.encode() for name, _ in weights])
        for layer_name, values in weights:
            layer_group = group.create_group(layer_name)
            layer_group.attrs["weight_names"] = np.array([n.encode() for n, _ in values])
            for weight_name, value in values:
                layer_group.create_dataset(weight_name, data=value.astype(np.float32))
    return path


@dataclass(frozen=True)
class CudnnFile:
    path: Path
    expected: Callable[[np.ndarray], np.ndarray]


@pytest.fixture(scope="module")
def cudnn_files(model_dir: Path) -> dict[str, CudnnFile]:
    rng = np.random.default_rng(11)

    def weights(gates: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            rng.uniform(-0.8, 0.8, (D, gates * U)),
            rng.uniform(-0.8, 0.8, (U, gates * U)),
            rng.uniform(-0.5, 0.5, (2 * gates * U,)),  # input biases, then recurrent ones
        )

    lstm = weights(4)
    gru = weights(3)
    forward, backward = weights(4), weights(4)
    shape = {"batch_input_shape": [None, T, D], "dtype": "float32"}
    files = {
        "lstm": CudnnFile(
            _write_keras224_h5(
                model_dir / "cudnn_lstm_own.h5",
                [_keras2_rnn_config("CuDNNLSTM", "cu_dnnlstm_1", unit_forget_bias=True, **shape)],
                [("cu_dnnlstm_1", _rnn_weights("cu_dnnlstm_1", lstm))],
            ),
            lambda x: _cudnn_lstm(x, *lstm),
        ),
        "gru_sequences": CudnnFile(
            _write_keras224_h5(
                model_dir / "cudnn_gru_own.h5",
                [
                    _keras2_rnn_config(
                        "CuDNNGRU", "cu_dnngru_1", **{**shape, "return_sequences": True}
                    )
                ],
                [("cu_dnngru_1", _rnn_weights("cu_dnngru_1", gru))],
            ),
            lambda x: _cudnn_gru_sequence(x, *gru),
        ),
        "bidirectional_lstm": CudnnFile(
            _write_keras224_h5(
                model_dir / "cudnn_bilstm_own.h5",
                [
                    {
                        "class_name": "Bidirectional",
                        "config": {
                            "name": "bidirectional_1",
                            "trainable": True,
                            **shape,
                            "layer": _keras2_rnn_config("CuDNNLSTM", "cu_dnnlstm_1"),
                            "merge_mode": "concat",
                        },
                    }
                ],
                [
                    (
                        "bidirectional_1",
                        _rnn_weights("bidirectional_1/forward_cu_dnnlstm_1", forward)
                        + _rnn_weights("bidirectional_1/backward_cu_dnnlstm_1", backward),
                    )
                ],
            ),
            lambda x: np.concatenate(
                [_cudnn_lstm(x, *forward), _cudnn_lstm(x[:, ::-1], *backward)], axis=-1
            ),
        ),
    }
    return files


def _rnn_weights(
    prefix: str, values: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> list[tuple[str, np.ndarray]]:
    names = ("kernel:0", "recurrent_kernel:0", "bias:0")
    return [(f"{prefix}/{n}", v) for n, v in zip(names, values, strict=True)]


@pytest.mark.parametrize("name", ["lstm", "gru_sequences", "bidirectional_lstm"])
def test_cudnn_layers_run_on_cpu_as_cudnn_computed_them(
    cudnn_files: dict[str, CudnnFile], name: str
) -> None:
    file = cudnn_files[name]
    model = load_model(file.path, file.path.name)
    assert model.loader == "tf_keras"
    assert "CuDNN" not in json.dumps(model.model.get_config())
    for n in (SMALL, LARGE):
        x = np.random.default_rng(n).normal(size=(n, T, D)).astype(np.float32)
        (got,) = model.predict([x])
        np.testing.assert_allclose(got, file.expected(x.astype(np.float64)), atol=1e-5)


# --- unsafe files: refused, and their code never runs ------------------------------------------


@pytest.mark.parametrize(
    "build", [kf.lambda_h5_file, kf.lambda_keras_file, kf.custom_layer_keras_file]
)
def test_unsafe_files_are_refused(model_dir: Path, build: Callable[[Path], Path]) -> None:
    path = build(model_dir)
    with pytest.raises(UnsafeModel):
        load_model(path, path.name)


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    """A file that a Lambda layer creates whenever its Python code runs."""
    return tmp_path / "lambda-ran"


def _marker_lambda_h5(directory: Path, marker: Path) -> Path:
    import tf_keras

    def touch(t: Any, path: str = str(marker)) -> Any:
        open(path, "a").close()
        return t * 2.0

    x = tf_keras.Input(shape=(4,), name="x")
    model = tf_keras.Model(x, tf_keras.layers.Lambda(touch, name="touch")(x))
    path = directory / "marker_lambda.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(path))
    marker.unlink()  # building the model ran it once
    return path


def _marker_lambda_keras(directory: Path, marker: Path) -> Path:
    import keras

    # A lambda (not a def) so that Keras 3 stores its bytecode; the path is baked into the code.
    touch = eval(f"lambda t: (open({str(marker)!r}, 'a').close(), t * 2.0)[1]")
    x = keras.Input(shape=(4,), name="x")
    model = keras.Model(x, keras.layers.Lambda(touch, name="touch")(x))
    path = directory / "marker_lambda.keras"
    model.save(str(path))
    marker.unlink()
    return path


def test_lambda_in_h5_is_refused_before_its_code_runs(tmp_path: Path, marker: Path) -> None:
    path = _marker_lambda_h5(tmp_path, marker)
    with pytest.raises(UnsafeModel):
        load_model(path, path.name)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("build", "fmt"), [(_marker_lambda_h5, "h5"), (_marker_lambda_keras, "keras")]
)
def test_worker_checks_the_config_itself_even_if_inspection_let_it_through(
    tmp_path: Path,
    marker: Path,
    monkeypatch: pytest.MonkeyPatch,
    build: Callable[[Path, Path], Path],
    fmt: str,
) -> None:
    # Fault injection: an inspection that forgot its safety check. UnsafeModel (rather than
    # the loader's own refusal, reported as UnsupportedModelFile) shows the worker's check ran.
    path = build(tmp_path, marker)
    spec = TensorSpec("x", [None, 4], "float32")
    version = "2.21.0" if fmt == "h5" else "3.15.1"
    info = ModelInfo(fmt, version, "tensorflow", "Functional", [spec], [spec])
    monkeypatch.setattr(model_loader, "inspect_model_file", lambda path, filename: info)
    with pytest.raises(UnsafeModel):
        load_model(path, path.name)
    assert not marker.exists()


def test_control_tf_keras_itself_runs_an_h5_lambda_even_in_safe_mode(
    tmp_path: Path, marker: Path
) -> None:
    # Why the check cannot be left to the loader, and proof that the marker does fire.
    import tf_keras

    path = _marker_lambda_h5(tmp_path, marker)
    tf_keras.models.load_model(str(path), compile=False, safe_mode=True)
    assert marker.exists()


def test_lambda_in_keras_zip_is_refused_before_its_code_runs(tmp_path: Path, marker: Path) -> None:
    path = _marker_lambda_keras(tmp_path, marker)
    with pytest.raises(UnsafeModel):
        load_model(path, path.name)
    assert not marker.exists()


def test_control_keras3_runs_a_zip_lambda_when_unsafe_loading_is_allowed(
    tmp_path: Path, marker: Path
) -> None:
    import keras

    path = _marker_lambda_keras(tmp_path, marker)
    keras.saving.load_model(str(path), compile=False, safe_mode=False)
    assert marker.exists()


# --- files that do not load ------------------------------------------------------------------


def test_weights_only_file_is_unsupported(model_dir: Path) -> None:
    path = kf.weights_only_h5_file(model_dir)
    with pytest.raises(UnsupportedModelFile):
        load_model(path, path.name)


def test_keras2_file_with_mismatched_weights_names_the_complaint_in_one_line(
    tmp_path: Path,
) -> None:
    dense = {
        "class_name": "Dense",
        "config": {
            "name": "dense_1",
            "units": 3,
            "activation": "softmax",
            "batch_input_shape": [None, 4],
            "dtype": "float32",
        },
    }
    wrong = np.zeros((5, 3), np.float32)  # the layer's kernel is (4, 3)
    path = _write_keras224_h5(
        tmp_path / "broken.h5",
        [dense],
        [("dense_1", [("dense_1/kernel:0", wrong), ("dense_1/bias:0", np.zeros(3))])],
    )
    with pytest.raises(UnsupportedModelFile) as caught:
        load_model(path, path.name)
    message = caught.value.message
    assert "tf_keras" in message
    assert "2.2.4" in message
    assert "(5, 3)" in message or "5, 3" in message  # the loader's own complaint
    assert "\n" not in message
    assert "Traceback" not in message


def _keras3_file_with_weights(model_dir: Path, tmp_path: Path, weights: bytes) -> Path:
    source = kf.keras3_keras_file(model_dir)
    path = tmp_path / "corrupt.keras"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, weights if item.filename.endswith(".h5") else data)
    return path


def test_keras3_file_with_weights_that_are_not_hdf5_is_refused_before_loading(
    model_dir: Path, tmp_path: Path
) -> None:
    path = _keras3_file_with_weights(model_dir, tmp_path, b"not hdf5")
    with pytest.raises(UnsupportedModelFile) as caught:
        load_model(path, path.name)
    assert "model.weights.h5" in caught.value.message
    assert "\n" not in caught.value.message


def test_keras3_file_with_weights_keras_cannot_use_is_unsupported(
    model_dir: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("other")
    path = _keras3_file_with_weights(model_dir, tmp_path, empty.read_bytes())
    with pytest.raises(UnsupportedModelFile) as caught:
        load_model(path, path.name)
    assert "Keras 3" in caught.value.message
    assert "\n" not in caught.value.message


def test_model_that_cannot_run_fails_warm_up_with_the_complaint(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow as tf

    path = kf.keras3_keras_file(model_dir)
    model = load_model(path, path.name)
    # Fault injection: the graph fails the way TensorFlow reports a runtime error.
    error = tf.errors.InvalidArgumentError(
        None,
        None,
        "Graph execution error:\n\nDetected at node while/add defined at (most recent call "
        'last):\n  File "model.py", line 3\n\nIncompatible shapes: [1,16] vs. [2,16]\n'
        "\t [[{{node while/add}}]] [Op:__inference_call_42]",
    )

    def fail(*tensors: Any) -> Any:
        raise error

    monkeypatch.setattr(model, "_graph", fail)
    with pytest.raises(UnsupportedModelFile) as caught:
        model.warm_up()
    assert caught.value.message == (
        "The model loaded but could not run on a zero row: Incompatible shapes: [1,16] vs. [2,16]"
    )


# --- inputs the model cannot take ------------------------------------------------------------


@pytest.fixture(scope="module")
def dense_model(model_dir: Path) -> LoadedModel:
    path = kf.keras3_keras_file(model_dir)
    return load_model(path, path.name)


def test_wrong_number_of_inputs_is_a_scoring_error(dense_model: LoadedModel) -> None:
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ScoringInputInvalid):
        dense_model.predict([x, x])


def test_wrong_row_shape_is_a_scoring_error(dense_model: LoadedModel) -> None:
    with pytest.raises(ScoringInputInvalid) as caught:
        dense_model.predict([np.zeros((2, 5), np.float32)])
    assert caught.value.details["expected_shape"] == [None, 4]


def test_float64_and_int_rows_are_cast_to_the_model_dtype(dense_model: LoadedModel) -> None:
    x = np.arange(8).reshape(2, 4)
    (got,) = dense_model.predict([x])
    np.testing.assert_allclose(got, kf.expected_dense_softmax(x), atol=ATOL)


# --- loader choice and import hygiene ------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "version", "loader"),
    [
        ("h5", "3.15.1", "keras"),
        ("h5", "2.21.0", "tf_keras"),
        ("h5", "2.2.4", "tf_keras"),
        ("h5", None, "tf_keras"),
        ("keras", "3.0.0", "keras"),
        ("keras", "2.15.0", "tf_keras"),
        ("keras", None, "keras"),
    ],
)
def test_choose_loader_by_writer(fmt: str, version: str | None, loader: str) -> None:
    info = ModelInfo(
        format=fmt,
        keras_version=version,
        backend=None,
        model_class="Sequential",
        inputs=[],
        outputs=[],
    )
    assert choose_loader(info) == loader


def test_importing_the_module_does_not_import_tensorflow() -> None:
    code = "import sys, workers.model_loader; assert 'tensorflow' not in sys.modules, 'tf'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_direct_call_max_rows_must_be_positive(model_dir: Path) -> None:
    path = kf.keras3_keras_file(model_dir)
    with pytest.raises(ValueError):
        load_model(path, path.name, direct_call_max_rows=0)


# --- Keras 2 conventions that tf_keras dropped -----------------------------------------------


def _save_tf_keras_h5(model: Any, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(path))
    return path


def test_theano_trained_convolution_kernels_are_flipped_back(tmp_path: Path) -> None:
    import tf_keras

    rng = np.random.default_rng(21)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Conv2D(2, 3, input_shape=(6, 6, 1), name="conv"),
            tf_keras.layers.Flatten(name="flat"),
            tf_keras.layers.Dense(2, name="out"),
        ]
    )
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    x = rng.normal(size=(SMALL, 6, 6, 1)).astype(np.float32)
    want = model(x).numpy()
    path = _save_tf_keras_h5(model, tmp_path / "theano_cnn.h5")
    # The same model trained under Theano: Theano convolves where TensorFlow correlates, so
    # its file holds the kernel flipped along both spatial axes.
    with h5py.File(path, "r+") as f:
        for group in (f, f["model_weights"]):
            group.attrs["backend"] = b"theano"
        kernel = f["model_weights/conv/conv/kernel:0"]
        kernel[...] = kernel[()][::-1, ::-1, :, :]
    (got,) = load_model(path, path.name).predict([x])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_stateful_rnn_scores_any_batch_size_from_a_zero_state(tmp_path: Path) -> None:
    import tf_keras

    inputs = tf_keras.Input(batch_shape=(2, kf.LSTM_TIMESTEPS, kf.LSTM_FEATURES), name="seq")
    h = tf_keras.layers.LSTM(kf.LSTM_UNITS, stateful=True, name="lstm")(inputs)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(1, "sigmoid", name="score")(h))
    model.get_layer("lstm").set_weights([kf.LSTM_KERNEL, kf.LSTM_RECURRENT_KERNEL, kf.LSTM_BIAS])
    model.get_layer("score").set_weights([kf.LSTM_DENSE_KERNEL, kf.LSTM_DENSE_BIAS])
    path = _save_tf_keras_h5(model, tmp_path / "stateful_lstm.h5")
    loaded = load_model(path, path.name)
    for n in (SMALL, LARGE, SMALL):  # a carried-over state would change the repeated batch
        x = np.random.default_rng(n).normal(size=(n, 5, 3)).astype(np.float32)
        (got,) = loaded.predict([x])
        np.testing.assert_allclose(got, kf.expected_lstm_sigmoid(x), atol=ATOL)


def _keras224_hard_sigmoid_lstm(directory: Path) -> tuple[Path, Callable[[np.ndarray], np.ndarray]]:
    """A Keras 2.2.4 functional LSTM with that version's default recurrent_activation."""
    rng = np.random.default_rng(31)
    kernel = rng.uniform(-1.5, 1.5, (D, 4 * U))
    recurrent = rng.uniform(-1.5, 1.5, (U, 4 * U))
    bias = rng.uniform(-1.0, 1.0, (4 * U,))
    config = _keras2_rnn_config(
        "LSTM",
        "lstm_1",
        batch_input_shape=[None, T, D],
        dtype="float32",
        unroll=False,
        activation="tanh",
        recurrent_activation="hard_sigmoid",
        use_bias=True,
        unit_forget_bias=True,
        dropout=0.0,
        recurrent_dropout=0.0,
        implementation=1,
    )
    path = _write_keras224_h5(
        directory / "keras224_hard_sigmoid_lstm.h5",
        [config],
        [("lstm_1", _rnn_weights("lstm_1", (kernel, recurrent, bias)))],
        functional=True,
    )

    def expected(x: np.ndarray) -> np.ndarray:
        # Keras 2's hard_sigmoid: clip(0.2 * x + 0.5, 0, 1). Keras 3 changed it to relu6(x+3)/6.
        def hard(z: np.ndarray) -> np.ndarray:
            out: np.ndarray = np.clip(0.2 * z + 0.5, 0.0, 1.0)
            return out

        h = np.zeros((len(x), U))
        c = np.zeros((len(x), U))
        for t in range(T):
            z = x[:, t] @ kernel + h @ recurrent + bias
            i, f, g, o = (z[:, k * U : (k + 1) * U] for k in range(4))
            c = hard(f) * c + hard(i) * np.tanh(g)
            h = hard(o) * np.tanh(c)
        return h

    return path, expected


def test_keras2_hard_sigmoid_keeps_its_keras2_meaning(tmp_path: Path) -> None:
    path, expected = _keras224_hard_sigmoid_lstm(tmp_path)
    model = load_model(path, path.name)
    assert model.loader == "tf_keras"
    x = np.random.default_rng(32).normal(size=(LARGE, T, D)).astype(np.float32)
    (got,) = model.predict([x])
    np.testing.assert_allclose(got, expected(x.astype(np.float64)), atol=1e-5)


def test_control_keras3_reads_the_same_file_but_predicts_otherwise(tmp_path: Path) -> None:
    # Why Keras 2 files do not go to Keras 3 even when it can read them: it loads silently and
    # answers differently.
    import keras

    path, expected = _keras224_hard_sigmoid_lstm(tmp_path)
    x = np.random.default_rng(33).normal(size=(SMALL, T, D)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras 3 notes the Keras 2 input structure
        got = np.asarray(keras.saving.load_model(str(path), compile=False)([x]))
    assert np.abs(got - expected(x.astype(np.float64))).max() > 1e-3
