"""Load a stored model file into something that predicts, in a worker process.

Which Keras reads a file depends on which Keras wrote it:

- Keras 3 files (``keras_version`` 3.x, in a ``.keras`` zip or an ``.h5``) go to ``keras``.
- Keras 2 files (standalone Keras 2.x, tf.keras / tf_keras 2.x, or no version at all) go to
  ``tf_keras``. Keras 3 cannot read many of them (a bare-list Sequential config, an LSTM's
  ``time_major``, ...), while tf_keras is Keras 2 itself.
- A Keras 2 ``.h5`` is instantiated from its config by us, not by the loader, so that the
  config handed to Keras is exactly the one that passed the safety check, and so that
  GPU-only layers (``CuDNNLSTM``, ``CuDNNGRU``) can be swapped for their CPU twins first;
  tf_keras's weight loading then converts the cuDNN weight layout.

TensorFlow, keras and tf_keras are imported inside functions only: this module is imported
by the Celery app before the worker forks, and TensorFlow must not be loaded before fork.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from shared.errors import ScoringInputInvalid, UnsupportedModelFile
from shared.model_inspect import ModelInfo, TensorSpec, check_config_safe, inspect_model_file

log = logging.getLogger(__name__)

Loader = Literal["keras", "tf_keras"]

# Settings a CuDNN layer had built in; the CPU layer must be told them explicitly, because
# its own defaults differ (e.g. GRU's reset_after before Keras 2.3, recurrent_activation).
_CUDNN_AS_CPU: dict[str, tuple[str, dict[str, Any]]] = {
    "CuDNNLSTM": (
        "LSTM",
        {
            "activation": "tanh",
            "recurrent_activation": "sigmoid",
            "use_bias": True,
            "dropout": 0.0,
            "recurrent_dropout": 0.0,
            "unroll": False,
        },
    ),
    "CuDNNGRU": (
        "GRU",
        {
            "activation": "tanh",
            "recurrent_activation": "sigmoid",
            "use_bias": True,
            "reset_after": True,
            "dropout": 0.0,
            "recurrent_dropout": 0.0,
            "unroll": False,
        },
    ),
}


def choose_loader(info: ModelInfo) -> Loader:
    """The Keras that reads this file: ``keras`` for Keras 3 files, else ``tf_keras``."""
    major = _major_version(info.keras_version)
    if major is not None and major >= 3:
        return "keras"
    if major is None and info.format == "keras":
        # A .keras zip without a readable version: the format is Keras 3's own.
        return "keras"
    return "tf_keras"


def load_model(path: Path, filename: str, *, direct_call_max_rows: int = 1024) -> LoadedModel:
    """Check, load and wrap a bare model file (.h5/.hdf5/.keras) for prediction."""
    if direct_call_max_rows < 1:
        raise ValueError("direct_call_max_rows must be at least 1")
    # Inspection re-runs the safety check on the stored config before any loader sees it.
    info = inspect_model_file(path, filename)
    loader = choose_loader(info)
    try:
        if loader == "tf_keras" and info.format == "h5":
            model = _load_tf_keras_h5(path)
        else:
            model = _load_zip_or_keras3(path, info.format, loader)
    except UnsupportedModelFile:
        raise
    except Exception as exc:
        # Loaders complain with any exception type (ValueError, TypeError, KeyError, OSError);
        # every one of them means this file cannot be served, which the caller reports.
        log.warning("model_load_failed file=%s loader=%s", filename, loader, exc_info=True)
        raise UnsupportedModelFile(
            f"{filename} could not be loaded by {_loader_label(loader, info)}: "
            f"{_one_line(exc)}. Re-save the model with Keras 3 (model.save('model.keras')) "
            "and upload that file.",
            details={"loader": loader, "keras_version": info.keras_version},
        ) from exc
    log.info(
        "model_loaded file=%s loader=%s keras_version=%s", filename, loader, info.keras_version
    )
    return LoadedModel(
        model=model,
        loader=loader,
        input_specs=list(info.inputs),
        output_specs=list(info.outputs),
        direct_call_max_rows=direct_call_max_rows,
    )


class LoadedModel:
    """A loaded Keras model with its signature and a fast call for any number of rows."""

    def __init__(
        self,
        model: Any,
        loader: Loader,
        input_specs: list[TensorSpec],
        output_specs: list[TensorSpec],
        direct_call_max_rows: int = 1024,
    ) -> None:
        import tensorflow as tf

        self.model = model
        self.loader: Loader = loader
        self.input_specs = input_specs
        self.output_specs = output_specs
        self.direct_call_max_rows = direct_call_max_rows
        model_inputs = list(getattr(model, "inputs", None) or [])
        if not model_inputs:
            raise UnsupportedModelFile(
                "The model has no defined inputs, so it cannot be called; save it with an "
                "Input layer (or an input_shape on its first layer)."
            )
        # Callers pass arrays in input_specs order; feed each to the model input of that name,
        # whatever order (or dict) the model itself keeps its inputs in.
        model_names = [str(t.name) for t in model_inputs]
        spec_names = [s.name for s in input_specs]
        if sorted(spec_names) == sorted(model_names) and len(set(model_names)) == len(model_names):
            feeds = [spec_names.index(n) for n in model_names]
        else:
            if len(input_specs) != len(model_inputs):
                raise UnsupportedModelFile(
                    f"The file describes {len(input_specs)} input(s) but the model built from "
                    f"it has {len(model_inputs)}; the file is inconsistent."
                )
            feeds = list(range(len(model_inputs)))
        # One trace serves every batch size: the batch dimension stays open in the signature,
        # so neither a 3-row request nor the short last piece of a large batch retraces.
        by_feed = {feed: t for feed, t in zip(feeds, model_inputs, strict=True)}
        self._signature = [
            tf.TensorSpec(
                [None, *tf.TensorShape(by_feed[i].shape).as_list()[1:]],
                tf.as_dtype(by_feed[i].dtype),
            )
            for i in range(len(model_inputs))
        ]
        self._graph = tf.function(
            _ModelCall(model, feeds, _input_keys(model, model_inputs)),
            input_signature=self._signature,
        )

    @property
    def trace_count(self) -> int:
        """How many graphs the call has traced: 1 once warmed up, whatever the batch sizes."""
        return int(self._graph.experimental_get_tracing_count())

    def warm_up(self) -> None:
        """Run one prediction on a zero (or empty-string) row per input, tracing the graph."""
        rows = []
        for spec in self._signature:
            shape = [1] + [1 if d is None else d for d in spec.shape.as_list()[1:]]
            if spec.dtype == "string":
                rows.append(np.full(shape, "", dtype=object))
            else:
                rows.append(np.zeros(shape, dtype=spec.dtype.as_numpy_dtype))
        self.predict(rows)

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One array per model input (model order) -> one array per output, rows in order."""
        arrays = self._check_inputs(inputs)
        rows = len(arrays[0])
        step = self.direct_call_max_rows
        if rows <= step:
            return self._call(arrays)
        # Fixed-size pieces through the traced call beat model.predict() on 2 cores and bound
        # the memory one call needs (see the module's tests for the measurements).
        pieces = [self._call([a[i : i + step] for a in arrays]) for i in range(0, rows, step)]
        return [np.concatenate([p[k] for p in pieces]) for k in range(len(pieces[0]))]

    def _check_inputs(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self._signature):
            raise ScoringInputInvalid(
                f"The model takes {len(self._signature)} input(s), got {len(inputs)}."
            )
        arrays: list[np.ndarray] = []
        for index, (array, spec) in enumerate(zip(inputs, self._signature, strict=True)):
            name = self.input_specs[index].name if index < len(self.input_specs) else str(index)
            if spec.dtype == "string":
                array = np.asarray(array, dtype=object)
            else:
                array = np.asarray(array, dtype=spec.dtype.as_numpy_dtype)
            expected = spec.shape.as_list()
            got = list(array.shape)
            if len(got) != len(expected) or any(
                e is not None and e != g for e, g in zip(expected[1:], got[1:], strict=True)
            ):
                raise ScoringInputInvalid(
                    f"Input {name!r} has shape {got}, but the model expects {expected} "
                    "(None is any size).",
                    details={"input": name, "expected_shape": expected, "received_shape": got},
                )
            if arrays and len(array) != len(arrays[0]):
                raise ScoringInputInvalid(
                    f"Input {name!r} has {len(array)} rows, but the first input has "
                    f"{len(arrays[0])}; every input needs one entry per row.",
                    details={"input": name},
                )
            arrays.append(array)
        return arrays

    def _call(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import tensorflow as tf

        tensors = [
            tf.constant(a, dtype=s.dtype) for a, s in zip(arrays, self._signature, strict=True)
        ]
        return [np.asarray(t) for t in self._flat_outputs(self._graph(*tensors))]

    def _flat_outputs(self, result: Any) -> list[Any]:
        if isinstance(result, dict):
            # Outputs declared as a dict come back keyed by name; put them in spec order.
            for names in (
                [s.name for s in self.output_specs],
                [str(n) for n in (getattr(self.model, "output_names", None) or [])],
            ):
                if names and set(names) == set(result):
                    return [result[n] for n in names]
            return list(result.values())
        if isinstance(result, list | tuple):
            return list(result)
        return [result]


class _ModelCall:
    """``model(inputs, training=False)`` with the inputs as positional tensors in spec order.

    A callable object rather than a closure: TensorFlow counts traces per code object, so one
    closure per loaded model would look like retracing and log a warning for every model.
    """

    def __init__(self, model: Any, feeds: list[int], keys: list[str] | None) -> None:
        self.model = model
        self.feeds = feeds
        self.keys = keys

    def __call__(self, *tensors: Any) -> Any:
        ordered = [tensors[i] for i in self.feeds]
        if self.keys is not None:
            return self.model(dict(zip(self.keys, ordered, strict=True)), training=False)
        return self.model(ordered[0] if len(ordered) == 1 else ordered, training=False)


def _input_keys(model: Any, model_inputs: list[Any]) -> list[str] | None:
    """The dict keys of a Keras 3 model built with dict inputs, in ``model.inputs`` order."""
    try:
        struct = model.input
    except (AttributeError, ValueError):
        return None
    if not isinstance(struct, dict):
        return None
    keys = []
    for tensor in model_inputs:
        key = next((k for k, v in struct.items() if v is tensor), None)
        if key is None:
            return None
        keys.append(str(key))
    return keys


# --- loaders -------------------------------------------------------------------------------


def _load_tf_keras_h5(path: Path) -> Any:
    """A Keras 2 .h5: normalise and check its config, build it with tf_keras, load weights."""
    import tf_keras

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
        if raw is None:
            raise UnsupportedModelFile(
                "The .h5 file holds weights only (no model config); upload the whole model "
                "saved with model.save()."
            )
        config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes | np.bytes_) else raw)
    config = normalize_keras2_config(config)
    # The check runs on the very object tf_keras instantiates: tf_keras would run a Lambda's
    # bytecode from an .h5 even with safe_mode=True.
    check_config_safe(config)
    model = tf_keras.models.model_from_config(config)
    with _named_link(path, "model.h5") as link:
        # Topological loading; tf_keras converts cuDNN weight layouts (and Keras 1 ones) here.
        model.load_weights(str(link))
    return model


def _load_zip_or_keras3(path: Path, fmt: str, loader: Loader) -> Any:
    """Keras 3 files (either format) and tf_keras .keras zips, through their own loader."""
    name = "model.keras" if fmt == "keras" else "model.h5"
    with _named_link(path, name) as link:
        if loader == "keras":
            keras = _import_keras()
            return keras.saving.load_model(str(link), compile=False, safe_mode=True)
        import tf_keras

        return tf_keras.models.load_model(str(link), compile=False, safe_mode=True)


def normalize_keras2_config(config: Any) -> Any:
    """A Keras 2 model config that tf_keras can build on CPU: GPU-only RNNs become LSTM/GRU."""
    if isinstance(config, list):
        return [normalize_keras2_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    out = {key: normalize_keras2_config(value) for key, value in config.items()}
    swap = _CUDNN_AS_CPU.get(str(out.get("class_name")))
    if swap is not None and isinstance(out.get("config"), dict):
        cpu_class, settings = swap
        out["class_name"] = cpu_class
        out["config"] = {**out["config"], **settings}
    return out


def _import_keras() -> Any:
    # kscore wraps calls in tf.function, so Keras 3 must run on TensorFlow.
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        raise UnsupportedModelFile(
            f"Keras 3 runs on the {keras.backend.backend()!r} backend here; kscore workers "
            "need KERAS_BACKEND=tensorflow."
        )
    return keras


@contextlib.contextmanager
def _named_link(path: Path, name: str) -> Iterator[Path]:
    """``path`` under a name with the extension the loaders dispatch on.

    Cached model files are named by their sha256; Keras picks its reader by extension.
    """
    if path.name.endswith(Path(name).suffix):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="kscore-load-") as tmp:
        link = Path(tmp) / name
        link.symlink_to(path.resolve())
        yield link


def _major_version(version: str | None) -> int | None:
    if not version:
        return None
    head = str(version).strip().split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _loader_label(loader: Loader, info: ModelInfo) -> str:
    written_by = f"Keras {info.keras_version}" if info.keras_version else "an unknown Keras"
    reader = "Keras 3" if loader == "keras" else "tf_keras (Keras 2)"
    return f"{reader} (the file was written by {written_by})"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if not text:
        text = type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
