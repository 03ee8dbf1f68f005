"""What the shared.keras_file tests share: files built once, crafted configs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py

from shared.keras_file import ModelInfo, inspect_model_file

Builder = Callable[..., Path]


class Built:
    """Builds each file once per module, each in its own folder."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._paths: dict[str, Path] = {}

    def __call__(self, builder: Builder, *args: Any, **kwargs: Any) -> Path:
        key = "-".join([builder.__name__, *map(str, args), *map(str, kwargs.values())])
        if key not in self._paths:
            folder = self._root / key
            folder.mkdir()
            self._paths[key] = builder(folder, *args, **kwargs)
        return self._paths[key]


def inspect(path: Path) -> ModelInfo:
    return inspect_model_file(path, path.name)


def shapes(specs: list[Any]) -> list[list[int | None] | None]:
    return [spec.shape for spec in specs]


def h5_with_config(directory: Path, config: Any, keras_version: str = "2.2.4") -> Path:
    """An .h5 holding only ``config`` (no weights), as a Keras of ``keras_version`` wrote it."""
    path = directory / "crafted.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["keras_version"] = keras_version.encode()
        f.attrs["backend"] = b"tensorflow"
    return path


def functional(*layers: dict[str, Any]) -> dict[str, Any]:
    """A Keras 2 style functional config: input "x" (4,) then ``layers`` in a chain."""
    entries: list[dict[str, Any]] = [
        {
            "class_name": "InputLayer",
            "name": "x",
            "config": {"name": "x", "batch_input_shape": [None, 4], "dtype": "float32"},
            "inbound_nodes": [],
        }
    ]
    previous = "x"
    for layer in layers:
        name = layer["config"]["name"]
        entries.append({**layer, "name": name, "inbound_nodes": [[[previous, 0, 0, {}]]]})
        previous = name
    return {
        "class_name": "Functional",
        "config": {
            "name": "m",
            "layers": entries,
            "input_layers": [["x", 0, 0]],
            "output_layers": [[previous, 0, 0]],
        },
    }


def dense(
    name: str = "d", units: Any = 3, activation: Any = "softmax", **extra: Any
) -> dict[str, Any]:
    return {
        "class_name": "Dense",
        "config": {"name": name, "units": units, "activation": activation, **extra},
    }
