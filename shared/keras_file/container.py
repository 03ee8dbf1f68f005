"""Read the model config out of a Keras model file, without TensorFlow.

h5py, zipfile and json only (this runs in the API process). Every dialect found in the wild:

- standalone Keras 2.0-2.3 ``.h5``: attributes stored as bytes, a Sequential config that may
  be a bare list of layers (Keras <= 2.2.2);
- tf.keras / tf_keras 2.x ``.h5``: class ``Functional``, ``Model`` or ``Sequential``;
- Keras 3 writing legacy ``.h5``: ``batch_shape`` and dtype-policy dicts;
- Keras 3 ``.keras`` zips: ``config.json``, ``metadata.json`` and ``model.weights.h5``;
- Keras 1.x ``.h5``: the config comes back as the Keras 2 config Keras 2.0 built from it
  (:mod:`shared.keras_file.keras1`), or the file is refused naming the layer that does not
  convert.

Apart from renaming Keras 1 arguments, nothing here interprets the config:
:mod:`shared.keras_file.safety` checks it and :mod:`shared.keras_file.signature` describes it.

Before any of that, the file's structure is checked against the caps in ``safety``: its kind by
magic bytes (never by the extension alone); in HDF5 files (an ``.h5`` and the weights inside a
``.keras``) every link, so nothing points out of the file (external or soft links, virtual or
external datasets, filter plugins) and no dataset declares more than it stores; in ``.keras``
zips the members Keras writes and nothing else, under size and compression caps; and the
config's size and nesting. The API runs this at upload and the worker again before loading.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import stat
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import h5py

from shared.errors import UnsafeModelFile, UnsupportedModelFile
from shared.keras_file import safety
from shared.keras_file.keras1 import convert_keras1_config, is_keras1
from shared.keras_file.safety import refuse_file

#: Extensions of a bare model file (as opposed to an archive holding one).
MODEL_EXTENSIONS = (".h5", ".hdf5", ".keras")

#: What Keras 3 and tf_keras write into a ``.keras`` zip, besides ``assets/`` (files that
#: preprocessing layers keep, e.g. a vocabulary). ``saving_lib`` in both.
KERAS_ZIP_MEMBERS = frozenset(
    {"config.json", "metadata.json", "model.weights.h5", "model.weights.npz"}
)
KERAS_ZIP_ASSETS = "assets/"

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 allows a user block before the superblock, at 0 or a power of two from 512 up.
_HDF5_SIGNATURE_OFFSETS = (0, 512, 1024, 2048, 4096)

_NOT_A_MODEL = (
    "not a Keras model file: expected an HDF5 (.h5/.hdf5) or Keras zip (.keras) file "
    "written by model.save()."
)


@dataclass
class RawModel:
    """A model config as read from a file, before interpretation.

    ``format`` is "h5" or "keras"; ``config`` is the parsed architecture (a dict, or a bare
    list of layers from Keras <= 2.2.2); ``other_configs`` holds the configs outside the
    architecture (``training_config``), which the safety check scans for code only;
    ``stored_weights`` (``.h5`` only) maps each top-level layer name to the weight names stored
    for it (``model_weights/<layer>`` ``weight_names``), which the safety check compares with
    what the built-in class of that name creates.
    """

    format: str
    keras_version: str | None
    backend: str | None
    config: Any
    other_configs: dict[str, Any] = field(default_factory=dict)
    stored_weights: dict[str, list[str]] = field(default_factory=dict)


def detect_kind(path: Path) -> str:
    """What ``path`` holds by its magic bytes: "hdf5", "zip", "gzip", "bzip2", "xz", "tar",
    "empty" or "unknown"."""
    size = path.stat().st_size
    if size == 0:
        return "empty"
    with path.open("rb") as f:
        head = f.read(512 + 8)
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return "zip"
        for magic, kind in ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz")):
            if head.startswith(magic):
                return kind
        for offset in _HDF5_SIGNATURE_OFFSETS:
            if offset + 8 > size:
                break
            f.seek(offset)
            if f.read(8) == _HDF5_SIGNATURE:
                return "hdf5"
    if head[257:262] == b"ustar":
        return "tar"
    return "unknown"


#: What each kind of file is, in words, and the extension it needs (refusal messages).
KIND_NAMES = {
    "hdf5": ("an HDF5 file", ".h5"),
    "zip": ("a zip (a Keras 3 .keras file, or a .zip archive)", ".keras or .zip"),
    "gzip": ("a gzip-compressed archive", ".tar.gz"),
    "bzip2": ("a bzip2-compressed archive", ".tar.gz"),
    "xz": ("an xz-compressed archive", ".tar.gz"),
    "tar": ("a tar archive", ".tar.gz"),
}


def wrong_kind(filename: str, kind: str, expected: str) -> UnsupportedModelFile:
    """The refusal of a file whose magic bytes contradict its extension, saying what to do."""
    if kind in KIND_NAMES:
        what, suffix = KIND_NAMES[kind]
        message = (
            f"{filename} is {what}, not {expected}: its extension says otherwise. If the file "
            f"is the right one, rename it to end in {suffix} and upload it again."
        )
    elif kind == "empty":
        message = f"{filename} is empty: upload the file written by model.save()."
    else:
        message = f"{filename} is {_NOT_A_MODEL}"
    return UnsupportedModelFile(message, details={"filename": filename, "detected": kind})


def read_model_config(path: Path, filename: str) -> Any:
    """The model config (architecture) stored in a model file, parsed from JSON.

    Raises UnsupportedModelFile as :func:`read_raw_model` does.
    """
    return read_raw_model(path, filename).config


def read_raw_model(path: Path, filename: str) -> RawModel:
    """Read a bare model file (.h5/.hdf5/.keras; ``filename`` gives the extension).

    Returns its configs, Keras version and backend as stored. Raises UnsupportedModelFile
    (400) for an empty file, a file that is neither HDF5 nor zip, an extension that
    contradicts the content, a truncated or damaged file, weights without a model, or a config
    that is not JSON; UnsafeModelFile (422) for a structure past the rules and caps of
    :mod:`shared.keras_file.safety` (links out of the file, bombs, unexpected members, a config
    too large or too deep).
    """
    kind = detect_kind(path)
    extension = _model_extension(filename)
    if kind == "hdf5" and extension != ".keras":
        return _read_h5(path, filename)
    if kind == "zip" and extension not in (".h5", ".hdf5"):
        return _read_keras_zip(path, filename)
    expected = "a Keras zip" if extension == ".keras" else "an HDF5 file"
    if kind not in ("hdf5", "zip") and extension is None:
        expected = "a Keras model file"
    raise wrong_kind(filename, kind, expected)


def _model_extension(filename: str) -> str | None:
    lowered = filename.lower()
    return next((ext for ext in MODEL_EXTENSIONS if lowered.endswith(ext)), None)


def _attr_text(value: Any) -> str | None:
    """An HDF5 attribute as text: Keras 2 wrote bytes, tf_keras and Keras 3 write str."""
    if value is None:
        return None
    if hasattr(value, "shape") and hasattr(value, "tolist"):  # numpy scalar or 1-item array
        value = value.tolist()
        if isinstance(value, list):
            if len(value) != 1:
                return None
            value = value[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    return None


def _parse_json(text: str, what: str, filename: str) -> Any:
    """``text`` parsed, within the size and nesting caps of ``safety``."""
    limit = safety.MAX_CONFIG_BYTES
    if len(text) > limit:
        raise refuse_file(
            "config_too_large",
            f"{filename}: its {what} is {len(text)} bytes, more than a Keras config ever "
            f"needs ({limit} bytes). The file was crafted or damaged.",
            filename,
            limit=limit,
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnsupportedModelFile(
            f"{filename} has a {what} that is not valid JSON ({exc.msg} at line {exc.lineno}); "
            "the file is damaged or was not written by Keras.",
            details={"filename": filename},
        ) from None
    except RecursionError:
        raise refuse_file(
            "config_too_deep",
            f"{filename}: its {what} nests deeper than {safety.MAX_CONFIG_DEPTH} levels; a "
            "Keras model's config never does. The file was crafted or damaged: save the "
            "model again with model.save() and upload that file.",
            filename,
            limit=safety.MAX_CONFIG_DEPTH,
        ) from None
    safety.check_config_shape(value, what, filename)
    return value


def _bounded_attr(attrs: h5py.AttributeManager, name: str, filename: str) -> Any:
    """An HDF5 attribute's value, refused unread when it declares more than a config may hold."""
    if name not in attrs:
        return None
    attr = attrs.get_id(name)
    count = math.prod(attr.shape or ())
    declared = count * attr.dtype.itemsize
    limit = safety.MAX_CONFIG_BYTES
    if declared > limit:
        raise refuse_file(
            "attribute_too_large",
            f"{filename}: its HDF5 attribute {name!r} declares {declared} bytes, more than a "
            f"Keras file ever stores there ({limit} bytes). The file was crafted or damaged.",
            filename,
            limit=limit,
        )
    return attrs[name]


def _read_h5(path: Path, filename: str) -> RawModel:
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise UnsupportedModelFile(
            f"{filename} is {_NOT_A_MODEL} It starts like HDF5 but cannot be read as HDF5 "
            "(truncated or damaged).",
            details={"filename": filename},
        ) from None
    with f:
        # Before anything else reads the file: even "name in file" follows an external link.
        check_hdf5(f, filename)
        attrs = f.attrs
        config_text = _attr_text(_bounded_attr(attrs, "model_config", filename))
        if config_text is None:
            weights_only = (
                "layer_names" in attrs or "model_weights" in f or ("layers" in f and "vars" in f)
            )
            what = (
                "only weights (written by save_weights()), not a model"
                if weights_only
                else "no Keras model (no model_config attribute)"
            )
            raise UnsupportedModelFile(
                f"{filename} holds {what}. Save the whole model with model.save() "
                "(to a .keras or .h5 file) and upload that file.",
                details={"filename": filename},
            )
        weights_group = f.get("model_weights")
        weights_attrs = weights_group.attrs if isinstance(weights_group, h5py.Group) else None
        keras_version = _attr_text(_bounded_attr(attrs, "keras_version", filename))
        backend = _attr_text(_bounded_attr(attrs, "backend", filename))
        if weights_attrs is not None:
            keras_version = keras_version or _attr_text(
                _bounded_attr(weights_attrs, "keras_version", filename)
            )
            backend = backend or _attr_text(_bounded_attr(weights_attrs, "backend", filename))
        training_text = _attr_text(_bounded_attr(attrs, "training_config", filename))
        stored_weights = _stored_weight_names(f, filename)
    config = _parse_json(config_text, "model_config", filename)
    if is_keras1(keras_version):
        # Keras 1 argument names are read as Keras 2.0 read them, before anything else sees
        # the config (see shared.keras_file.keras1); what does not convert is refused here.
        config = convert_keras1_config(config, filename, keras_version)
    others: dict[str, Any] = {}
    if training_text:
        others["training_config"] = _parse_json(training_text, "training_config", filename)
    return RawModel("h5", keras_version, backend, config, others, stored_weights)


def _stored_weight_names(f: h5py.File, filename: str) -> dict[str, list[str]]:
    """Top-level layer name -> names of the weights stored for it (empty if none stored)."""
    group = f.get("model_weights")
    if not isinstance(group, h5py.Group):
        return {}
    names: dict[str, list[str]] = {}
    for layer_name, layer_group in group.items():
        if not isinstance(layer_group, h5py.Group):
            continue
        raw = _bounded_attr(layer_group.attrs, "weight_names", filename)
        if raw is None:
            continue
        texts = [_attr_text(item) for item in raw]
        names[str(layer_name)] = [t for t in texts if t]
    return names


def _read_keras_zip(path: Path, filename: str) -> RawModel:
    details = {"filename": filename}
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UnsupportedModelFile(
            f"{filename} is {_NOT_A_MODEL} It starts like a zip but cannot be read as one "
            "(truncated or damaged).",
            details=details,
        ) from None
    with zf:
        infos = check_zip_members(zf, filename, allowed=_is_keras_zip_member)
        names = {info.filename for info in infos}
        if "config.json" not in names:
            raise UnsupportedModelFile(
                f"{filename} is a zip without config.json, so it is not a Keras .keras file. "
                "Save the model with model.save('model.keras') and upload that file.",
                details=details,
            )
        verify_zip_sizes(zf, infos, filename)
        config_text = _read_zip_text(zf, "config.json", filename)
        metadata_text = (
            _read_zip_text(zf, "metadata.json", filename) if "metadata.json" in names else None
        )
        if "model.weights.h5" in names:
            _check_zipped_hdf5(path, zf, zf.getinfo("model.weights.h5"), filename)
        if "model.weights.npz" in names:
            _check_zipped_npz(zf, zf.getinfo("model.weights.npz"), filename)
    config = _parse_json(config_text, "config.json", filename)
    metadata = _parse_json(metadata_text, "metadata.json", filename) if metadata_text else {}
    keras_version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    backend = metadata.get("backend") if isinstance(metadata, dict) else None
    # compile_config sits inside config.json's top level, so the safety check sees it there.
    return RawModel(
        "keras",
        str(keras_version) if keras_version else None,
        str(backend) if backend else None,
        config,
    )


def _read_zip_text(zf: zipfile.ZipFile, name: str, filename: str) -> str:
    info = zf.getinfo(name)
    limit = safety.MAX_CONFIG_BYTES
    if info.file_size > limit:
        raise refuse_file(
            "config_too_large",
            f"{filename}: its {name} is {info.file_size} bytes, more than a Keras config "
            f"ever needs ({limit} bytes).",
            filename,
            limit=limit,
        )
    try:
        with zf.open(info) as member:
            return member.read(limit + 1).decode("utf-8")
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError, EOFError, NotImplementedError):
        raise UnsupportedModelFile(
            f"{filename}: its {name} cannot be read; the file is damaged.",
            details={"filename": filename},
        ) from None


# --- structure checks ------------------------------------------------------------------------


def _is_keras_zip_member(name: str) -> bool:
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
    if len(infos) > safety.MAX_ARCHIVE_MEMBERS:
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
        if info.file_size > safety.MIN_BOMB_BYTES and (
            info.file_size > safety.MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
        ):
            raise zip_bomb(filename, name, info.file_size, info.compress_size)
        total += info.file_size
    if total > safety.MAX_UNPACKED_BYTES:
        raise refuse_file(
            "archive_too_large",
            f"{filename}: its members declare {total} bytes unpacked, more than the "
            f"{safety.MAX_UNPACKED_BYTES} bytes kscore unpacks.",
            filename,
            limit=safety.MAX_UNPACKED_BYTES,
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
    limit = safety.MAX_ARCHIVE_MEMBERS
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
        f"more than {safety.MAX_COMPRESSION_RATIO} times; refused as a decompression bomb. "
        "Keras stores model files uncompressed: upload the file model.save() wrote.",
        filename,
        member=name,
        limit=safety.MAX_COMPRESSION_RATIO,
    )


def _check_zipped_hdf5(
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


def _check_zipped_npz(zf: zipfile.ZipFile, info: zipfile.ZipInfo, filename: str) -> None:
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
        if depth > safety.MAX_HDF5_DEPTH:
            raise refuse_file(
                "hdf5_too_deep",
                f"{filename}: its HDF5 groups nest deeper than {safety.MAX_HDF5_DEPTH} "
                f"levels (at {path!r}); Keras files never do.",
                filename,
                limit=safety.MAX_HDF5_DEPTH,
            )
        for name in group:
            links += 1
            if links > safety.MAX_HDF5_LINKS:
                raise refuse_file(
                    "hdf5_too_many_links",
                    f"{filename} holds more than {safety.MAX_HDF5_LINKS} HDF5 objects; a "
                    "Keras model file holds a few per layer.",
                    filename,
                    limit=safety.MAX_HDF5_LINKS,
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
                if declared_total > safety.MAX_HDF5_DECLARED_BYTES:
                    raise refuse_file(
                        "hdf5_too_large",
                        f"{filename}: its datasets declare more than "
                        f"{safety.MAX_HDF5_DECLARED_BYTES} bytes together; kscore does not "
                        "load models that large.",
                        filename,
                        limit=safety.MAX_HDF5_DECLARED_BYTES,
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
        if filter_id not in safety.BUILTIN_HDF5_FILTERS:
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
    if declared > safety.MIN_BOMB_BYTES and declared > safety.MAX_HDF5_EXPANSION * stored:
        raise refuse_file(
            "hdf5_shape_bomb",
            f"{filename}: {where!r} declares shape {list(shape)} ({declared} bytes) but "
            f"stores {stored} bytes; refused as a shape bomb. Keras writes every weight it "
            "declares.",
            filename,
            path=where,
        )
    return int(declared)
