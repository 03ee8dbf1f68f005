"""The caps on a model file's structure and config, and the error for a file that breaks one.

Read at call time (``caps.MAX_...``), so tests can lower them. Enforced by
:mod:`shared.keras_file.structure` (archives, HDF5), :mod:`shared.keras_file.archive` (uploads)
and :mod:`shared.keras_file.container` (the config), at upload in the API and again in the
worker before any loader.
"""

from __future__ import annotations

from typing import Any

from shared.errors import UnsafeModelFile

#: Largest model config (JSON text) read from a file: real ones are kilobytes to a few MiB.
MAX_CONFIG_BYTES = 16 * 1024**2
#: Deepest JSON nesting of a model config: two models nested in a wrapper reach about 16.
MAX_CONFIG_DEPTH = 100
#: Members of an uploaded archive or a .keras zip (a model has a handful, plus its assets).
MAX_ARCHIVE_MEMBERS = 1_000
#: Largest ratio of a compressed member's declared size to its stored size (Keras's own
#: loader uses 100), counted only above :data:`MIN_BOMB_BYTES`.
MAX_COMPRESSION_RATIO = 100
#: Bytes the members of an archive or a .keras zip may declare together, unpacked.
MAX_UNPACKED_BYTES = 4 * 1024**3
#: Members, datasets and compressed tars smaller than this are never bombs.
MIN_BOMB_BYTES = 1024**2
#: HDF5 links (groups and datasets) walked in one file, and how deep groups may nest.
MAX_HDF5_LINKS = 100_000
MAX_HDF5_DEPTH = 64
#: Bytes all datasets of one HDF5 file may declare (shape x item size): a shape bomb declares
#: terabytes in a file of kilobytes.
MAX_HDF5_DECLARED_BYTES = 4 * 1024**3
#: How many times the bytes it stores a dataset may declare (above :data:`MIN_BOMB_BYTES`);
#: Keras writes weights uncompressed, so its files declare what they store.
MAX_HDF5_EXPANSION = 100
#: HDF5 filters a dataset may use: deflate, shuffle, fletcher32, szip, nbit, scaleoffset.
#: Any other filter id makes HDF5 look for a plugin library on disk.
BUILTIN_HDF5_FILTERS = frozenset({1, 2, 3, 4, 5, 6})


def refuse_file(reason: str, message: str, filename: str, **details: Any) -> UnsafeModelFile:
    """The error for a file that breaks a structural rule: ``reason`` is its stable name."""
    return UnsafeModelFile(message, details={"filename": filename, "reason": reason, **details})


def config_depth(value: Any, limit: int | None = None) -> int:
    """How deep ``value`` (parsed JSON) nests; stops counting past ``limit`` (no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if limit is not None and deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def check_config_shape(config: Any, what: str, filename: str) -> None:
    """Raise UnsafeModelFile if a parsed config nests deeper than :data:`MAX_CONFIG_DEPTH`."""
    limit = MAX_CONFIG_DEPTH
    if config_depth(config, limit) > limit:
        raise refuse_file(
            "config_too_deep",
            f"{filename}: its {what} nests deeper than {limit} levels; a Keras model's config "
            "never does. The file was crafted or damaged: save the model again with "
            "model.save() and upload that file.",
            filename,
            limit=limit,
        )
