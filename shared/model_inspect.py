"""Read a Keras model file without TensorFlow: what it is, its signature, and whether it is safe.

(Interface stub: being implemented.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. ``shape`` includes the batch dimension as None."""

    name: str
    shape: list[int | None]
    dtype: str
    activation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": self.shape,
            "dtype": self.dtype,
            "activation": self.activation,
        }


@dataclass(frozen=True)
class ModelInfo:
    """What inspection learned about a model file."""

    format: str  # "h5" or "keras"
    keras_version: str | None
    backend: str | None
    model_class: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    layer_classes: list[str] = field(default_factory=list)


MODEL_EXTENSIONS = (".h5", ".hdf5", ".keras")
ARCHIVE_EXTENSIONS = (".tar.gz", ".tgz", ".zip")


def extract_model_file(path: Path, filename: str, workdir: Path) -> tuple[Path, str]:
    """The model file inside an upload: ``path`` itself, or the one member of an archive."""
    raise NotImplementedError


def inspect_model_file(path: Path, filename: str) -> ModelInfo:
    """Inspect a bare model file (.h5/.hdf5/.keras); raise UnsupportedModelFile/UnsafeModel."""
    raise NotImplementedError
