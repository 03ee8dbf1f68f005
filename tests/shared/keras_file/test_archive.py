"""Uploads that are archives (shared.keras_file.archive): one model file out, every refusal."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from shared.errors import PayloadTooLarge, UnsafeModelFile, UnsupportedModelFile
from shared.keras_file import extract_model_file, inspect_model_file
from tests import keras_files as kf
from tests.shared.keras_file.helpers import Builder, Built


def test_model_files_pass_through_unchanged(built: Built, tmp_path: Path) -> None:
    path = built(kf.tf_keras_h5_file)
    for name in ("model.h5", "MODEL.HDF5", "model.keras"):
        assert extract_model_file(path, name, tmp_path / "out") == (path, name)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz", ".zip"])
def test_archive_with_one_model_and_macos_junk(built: Built, tmp_path: Path, suffix: str) -> None:
    model = built(kf.tf_keras_h5_file)
    junk: list[kf.ExtraMember] = [
        ("__MACOSX/models/._model.h5", b"\x00\x05\x16\x07"),
        ("models/._model.h5", b"\x00\x05\x16\x07"),
        ("README.md", b"# my model"),
    ]
    make = kf.zip_of if suffix == ".zip" else kf.tar_gz_of
    archive = make(
        model, tmp_path, arcname="models/model.h5", extra_members=junk, name=f"up{suffix}"
    )
    extracted, inner = extract_model_file(archive, archive.name, tmp_path / "out")
    assert inner == "model.h5"
    assert extracted == tmp_path / "out" / "model.h5"
    assert extracted.read_bytes() == model.read_bytes()
    assert inspect_model_file(extracted, inner).outputs[0].activation == "softmax"


@pytest.mark.parametrize("make", [kf.tar_gz_of, kf.zip_of], ids=["tar", "zip"])
def test_archive_without_a_model_says_what_it_found(tmp_path: Path, make: Builder) -> None:
    archive = make(None, tmp_path, extra_members=[("notes.txt", b"x"), ("data.csv", b"1,2")])
    with pytest.raises(UnsupportedModelFile) as caught:
        extract_model_file(archive, archive.name, tmp_path / "out")
    assert "holds no Keras model file" in caught.value.message
    assert "notes.txt" in caught.value.message and "data.csv" in caught.value.message


@pytest.mark.parametrize("make", [kf.tar_gz_of, kf.zip_of], ids=["tar", "zip"])
def test_archive_with_two_models_names_them(built: Built, tmp_path: Path, make: Builder) -> None:
    archive = make(
        built(kf.tf_keras_h5_file), tmp_path, extra_members=[built(kf.sigmoid_binary_h5_file)]
    )
    with pytest.raises(UnsupportedModelFile) as caught:
        extract_model_file(archive, archive.name, tmp_path / "out")
    assert "2 model files" in caught.value.message
    assert "tf_keras_dense.h5" in caught.value.message
    assert "sigmoid_binary.h5" in caught.value.message


@pytest.mark.parametrize("member", ["../evil.h5", "/tmp/evil.h5", "a/../../evil.h5"])
@pytest.mark.parametrize("make", [kf.tar_gz_of, kf.zip_of], ids=["tar", "zip"])
def test_path_traversal_is_refused(
    built: Built, tmp_path: Path, make: Builder, member: str
) -> None:
    # Written through extra_members: tarfile.add and ZipFile.write would strip such names.
    model = built(kf.tf_keras_h5_file).read_bytes()
    suffix = ".zip" if make is kf.zip_of else ".tar.gz"
    archive = make(None, tmp_path, extra_members=[(member, model)], name=f"evil{suffix}")
    with pytest.raises(UnsafeModelFile, match="unsafe path") as caught:
        extract_model_file(archive, archive.name, tmp_path / "out")
    assert caught.value.details["reason"] == "archive_member_path"
    assert not (tmp_path / "evil.h5").exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("model.h5")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(UnsafeModelFile, match="is a link"):
        extract_model_file(archive, archive.name, tmp_path / "out")


def test_zip_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("model.h5")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeModelFile, match="symbolic link"):
        extract_model_file(archive, archive.name, tmp_path / "out")


@pytest.mark.parametrize("make", [kf.tar_gz_of, kf.zip_of], ids=["tar", "zip"])
def test_extraction_is_bounded(built: Built, tmp_path: Path, make: Builder) -> None:
    model = built(kf.tf_keras_h5_file)
    archive = make(model, tmp_path)
    with pytest.raises(PayloadTooLarge):
        extract_model_file(archive, archive.name, tmp_path / "out", max_bytes=1000)
    assert list((tmp_path / "out").glob("*")) == []


def test_keras_file_uploaded_as_zip_is_taken_as_that_model(built: Built, tmp_path: Path) -> None:
    upload = shutil.copy(built(kf.keras3_keras_file), tmp_path / "my_model.zip")
    extracted, inner = extract_model_file(Path(upload), "my_model.zip", tmp_path / "out")
    assert inner == "my_model.keras"
    assert extracted.read_bytes() == Path(upload).read_bytes()
    info = inspect_model_file(extracted, inner)
    assert (info.format, info.inputs[0].shape) == ("keras", [None, 4])


def test_keras_file_inside_a_tarball(built: Built, tmp_path: Path) -> None:
    archive = kf.tar_gz_of(built(kf.multi_io_keras_file), tmp_path)
    extracted, inner = extract_model_file(archive, archive.name, tmp_path / "out")
    assert inner == "multi_io.keras"
    assert len(inspect_model_file(extracted, inner).inputs) == 2


def test_other_extensions_are_refused_naming_the_accepted_ones(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x04")
    with pytest.raises(UnsupportedModelFile) as caught:
        extract_model_file(path, "model.pkl", tmp_path / "out")
    for ext in (".h5", ".hdf5", ".keras", ".tar.gz", ".tgz", ".zip"):
        assert ext in caught.value.message
    assert caught.value.details["accepted_extensions"] == [
        ".h5",
        ".hdf5",
        ".keras",
        ".tar.gz",
        ".tgz",
        ".zip",
    ]


@pytest.mark.parametrize("name", ["broken.tar.gz", "broken.zip"])
def test_damaged_archives_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(
        b"\x1f\x8b\x08 this is not really gzip" if name.endswith("gz") else b"PK\x03\x04 junk"
    )
    with pytest.raises(UnsupportedModelFile, match="not a readable"):
        extract_model_file(path, name, tmp_path / "out")


@pytest.mark.parametrize("make", [kf.tar_gz_of, kf.zip_of], ids=["tar", "zip"])
def test_archive_with_too_many_members_is_refused(
    tmp_path: Path, make: Builder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.keras_file.caps.MAX_ARCHIVE_MEMBERS", 3)
    members = [(f"f{i}.txt", b"x") for i in range(4)]
    archive = make(
        None,
        tmp_path,
        extra_members=members,
        name="many" + (".zip" if make is kf.zip_of else ".tar.gz"),
    )
    with pytest.raises(UnsafeModelFile, match="more than 3 members"):
        extract_model_file(archive, archive.name, tmp_path / "out")
