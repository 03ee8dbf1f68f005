"""The structural checks before any config is read (issue 9): magic bytes, HDF5 links and
datasets, .keras members, archive members, and the caps of ``shared.keras_file.safety``."""

from __future__ import annotations

import bz2
import io
import lzma
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from shared.errors import UnsafeModel, UnsafeModelFile, UnsupportedModelFile
from shared.keras_file import (
    caps,
    detect_kind,
    extract_model_file,
    find_unsafe_layers,
    inspect_model_file,
)
from tests import hostile_models as hm
from tests import keras_files as kf
from tests.shared.keras_file.helpers import Built, inspect


def check(path: Path) -> None:
    """What the API does with an upload before storing it: extract, then inspect."""
    model, inner = extract_model_file(path, path.name, path.parent / "out")
    inspect_model_file(model, inner)


def refusal(path: Path) -> UnsafeModelFile:
    with pytest.raises(UnsafeModelFile) as caught:
        check(path)
    assert caught.value.status == 422
    assert caught.value.code == "unsafe_model_file"
    return caught.value


@pytest.mark.parametrize("hostile", hm.CORPUS, ids=[h.id for h in hm.CORPUS])
def test_every_file_of_the_corpus_is_refused_without_a_loader(
    tmp_path: Path, hostile: hm.Hostile
) -> None:
    marker = tmp_path / "marker"
    path = hostile.build(tmp_path, marker)
    with pytest.raises((UnsafeModel, UnsupportedModelFile)) as caught:
        check(path)
    error: Any = caught.value
    assert (error.status, error.code, error.details.get("reason")) == (
        hostile.status,
        hostile.code,
        hostile.reason,
    ), error.message
    assert not marker.exists()


# --- magic bytes ------------------------------------------------------------------------------


def test_detect_kind_names_every_compression_of_a_tar(built: Built, tmp_path: Path) -> None:
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        tar.add(str(built(kf.tf_keras_h5_file)), arcname="model.h5")
    for kind, data in [
        ("tar", tar_bytes.getvalue()),
        ("bzip2", bz2.compress(tar_bytes.getvalue())),
        ("xz", lzma.compress(tar_bytes.getvalue())),
    ]:
        path = tmp_path / f"{kind}.tgz"
        path.write_bytes(data)
        assert detect_kind(path) == kind
        extracted, inner = extract_model_file(path, path.name, tmp_path / kind)
        assert inner == "model.h5"
        assert extracted.read_bytes() == built(kf.tf_keras_h5_file).read_bytes()


def test_a_contradicting_extension_says_what_the_file_is(built: Built, tmp_path: Path) -> None:
    path = hm.zip_that_is_hdf5(tmp_path, tmp_path / "m")
    with pytest.raises(UnsupportedModelFile) as caught:
        extract_model_file(path, path.name, tmp_path / "out")
    assert "is an HDF5 file, not a zip archive" in caught.value.message
    assert "rename it to end in .h5" in caught.value.message
    assert caught.value.details["detected"] == "hdf5"


# --- HDF5 ---------------------------------------------------------------------------------------


def test_the_external_link_names_its_target_and_is_never_followed(tmp_path: Path) -> None:
    path = hm.h5_external_link(tmp_path, tmp_path / "m")
    (tmp_path / "elsewhere.h5").unlink()  # following the link would now fail differently
    error = refusal(path)
    assert error.details["reason"] == "hdf5_external_link"
    assert error.details["path"] == "/model_weights"
    assert "elsewhere.h5" in error.message


def test_a_hard_link_cycle_is_walked_once(built: Built, tmp_path: Path) -> None:
    path = Path(shutil.copy(built(kf.tf_keras_h5_file), tmp_path / "cycle.h5"))
    with h5py.File(path, "r+") as f:
        f["model_weights/probs/loop"] = f["model_weights"]
    assert inspect(path).outputs[0].activation == "softmax"


def test_an_unknown_filter_is_refused(built: Built, tmp_path: Path) -> None:
    path = Path(shutil.copy(built(kf.tf_keras_h5_file), tmp_path / "filter.h5"))
    with h5py.File(path, "r+") as f:
        f.create_dataset(
            "packed", (10,), "f4", chunks=(5,), compression=32001, allow_unknown_filter=True
        )
    assert refusal(path).details["reason"] == "hdf5_filter"


@pytest.mark.parametrize(
    ("cap", "value", "reason"),
    [
        ("MAX_HDF5_LINKS", 3, "hdf5_too_many_links"),
        ("MAX_HDF5_DEPTH", 1, "hdf5_too_deep"),
        ("MAX_HDF5_DECLARED_BYTES", 10, "hdf5_too_large"),
    ],
)
def test_hdf5_caps(
    built: Built,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cap: str,
    value: int,
    reason: str,
) -> None:
    monkeypatch.setattr(caps, cap, value)
    assert refusal(built(kf.tf_keras_h5_file)).details["reason"] == reason


def test_a_small_unwritten_dataset_is_no_bomb(built: Built, tmp_path: Path) -> None:
    path = Path(shutil.copy(built(kf.tf_keras_h5_file), tmp_path / "small.h5"))
    with h5py.File(path, "r+") as f:
        f.create_dataset("empty", shape=(1000,), dtype=np.float32, chunks=(100,))
    inspect(path)


# --- .keras members --------------------------------------------------------------------------


def test_keras_assets_are_expected_members(built: Built, tmp_path: Path) -> None:
    path = Path(shutil.copy(built(kf.keras3_keras_file), tmp_path / "assets.keras"))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("assets/string_lookup/vocabulary.txt", "a\nb\n")
    assert inspect(path).outputs[0].activation == "softmax"


def test_a_member_given_twice_is_refused(built: Built, tmp_path: Path) -> None:
    path = Path(shutil.copy(built(kf.keras3_keras_file), tmp_path / "twice.keras"))
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("config.json", "{}")
    assert refusal(path).details["reason"] == "archive_duplicate_member"


def test_a_member_whose_bytes_fail_their_crc_is_damaged(built: Built, tmp_path: Path) -> None:
    data = bytearray(built(kf.keras3_keras_file).read_bytes())
    # The weights member is stored (not deflated): flip a byte of it so its CRC fails.
    offset = data.index(b"\x89HDF\r\n\x1a\n") + 100
    data[offset] ^= 0xFF
    path = tmp_path / "crc.keras"
    path.write_bytes(bytes(data))
    with pytest.raises(UnsupportedModelFile, match="truncated or damaged"):
        inspect(path)


def test_keras_member_cap(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caps, "MAX_ARCHIVE_MEMBERS", 2)
    assert refusal(built(kf.keras3_keras_file)).details["reason"] == "archive_too_many_members"


def test_unpacked_size_cap(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caps, "MAX_UNPACKED_BYTES", 1000)
    assert refusal(built(kf.keras3_keras_file)).details["reason"] == "archive_too_large"
    archive = kf.tar_gz_of(built(kf.tf_keras_h5_file), tmp_path)
    assert refusal(archive).details["reason"] in ("archive_too_large", "tar_bomb")


# --- configs -------------------------------------------------------------------------------------


def test_a_config_at_the_depth_cap_is_read_and_one_past_it_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = kf.json.loads(kf.json.dumps(_dense_config()))
    depth = caps.config_depth(config)
    monkeypatch.setattr(caps, "MAX_CONFIG_DEPTH", depth)
    (tmp_path / "ok").mkdir()
    inspect(_h5_with(tmp_path / "ok", config))
    monkeypatch.setattr(caps, "MAX_CONFIG_DEPTH", depth - 1)
    (tmp_path / "deep").mkdir()
    assert refusal(_h5_with(tmp_path / "deep", config)).details["reason"] == "config_too_deep"


def test_the_safety_walk_takes_any_depth_without_recursing() -> None:
    nested: dict[str, Any] = {"class_name": "Lambda", "config": {"name": "deepest"}}
    for level in range(20_000):
        nested = {"class_name": "Sequential", "config": {"name": f"s{level}", "layers": [nested]}}
    (finding,) = find_unsafe_layers(nested)
    assert (finding["name"], finding["class_name"]) == ("deepest", "Lambda")
    assert caps.config_depth(nested, limit=100) == 101


def _dense_config() -> dict[str, Any]:
    from tests.shared.keras_file.helpers import dense, functional

    config = functional(dense())
    config["config"]["layers"][0]["config"]["batch_input_shape"] = [None, 4]
    return config


def _h5_with(directory: Path, config: Any) -> Path:
    from tests.shared.keras_file.helpers import h5_with_config

    return h5_with_config(directory, config, keras_version="2.21.0")


def test_deflated_keras_weights_are_checked_too(built: Built, tmp_path: Path) -> None:
    # Keras stores members uncompressed; a user who zipped the file again deflated them.
    source = built(kf.keras3_keras_file)
    path = tmp_path / "deflated.keras"
    with (
        zipfile.ZipFile(source) as zin,
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zout,
    ):
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item.filename))
    assert inspect(path).outputs[0].activation == "softmax"
    linked = hm.keras_weights_external_link(tmp_path, tmp_path / "m")
    deflated = tmp_path / "linked_deflated.keras"
    with (
        zipfile.ZipFile(linked) as zin,
        zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as zout,
    ):
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item.filename))
    assert refusal(deflated).details["reason"] == "hdf5_external_link"
