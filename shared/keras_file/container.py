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

Before any of that, the file's structure is checked against the caps in ``caps`` (the checks: ``structure``): its kind by
magic bytes (never by the extension alone); in HDF5 files (an ``.h5`` and the weights inside a
``.keras``) every link, so nothing points out of the file (external or soft links, virtual or
external datasets, filter plugins) and no dataset declares more than it stores; in ``.keras``
zips the members Keras writes and nothing else, under size and compression caps; and the
config's size and nesting. The API runs this at upload and the worker again before loading.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from shared.errors import UnsupportedModelFile
from shared.keras_file import caps
from shared.keras_file.caps import refuse_file
from shared.keras_file.keras1 import convert_keras1_config, is_keras1
from shared.keras_file.structure import (
    check_hdf5,
    check_zip_members,
    check_zipped_hdf5,
    check_zipped_npz,
    is_keras_zip_member,
    verify_zip_sizes,
)

#: Extensions of a bare model file (as opposed to an archive holding one).
MODEL_EXTENSIONS = (".h5", ".hdf5", ".keras")


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
    limit = caps.MAX_CONFIG_BYTES
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
            f"{filename}: its {what} nests deeper than {caps.MAX_CONFIG_DEPTH} levels; a "
            "Keras model's config never does. The file was crafted or damaged: save the "
            "model again with model.save() and upload that file.",
            filename,
            limit=caps.MAX_CONFIG_DEPTH,
        ) from None
    caps.check_config_shape(value, what, filename)
    return value


def _bounded_attr(attrs: h5py.AttributeManager, name: str, filename: str) -> Any:
    """An HDF5 attribute's value, refused unread when it declares more than a config may hold."""
    if name not in attrs:
        return None
    attr = attrs.get_id(name)
    count = math.prod(attr.shape or ())
    declared = count * attr.dtype.itemsize
    limit = caps.MAX_CONFIG_BYTES
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
        infos = check_zip_members(zf, filename, allowed=is_keras_zip_member)
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
            check_zipped_hdf5(path, zf, zf.getinfo("model.weights.h5"), filename)
        if "model.weights.npz" in names:
            check_zipped_npz(zf, zf.getinfo("model.weights.npz"), filename)
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
    limit = caps.MAX_CONFIG_BYTES
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
