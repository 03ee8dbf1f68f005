"""Reading model files (shared.keras_file.container): every dialect, and what is not a model."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from shared.errors import UnsafeModelFile, UnsupportedModelFile
from shared.keras_file import detect_kind, inspect_model_file, read_model_config
from shared.keras_file.container import read_raw_model
from tests import keras_files as kf
from tests.shared.keras_file.helpers import Builder, Built, inspect


@pytest.mark.parametrize(
    ("builder", "fmt", "version", "backend", "model_class"),
    [
        (kf.keras3_keras_file, "keras", "3.", None, "Functional"),
        (kf.keras3_h5_file, "h5", "3.", "tensorflow", "Functional"),
        (kf.keras3_sequential_h5_file, "h5", "3.", "tensorflow", "Sequential"),
        (kf.tf_keras_h5_file, "h5", "2.", "tensorflow", "Functional"),
        (kf.tf_keras_sequential_h5_file, "h5", "2.", "tensorflow", "Sequential"),
        (kf.keras2_standalone_h5_file, "h5", "2.2.4", "tensorflow", "Sequential"),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_dialect_metadata(
    built: Built, builder: Builder, fmt: str, version: str, backend: str | None, model_class: str
) -> None:
    path = built(builder)
    raw = read_raw_model(path, path.name)
    assert raw.format == fmt
    assert raw.keras_version is not None and raw.keras_version.startswith(version)
    assert raw.backend == backend
    assert raw.config["class_name"] == model_class
    assert inspect(path).model_class == model_class


def test_keras_before_223_stored_a_sequential_as_a_bare_list(built: Built) -> None:
    path = built(kf.keras2_standalone_h5_file, "2.1.6")
    config = read_model_config(path, path.name)
    assert isinstance(config["config"], list)
    info = inspect(path)
    assert info.keras_version == "2.1.6"
    assert info.model_class == "Sequential"
    assert [i.shape for i in info.inputs] == [[None, 4]]
    assert info.outputs[0].activation == "softmax"


def test_bare_list_can_be_forced_for_any_version(built: Built) -> None:
    path = built(kf.keras2_standalone_h5_file, "2.2.4", sequential_as_list=True)
    assert isinstance(read_model_config(path, path.name)["config"], list)
    assert [o.name for o in inspect(path).outputs] == ["dense_1"]


def test_keras3_legacy_h5_records_batch_shape_and_dtype_policies(built: Built) -> None:
    path = built(kf.keras3_h5_file)
    layers = read_model_config(path, path.name)["config"]["layers"]
    assert layers[0]["config"]["batch_shape"] == [None, 4]
    assert layers[1]["config"]["dtype"]["class_name"] == "DTypePolicy"
    assert inspect(path).outputs[0].dtype == "float32"


def test_training_config_is_kept_for_the_safety_check(built: Built) -> None:
    path = built(kf.tf_keras_h5_file)
    raw = read_raw_model(path, path.name)
    assert raw.other_configs["training_config"]["loss"] == "categorical_crossentropy"
    keras_zip = built(kf.keras3_keras_file)
    assert read_raw_model(keras_zip, keras_zip.name).other_configs == {}


# --- refusals ----------------------------------------------------------------------------------


def test_weights_only_files_are_refused_with_what_to_do(built: Built) -> None:
    for builder in (kf.weights_only_h5_file, kf.keras3_weights_only_h5_file):
        with pytest.raises(UnsupportedModelFile) as caught:
            inspect(built(builder))
        assert caught.value.status == 400
        assert "save_weights()" in caught.value.message
        assert "model.save()" in caught.value.message


def test_hdf5_without_a_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(UnsupportedModelFile, match="no model_config"):
        inspect(path)


def test_not_a_model_file(built: Built) -> None:
    with pytest.raises(UnsupportedModelFile) as caught:
        inspect_model_file(built(kf.not_a_model_file), "model.h5")
    assert caught.value.code == "unsupported_model_file"
    assert "not a Keras model file: expected an HDF5 (.h5/.hdf5) or Keras zip (.keras) file" in (
        caught.value.message
    )


def test_empty_file(built: Built) -> None:
    with pytest.raises(UnsupportedModelFile, match="empty"):
        inspect(built(kf.empty_file))


def test_zip_without_config_json_is_not_a_keras_file(tmp_path: Path) -> None:
    path = kf.zip_of(None, tmp_path, extra_members=[("metadata.json", b"{}")], name="model.keras")
    with pytest.raises(UnsupportedModelFile, match=r"without config\.json"):
        inspect(path)


def test_damaged_config_json_is_refused(tmp_path: Path) -> None:
    path = kf.zip_of(None, tmp_path, extra_members=[("config.json", b"{oops")], name="m.keras")
    with pytest.raises(UnsupportedModelFile, match="not valid JSON"):
        inspect(path)


def test_extension_that_contradicts_the_content_says_how_to_fix_it(
    built: Built, tmp_path: Path
) -> None:
    keras_zip = shutil.copy(built(kf.keras3_keras_file), tmp_path / "model.h5")
    with pytest.raises(UnsupportedModelFile, match=r"rename it to end in \.keras"):
        inspect(Path(keras_zip))
    hdf5 = shutil.copy(built(kf.tf_keras_h5_file), tmp_path / "model.keras")
    with pytest.raises(UnsupportedModelFile, match=r"rename it to end in \.h5"):
        inspect(Path(hdf5))


def test_detect_kind(built: Built, tmp_path: Path) -> None:
    assert detect_kind(built(kf.tf_keras_h5_file)) == "hdf5"
    assert detect_kind(built(kf.keras3_keras_file)) == "zip"
    assert detect_kind(kf.tar_gz_of(built(kf.tf_keras_h5_file), tmp_path)) == "gzip"
    assert detect_kind(built(kf.empty_file)) == "empty"
    assert detect_kind(built(kf.not_a_model_file)) == "unknown"


def test_oversized_config_json_is_refused(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.keras_file.caps.MAX_CONFIG_BYTES", 100)
    path = Path(shutil.copy(built(kf.keras3_keras_file), tmp_path / "big_config.keras"))
    with pytest.raises(UnsafeModelFile, match="more than a Keras config ever needs") as caught:
        inspect(path)
    assert caught.value.details["reason"] == "config_too_large"
