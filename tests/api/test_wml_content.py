"""A WML upload's bytes are named by their magic, whatever the tar's compression."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from api.wml.content import PrefixedStream, read_head, upload_suffix
from shared.errors import UnsupportedModelFile

HDF5 = b"\x89HDF\r\n\x1a\n" + b"\0" * 600


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_every_tar_is_read_as_a_tar(mode: str, tmp_path: Path) -> None:
    member = tmp_path / "model.h5"
    member.write_bytes(HDF5)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:  # type: ignore[call-overload]
        tar.add(member, arcname="model.h5")
    assert upload_suffix(read_head(io.BytesIO(buffer.getvalue()))) == ".tgz"


def test_zip_and_hdf5_and_garbage() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("config.json", "{}")
    assert upload_suffix(read_head(io.BytesIO(buffer.getvalue()))) == ".zip"
    assert upload_suffix(read_head(io.BytesIO(HDF5))) == ".h5"
    for garbage in (b"", b"{}", b"not a model"):
        with pytest.raises(UnsupportedModelFile):
            upload_suffix(read_head(io.BytesIO(garbage)))


def test_the_sniffed_bytes_are_not_lost() -> None:
    data = bytes(range(256)) * 40
    stream = io.BytesIO(data)
    head = read_head(stream)
    prefixed = PrefixedStream(head, stream)
    copied = b"".join(iter(lambda: prefixed.read(1000), b""))
    assert copied == data
