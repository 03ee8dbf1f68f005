"""Keras model files read without TensorFlow: what they are, their signature, and whether
they are safe to load.

Runs in the API process (h5py, zipfile and json only; TensorFlow and Keras are never
imported) and again in the worker before any loader sees a file. The modules:

- :mod:`~shared.keras_file.container`: the raw config, Keras version and backend of an
  ``.h5`` / ``.hdf5`` file or a ``.keras`` zip;
- :mod:`~shared.keras_file.archive`: the one model file inside a ``.tar.gz`` / ``.tgz`` /
  ``.zip`` upload;
- :mod:`~shared.keras_file.safety`: the allow-list of built-in Keras classes and the walk
  that refuses Lambda layers, serialized functions and foreign classes;
- :mod:`~shared.keras_file.signature`: inputs (names, shapes, dtypes), output names and
  final activations as the config states them. Output shapes are left unknown: the worker
  takes them from the model it loaded.
"""

from __future__ import annotations

from pathlib import Path

from shared.keras_file.archive import (
    ARCHIVE_EXTENSIONS,
    DEFAULT_MAX_EXTRACTED_BYTES,
    MAX_ARCHIVE_MEMBERS,
    extract_model_file,
)
from shared.keras_file.caps import MAX_CONFIG_BYTES
from shared.keras_file.container import (
    MODEL_EXTENSIONS,
    detect_kind,
    read_model_config,
    read_raw_model,
)
from shared.keras_file.safety import check_config_safe, find_unsafe_layers
from shared.keras_file.signature import ModelInfo, TensorSpec, describe

__all__ = [
    "ARCHIVE_EXTENSIONS",
    "DEFAULT_MAX_EXTRACTED_BYTES",
    "MAX_ARCHIVE_MEMBERS",
    "MAX_CONFIG_BYTES",
    "MODEL_EXTENSIONS",
    "ModelInfo",
    "TensorSpec",
    "check_config_safe",
    "detect_kind",
    "extract_model_file",
    "find_unsafe_layers",
    "inspect_model_file",
    "read_model_config",
]


def inspect_model_file(path: Path, filename: str) -> ModelInfo:
    """Read, check and describe a bare model file (.h5/.hdf5/.keras, as ``filename`` says).

    Returns its format, Keras version, backend, class, inputs (shapes with a None batch
    dimension), outputs (names, activations; shapes None until a worker loads the model) and
    layer classes. Raises UnsupportedModelFile (400) for a file that is not a Keras model,
    UnsafeModelFile (422) for one whose structure breaks the caps of ``safety`` (links out of
    the file, bombs, a config too large or deep) and UnsafeModel (422) for one that names code
    a loader would run.
    """
    raw = read_raw_model(path, filename)
    check_config_safe(raw.config, stored_weights=raw.stored_weights, **raw.other_configs)
    return describe(raw, filename)
