"""The builders of tests/keras_files.py write what they claim: layouts and known predictions."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from tests import keras_files as kf
from tests.shared.keras_file.helpers import Builder, Built


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return Built(tmp_path_factory.mktemp("keras_files"))


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
