"""The structure of a model file, checked before anything reads its config: archive members
(names, kinds, counts, sizes, compression) and HDF5 links and datasets (nothing pointing out of
the file, nothing declaring more than it stores), against the caps in
:mod:`shared.keras_file.safety`. Raises UnsafeModelFile (422) naming the rule a file breaks.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
import stat
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import h5py

from shared.errors import UnsafeModelFile, UnsupportedModelFile
from shared.keras_file import caps
from shared.keras_file.caps import refuse_file

#: What Keras 3 and tf_keras write into a ``.keras`` zip, besides ``assets/`` (files that
#: preprocessing layers keep, e.g. a vocabulary). ``saving_lib`` in both.
KERAS_ZIP_MEMBERS = frozenset(
    {"config.json", "metadata.json", "model.weights.h5", "model.weights.npz"}
)
KERAS_ZIP_ASSETS = "assets/"


def is_keras_zip_member(name: str) -> bool:
    return name in KERAS_ZIP_MEMBERS or name.startswith(KERAS_ZIP_ASSETS)


def unsafe_member_name(name: str) -> bool:
    """An archive member name that is absolute, has a drive or ``..``, or a NUL byte."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return True
    return "\x00" in normalized or ".." in normalized.split("/")


def check_zip_members(
    zf: zipfile.ZipFile, filename: str, *, allowed: Callable[[str], bool] | None = None
) -> list[zipfile.ZipInfo]:
    """The members of ``zf`` once every one passed the structural rules; raises otherwise.

    Rules: at most ``MAX_ARCHIVE_MEMBERS``; each name relative without ``..`` and given
    once; no symbolic links, devices or encrypted members; each compressed member's declared
    size within ``MAX_COMPRESSION_RATIO`` of its stored size; all declared sizes together
    within ``MAX_UNPACKED_BYTES``; and, when ``allowed`` is given, only names it accepts
    (directories included). Raises UnsafeModelFile (422) naming the rule.
    """
    infos = zf.infolist()
    if len(infos) > caps.MAX_ARCHIVE_MEMBERS:
        raise too_many_members(filename)
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        if unsafe_member_name(name):
            raise unsafe_member_path(filename, name)
        if name in seen:
            raise refuse_file(
                "archive_duplicate_member",
                f"{filename}: the member {name!r} appears twice; readers disagree on which "
                "one counts. Archive each file once.",
                filename,
                member=name,
            )
        seen.add(name)
        mode = (info.external_attr >> 16) & 0o170000
        if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise refuse_file(
                "archive_member_type",
                f"{filename}: the member {name!r} is a symbolic link or a device, not a file. "
                "Archive the files themselves.",
                filename,
                member=name,
            )
        if info.flag_bits & 0x1:
            raise refuse_file(
                "archive_member_encrypted",
                f"{filename}: the member {name!r} is encrypted; upload an unencrypted file.",
                filename,
                member=name,
            )
        if allowed is not None and not allowed(name):
            raise refuse_file(
                "archive_unexpected_member",
                f"{filename}: the member {name!r} is not one Keras writes into a .keras file "
                f"({', '.join(sorted(KERAS_ZIP_MEMBERS))} and {KERAS_ZIP_ASSETS}). Save the "
                "model with model.save('model.keras') and upload that file as it is.",
                filename,
                member=name,
            )
        if info.file_size > caps.MIN_BOMB_BYTES and (
            info.file_size > caps.MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
        ):
            raise zip_bomb(filename, name, info.file_size, info.compress_size)
        total += info.file_size
    if total > caps.MAX_UNPACKED_BYTES:
        raise refuse_file(
            "archive_too_large",
            f"{filename}: its members declare {total} bytes unpacked, more than the "
            f"{caps.MAX_UNPACKED_BYTES} bytes kscore unpacks.",
            filename,
            limit=caps.MAX_UNPACKED_BYTES,
        )
    return infos


def verify_zip_sizes(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], filename: str) -> None:
    """Read every member through once: its real bytes must be its declared size, CRC intact."""
    for info in infos:
        if info.is_dir():
            continue
        read = 0
        try:
            with zf.open(info) as member:
                while chunk := member.read(1024 * 1024):
                    read += len(chunk)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError) as exc:
            raise UnsupportedModelFile(
                f"{filename}: its member {info.filename!r} cannot be read "
                f"({type(exc).__name__}); the file is truncated or damaged.",
                details={"filename": filename, "member": info.filename},
            ) from None
        if read != info.file_size:
            raise UnsupportedModelFile(
                f"{filename}: its member {info.filename!r} holds {read} bytes but declares "
                f"{info.file_size}; the file is damaged.",
                details={"filename": filename, "member": info.filename},
            )


def too_many_members(filename: str) -> UnsafeModelFile:
    limit = caps.MAX_ARCHIVE_MEMBERS
    return refuse_file(
        "archive_too_many_members",
        f"{filename} has more than {limit} members; a model archive should hold the model "
        "file and little else.",
        filename,
        limit=limit,
    )


def unsafe_member_path(filename: str, name: str) -> UnsafeModelFile:
    return refuse_file(
        "archive_member_path",
        f"{filename}: the member {name!r} has an unsafe path (absolute or with '..'). Archive "
        "the model file under a plain relative name.",
        filename,
        member=name,
    )


def zip_bomb(filename: str, name: str, declared: int, stored: int) -> UnsafeModelFile:
    return refuse_file(
        "zip_bomb",
        f"{filename}: the member {name!r} declares {declared} bytes from {stored} stored, "
        f"more than {caps.MAX_COMPRESSION_RATIO} times; refused as a decompression bomb. "
        "Keras stores model files uncompressed: upload the file model.save() wrote.",
        filename,
        member=name,
        limit=caps.MAX_COMPRESSION_RATIO,
    )


def check_zipped_hdf5(
    path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, filename: str
) -> None:
    """The HDF5 checks on a .keras file's weights (verified against their CRC already)."""
    where = f"{filename} (its {info.filename})"
    try:
        with _member_file(path, zf, info) as member, h5py.File(member, "r") as f:
            check_hdf5(f, where)
    except OSError:
        raise UnsupportedModelFile(
            f"{where} is not a readable HDF5 file; the file is truncated or damaged.",
            details={"filename": filename, "member": info.filename},
        ) from None


@contextlib.contextmanager
def _member_file(
    path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo
) -> Iterator[io.RawIOBase | IO[bytes]]:
    """A seekable file of the member's bytes for h5py.

    zipfile's own member file seeks backwards by reading again from the member's start, which
    h5py's many small seeks turn into a quadratic read. Keras stores its members uncompressed:
    those are read in place, through a window on the zip file; others are unpacked once into
    an anonymous temporary file (their size was capped and verified before).
    """
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
        with path.open("rb") as raw:
            raw.seek(info.header_offset)
            header = raw.read(30)
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            start = info.header_offset + 30 + name_length + extra_length
            yield _Window(raw, start, info.compress_size)
        return
    with tempfile.TemporaryFile() as copy, zf.open(info) as member:
        shutil.copyfileobj(member, copy, 1024 * 1024)
        copy.seek(0)
        yield copy


class _Window(io.RawIOBase):
    """``size`` bytes of ``raw`` from ``start``, as a file of their own (read-only)."""

    def __init__(self, raw: IO[bytes], start: int, size: int) -> None:
        super().__init__()
        self._raw, self._start, self._size, self._position = raw, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), self._size - self._position))
        self._raw.seek(self._start + self._position)
        data = self._raw.read(count)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def check_zipped_npz(zf: zipfile.ZipFile, info: zipfile.ZipInfo, filename: str) -> None:
    """A .keras file's npz weights: a zip inside the zip, held to the same rules (arrays only)."""
    where = f"{filename} (its {info.filename})"
    try:
        with zf.open(info) as member, zipfile.ZipFile(member) as inner:
            check_zip_members(inner, where, allowed=lambda name: name.endswith(".npy"))
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError):
        raise UnsupportedModelFile(
            f"{where} is not a readable npz file; the file is truncated or damaged.",
            details={"filename": filename, "member": info.filename},
        ) from None


def check_hdf5(f: h5py.File, filename: str) -> None:
    """Raise UnsafeModelFile unless every link in ``f`` stays inside it and no dataset lies.

    Walks every link from the root with an explicit stack, never resolving one that is not a
    hard link: external, soft and user-defined links are refused, as are virtual datasets,
    datasets stored in external files, filters HDF5 would load a plugin for, more than
    ``MAX_HDF5_LINKS`` links, groups nested past ``MAX_HDF5_DEPTH``, a dataset declaring more
    than ``MAX_HDF5_EXPANSION`` times the bytes it stores, and datasets declaring more than
    ``MAX_HDF5_DECLARED_BYTES`` together.
    """
    seen = {h5py.h5o.get_info(f.id).addr}
    stack: list[tuple[h5py.Group, str, int]] = [(f, "", 0)]
    links = 0
    declared_total = 0
    while stack:
        group, path, depth = stack.pop()
        if depth > caps.MAX_HDF5_DEPTH:
            raise refuse_file(
                "hdf5_too_deep",
                f"{filename}: its HDF5 groups nest deeper than {caps.MAX_HDF5_DEPTH} "
                f"levels (at {path!r}); Keras files never do.",
                filename,
                limit=caps.MAX_HDF5_DEPTH,
            )
        for name in group:
            links += 1
            if links > caps.MAX_HDF5_LINKS:
                raise refuse_file(
                    "hdf5_too_many_links",
                    f"{filename} holds more than {caps.MAX_HDF5_LINKS} HDF5 objects; a "
                    "Keras model file holds a few per layer.",
                    filename,
                    limit=caps.MAX_HDF5_LINKS,
                )
            where = f"{path}/{name}"
            _check_link_type(group, name, where, filename)
            child = group.get(name)  # a hard link: stays in this file
            addr = h5py.h5o.get_info(child.id).addr
            if addr in seen:
                continue  # the same object under a second name: checked once
            seen.add(addr)
            if isinstance(child, h5py.Group):
                stack.append((child, where, depth + 1))
            elif isinstance(child, h5py.Dataset):
                declared_total += _check_dataset(child, where, filename)
                if declared_total > caps.MAX_HDF5_DECLARED_BYTES:
                    raise refuse_file(
                        "hdf5_too_large",
                        f"{filename}: its datasets declare more than "
                        f"{caps.MAX_HDF5_DECLARED_BYTES} bytes together; kscore does not "
                        "load models that large.",
                        filename,
                        limit=caps.MAX_HDF5_DECLARED_BYTES,
                    )


_LINK_REFUSALS = {
    h5py.h5l.TYPE_SOFT: ("hdf5_soft_link", "a soft link"),
    h5py.h5l.TYPE_EXTERNAL: ("hdf5_external_link", "an external link to another file"),
}


def _check_link_type(group: h5py.Group, name: str, where: str, filename: str) -> None:
    link_type = group.id.links.get_info(name.encode()).type
    if link_type == h5py.h5l.TYPE_HARD:
        return
    reason, what = _LINK_REFUSALS.get(link_type, ("hdf5_user_link", "a user-defined link"))
    target = ""
    if link_type == h5py.h5l.TYPE_EXTERNAL:
        link = group.get(name, getlink=True)
        target = f" ({link.filename}:{link.path})"
    elif link_type == h5py.h5l.TYPE_SOFT:
        target = f" (to {group.get(name, getlink=True).path})"
    raise refuse_file(
        reason,
        f"{filename}: {where!r} is {what}{target}. Keras never writes links; kscore reads "
        "nothing from outside the uploaded file. Save the model again with model.save().",
        filename,
        path=where,
    )


def _check_dataset(dataset: h5py.Dataset, where: str, filename: str) -> int:
    """A dataset's bytes as declared (shape x item size), once its storage passed the rules."""
    plist = dataset.id.get_create_plist()
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        raise refuse_file(
            "hdf5_virtual_dataset",
            f"{filename}: {where!r} is a virtual dataset, mapped from other files; kscore "
            "reads nothing from outside the uploaded file.",
            filename,
            path=where,
        )
    if plist.get_external_count() > 0:
        raise refuse_file(
            "hdf5_external_storage",
            f"{filename}: {where!r} keeps its data in an external file; kscore reads nothing "
            "from outside the uploaded file.",
            filename,
            path=where,
        )
    for index in range(plist.get_nfilters()):
        filter_id = plist.get_filter(index)[0]
        if filter_id not in caps.BUILTIN_HDF5_FILTERS:
            raise refuse_file(
                "hdf5_filter",
                f"{filename}: {where!r} is compressed with HDF5 filter {filter_id}, which "
                "HDF5 would load a plugin library for. Keras never uses one.",
                filename,
                path=where,
            )
    shape = dataset.shape or ()
    declared = math.prod(shape) * dataset.dtype.itemsize
    stored = dataset.id.get_storage_size()
    if declared > caps.MIN_BOMB_BYTES and declared > caps.MAX_HDF5_EXPANSION * stored:
        raise refuse_file(
            "hdf5_shape_bomb",
            f"{filename}: {where!r} declares shape {list(shape)} ({declared} bytes) but "
            f"stores {stored} bytes; refused as a shape bomb. Keras writes every weight it "
            "declares.",
            filename,
            path=where,
        )
    return int(declared)
