"""Unpack an upload that is an archive (.tar.gz, .tgz, .zip) holding one Keras model file.

WML users uploaded models so. The archive is a stranger's file too, so before one byte is
extracted: its kind is checked by magic bytes (a ``.zip`` must be a zip; a ``.tgz`` a tar,
gzip-, bzip2-, xz-compressed or plain), and every member against the rules and caps of
:mod:`shared.keras_file.safety`: at most ``MAX_ARCHIVE_MEMBERS``, names relative without
``..``, regular files and directories only (no links, no devices), not encrypted, sizes and
compression ratios under the caps; a tar is decompressed through a counter that stops at the
cap, so a bomb costs a bounded read. Exactly one model file must be present (macOS litter
aside); its bytes are copied under a size limit into a file named by its base name only.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import posixpath
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from shared.errors import PayloadTooLarge, UnsupportedModelFile
from shared.keras_file import caps
from shared.keras_file.caps import MAX_ARCHIVE_MEMBERS, refuse_file
from shared.keras_file.container import MODEL_EXTENSIONS, detect_kind, wrong_kind
from shared.keras_file.structure import (
    check_zip_members,
    too_many_members,
    unsafe_member_name,
    unsafe_member_path,
)

__all__ = [
    "ARCHIVE_EXTENSIONS",
    "DEFAULT_MAX_EXTRACTED_BYTES",
    "MAX_ARCHIVE_MEMBERS",
    "extract_model_file",
]

#: Extensions of an archive that holds one model file.
ARCHIVE_EXTENSIONS = (".tar.gz", ".tgz", ".zip")

#: Largest model member extracted from an archive when the caller gives no limit.
DEFAULT_MAX_EXTRACTED_BYTES = 1024**3

# How a tar may be compressed (WML clients sent all of these under .tgz), by detect_kind.
_TAR_KINDS = ("gzip", "bzip2", "xz", "tar")
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)


def extract_model_file(
    path: Path, filename: str, workdir: Path, *, max_bytes: int = DEFAULT_MAX_EXTRACTED_BYTES
) -> tuple[Path, str]:
    """The model file inside an upload: ``path`` itself, or the one member of an archive.

    ``filename`` is the upload's name (its extension decides, once the magic bytes agree); a
    member is copied into ``workdir`` under its base name, at most ``max_bytes`` bytes.
    Returns the model file's path and name. Raises UnsupportedModelFile (400) for another
    extension, content that contradicts the extension, a damaged archive, none or several
    model files; UnsafeModelFile (422) for an unsafe, linked, encrypted or oversized member,
    too many members or a decompression bomb; PayloadTooLarge (413) past ``max_bytes``.
    """
    lowered = filename.lower()
    if lowered.endswith(MODEL_EXTENSIONS):
        return path, filename
    if lowered.endswith((".tar.gz", ".tgz")):
        kind = detect_kind(path)
        if kind not in _TAR_KINDS:
            raise wrong_kind(filename, kind, "a tar archive")
        return _extract_from_tar(path, kind, filename, workdir, max_bytes)
    if lowered.endswith(".zip"):
        kind = detect_kind(path)
        if kind != "zip":
            raise wrong_kind(filename, kind, "a zip archive")
        return _extract_from_zip(path, filename, workdir, max_bytes)
    raise UnsupportedModelFile(
        f"{filename!r} is not a file kscore accepts: upload a Keras model file "
        "(.h5, .hdf5, .keras) or a .tar.gz, .tgz or .zip archive holding exactly one.",
        details={
            "filename": filename,
            "accepted_extensions": list(MODEL_EXTENSIONS + ARCHIVE_EXTENSIONS),
        },
    )


def _is_junk(name: str) -> bool:
    """macOS archive litter: ``__MACOSX/`` folders and ``._name`` resource forks."""
    parts = [part for part in name.replace("\\", "/").split("/") if part]
    return any(part == "__MACOSX" for part in parts) or bool(parts and parts[-1].startswith("._"))


def _is_model_name(name: str) -> bool:
    return name.lower().endswith(MODEL_EXTENSIONS) and not _is_junk(name)


def _listing(names: list[str]) -> str:
    if not names:
        return "the archive is empty"
    shown = ", ".join(names[:10])
    return f"found: {shown}" + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _pick_member(names: list[str], filename: str) -> str:
    models = [name for name in names if _is_model_name(name)]
    details: dict[str, Any] = {"filename": filename, "members": names[:50]}
    if not models:
        others = [name for name in names if not _is_junk(name)]
        raise UnsupportedModelFile(
            f"{filename} holds no Keras model file (.h5, .hdf5, .keras); {_listing(others)}. "
            "Put exactly one model file written by model.save() in the archive.",
            details=details,
        )
    if len(models) > 1:
        raise UnsupportedModelFile(
            f"{filename} holds {len(models)} model files ({', '.join(models[:10])}); kscore "
            "needs exactly one per archive. Upload each model separately.",
            details=details,
        )
    member = models[0]
    if unsafe_member_name(member):
        raise unsafe_member_path(filename, member)
    return member


def _target(workdir: Path, member: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    # Only the base name is used, so nothing can land outside workdir.
    base = posixpath.basename(member.replace("\\", "/"))
    return workdir / base


def _copy_bounded(source: IO[bytes], target: Path, max_bytes: int, filename: str) -> None:
    written = 0
    try:
        with target.open("wb") as out:
            while chunk := source.read(1024 * 1024):
                written += len(chunk)
                if written > max_bytes:
                    raise PayloadTooLarge(
                        f"The model file in {filename} is larger than the limit of {max_bytes} "
                        "bytes (KSCORE_MAX_MODEL_BYTES).",
                        details={"limit_bytes": max_bytes, "filename": filename},
                    )
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


class _BoundedStream(io.RawIOBase):
    """A decompressed stream that refuses to read or seek past ``limit`` bytes.

    tarfile reads whatever sizes the headers declare (a pax header of a terabyte is read into
    memory whole), so the cap sits under it, on the decompressed bytes.
    """

    def __init__(self, stream: io.BufferedIOBase | BinaryIO, limit: int, filename: str) -> None:
        super().__init__()
        self._stream = stream
        self._limit = limit
        self._filename = filename

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._stream.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._stream.tell() + offset
        if whence == io.SEEK_END or target > self._limit:
            raise self._bomb()
        return self._stream.seek(target)

    def read(self, size: int | None = -1) -> bytes:
        position = self._stream.tell()
        room = self._limit - position + 1
        wanted = room if size is None or size < 0 else min(size, room)
        data = self._stream.read(wanted)
        if position + len(data) > self._limit:
            raise self._bomb()
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _bomb(self) -> Exception:
        return refuse_file(
            "tar_bomb",
            f"{self._filename} unpacks to more than {self._limit} bytes (over "
            f"{caps.MAX_COMPRESSION_RATIO} times its size, or past "
            f"{caps.MAX_UNPACKED_BYTES} bytes); refused as a decompression bomb.",
            self._filename,
            limit=self._limit,
        )


def _tar_limit(path: Path, kind: str) -> int:
    """How many bytes a tar upload may unpack to: its size if plain, else the ratio cap."""
    size = path.stat().st_size
    if kind == "tar":
        return size
    return min(
        caps.MAX_UNPACKED_BYTES,
        max(caps.MIN_BOMB_BYTES, caps.MAX_COMPRESSION_RATIO * size),
    )


def _decompressed(raw: BinaryIO, kind: str) -> io.BufferedIOBase | BinaryIO:
    """``raw`` read through the decompressor ``kind`` names (closed by the caller's ``with``)."""
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw, "rb")
    if kind == "xz":
        return lzma.LZMAFile(raw, "rb")
    return raw


def _extract_from_tar(
    path: Path, kind: str, filename: str, workdir: Path, max_bytes: int
) -> tuple[Path, str]:
    try:
        with path.open("rb") as raw, _decompressed(raw, kind) as stream:
            bounded = _BoundedStream(stream, _tar_limit(path, kind), filename)
            with tarfile.open(fileobj=bounded, mode="r:") as tar:
                return _extract_tar_member(tar, filename, workdir, max_bytes)
    except _READ_ERRORS as exc:
        raise UnsupportedModelFile(
            f"{filename} is not a readable tar archive ({type(exc).__name__}: {exc}); it is "
            "truncated or damaged.",
            details={"filename": filename},
        ) from None


def _extract_tar_member(
    tar: tarfile.TarFile, filename: str, workdir: Path, max_bytes: int
) -> tuple[Path, str]:
    members = [info for info in _checked_tar_members(tar, filename) if not info.isdir()]
    by_name = {info.name: info for info in members}
    member = by_name[_pick_member([info.name for info in members], filename)]
    if member.size > max_bytes:
        raise _too_large(filename, max_bytes)
    source = tar.extractfile(member)
    if source is None:
        raise UnsupportedModelFile(
            f"{filename}: the member {member.name!r} cannot be read.",
            details={"filename": filename},
        )
    target = _target(workdir, member.name)
    with source:
        _copy_bounded(source, target, max_bytes, filename)
    return target, target.name


def _checked_tar_members(tar: tarfile.TarFile, filename: str) -> Iterator[tarfile.TarInfo]:
    """Every member, once it passed the rules: count, name, type (no links or devices), size."""
    total = 0
    for count, info in enumerate(tar, start=1):
        if count > caps.MAX_ARCHIVE_MEMBERS:
            raise too_many_members(filename)
        if unsafe_member_name(info.name):
            raise unsafe_member_path(filename, info.name)
        if not (info.isreg() or info.isdir()) or info.issparse():
            what = (
                "a link"
                if info.issym() or info.islnk()
                else "a device"
                if info.isdev()
                else "not a regular file"
            )
            raise refuse_file(
                "archive_member_type",
                f"{filename}: the member {info.name!r} is {what}, not a file. Archive the model "
                "file itself.",
                filename,
                member=info.name,
            )
        total += info.size
        if total > caps.MAX_UNPACKED_BYTES:
            raise refuse_file(
                "archive_too_large",
                f"{filename}: its members declare more than {caps.MAX_UNPACKED_BYTES} bytes "
                "unpacked; kscore does not unpack that much.",
                filename,
                limit=caps.MAX_UNPACKED_BYTES,
            )
        yield info


def _too_large(filename: str, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The model file in {filename} is larger than the limit of {max_bytes} bytes "
        "(KSCORE_MAX_MODEL_BYTES).",
        details={"limit_bytes": max_bytes, "filename": filename},
    )


def _extract_from_zip(path: Path, filename: str, workdir: Path, max_bytes: int) -> tuple[Path, str]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = check_zip_members(zf, filename)
            names = [info.filename for info in infos if not info.is_dir()]
            if "config.json" in names:
                # A Keras 3 .keras file renamed to .zip (WML users uploaded them so): the
                # upload is the model (the container checks it as one); loaders need the
                # .keras extension.
                return _as_keras_file(path, filename, workdir, max_bytes)
            info = zf.getinfo(_pick_member(names, filename))
            if info.file_size > max_bytes:
                raise _too_large(filename, max_bytes)
            target = _target(workdir, info.filename)
            with zf.open(info) as source:
                _copy_bounded(source, target, max_bytes, filename)
            return target, target.name
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, ValueError) as exc:
        raise UnsupportedModelFile(
            f"{filename} is not a readable .zip archive ({type(exc).__name__}: {exc}); it is "
            "truncated or damaged.",
            details={"filename": filename},
        ) from None


def _as_keras_file(path: Path, filename: str, workdir: Path, max_bytes: int) -> tuple[Path, str]:
    if path.stat().st_size > max_bytes:
        raise _too_large(filename, max_bytes)
    stem = posixpath.basename(filename.replace("\\", "/"))[: -len(".zip")] or "model"
    target = _target(workdir, f"{stem}.keras")
    shutil.copyfile(path, target)
    return target, target.name
