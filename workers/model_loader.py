"""Load a stored model file into something that predicts, in a worker process.

Which Keras reads a file depends on which Keras wrote it:

- Keras 3 files (``keras_version`` 3.x, in a ``.keras`` zip or an ``.h5``) go to ``keras``.
- Keras 2 files (standalone Keras 1.x/2.x, tf.keras / tf_keras 2.x, or no version at all) go
  to ``tf_keras``, which is Keras 2 itself. Keras 3 cannot read many of them (a bare-list
  Sequential config, an LSTM's ``time_major``, a tf_keras ``.keras`` zip), and some it reads
  but computes differently: Keras 3 redefined ``hard_sigmoid``, the default recurrent
  activation of Keras 2.0-2.2 LSTM/GRU layers, so their predictions would silently change.
- A Keras 2 ``.h5`` is built from its config by this module rather than by the loader, so the
  config handed to Keras is exactly the one that passed the safety check, after
  ``workers.keras2_compat`` made it build as its writer's Keras did (that Keras's defaults for
  arguments it did not serialize, CPU twins of GPU-only RNNs, no state). Convolution kernels
  trained with Theano are flipped, as Keras 2 did and tf_keras no longer does.

Calls go through one ``tf.function`` per model with the batch dimension left open, in pieces
of at most ``direct_call_max_rows`` rows: no ``model.predict()`` overhead, no retracing.

Every loader call here passes ``compile=False`` and ``safe_mode=True`` (or runs inside
``SafeModeScope(True)``) and never ``custom_objects``; ``tests/workers/test_model_loader.py``
reads this module's source to hold it so. ``TF_USE_LEGACY_KERAS`` makes ``tf.keras`` (and what
some loaders import through it) a different Keras, so a worker refuses to start with it set
(``workers.main``) and refuses to load with it set. After loading, the warm-up prediction on
zero rows must give finite outputs of the shapes the model declares, else the deployment fails.

TensorFlow, keras and tf_keras are imported inside functions only: this module is imported
by the Celery app before the worker forks, and TensorFlow must not be loaded before fork.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shared.errors import DomainError, ScoringInputInvalid, UnsupportedModelFile
from shared.keras_file import (
    ModelInfo,
    TensorSpec,
    check_config_safe,
    inspect_model_file,
    read_model_config,
)
from workers.keras2_compat import normalize_keras2_config
from workers.load_diagnosis import load_failure

log = logging.getLogger(__name__)

Loader = Literal["keras", "tf_keras"]

# Layers whose first N weights are convolution kernels that Theano stored flipped.
_THEANO_KERNELS = {"Conv1D": 1, "Conv2D": 1, "Conv3D": 1, "Conv2DTranspose": 1, "ConvLSTM2D": 2}


def choose_loader(info: ModelInfo) -> Loader:
    """The Keras that reads this file: ``keras`` for Keras 3 files, else ``tf_keras``."""
    major = _major_version(info.keras_version)
    if major is not None and major >= 3:
        return "keras"
    if major is None and info.format == "keras":
        # A .keras zip without a readable version: the format is Keras 3's own.
        return "keras"
    return "tf_keras"


#: The environment variable that swaps the Keras behind ``tf.keras`` for tf_keras.
LEGACY_KERAS_VARIABLE = "TF_USE_LEGACY_KERAS"


def legacy_keras_refusal(environ: Mapping[str, str] | None = None) -> str | None:
    """Why this process must not load models (``TF_USE_LEGACY_KERAS`` is set), or None."""
    env = os.environ if environ is None else environ
    if LEGACY_KERAS_VARIABLE not in env:
        return None
    return (
        f"{LEGACY_KERAS_VARIABLE} is set (to {env[LEGACY_KERAS_VARIABLE]!r}); it swaps the "
        "Keras that TensorFlow and the model loaders use. Unset it: kscore picks the Keras "
        "for each model file itself."
    )


def load_model(path: Path, filename: str, *, direct_call_max_rows: int = 1024) -> LoadedModel:
    """Check, load and wrap a bare model file (.h5/.hdf5/.keras) for prediction."""
    if direct_call_max_rows < 1:
        raise ValueError("direct_call_max_rows must be at least 1")
    refusal = legacy_keras_refusal()
    if refusal:
        raise UnsupportedModelFile(f"This worker cannot load models: {refusal}")
    # Inspection runs the safety check on the stored configs before any loader sees the file;
    # the check runs again below on the exact config a loader builds from.
    info = inspect_model_file(path, filename)
    loader = choose_loader(info)
    keras2_h5 = loader == "tf_keras" and info.format == "h5"
    config = read_model_config(path, filename)
    if keras2_h5:
        config = normalize_keras2_config(config, info.keras_version)
    check_config_safe(config)
    try:
        if keras2_h5:
            model = _load_tf_keras_h5(path, config, info)
        else:
            model = _load_with_keras_loader(path, info.format, loader)
    except DomainError:
        raise
    except Exception as exc:
        # Loaders complain with any exception type (ValueError, TypeError, KeyError, OSError);
        # every one of them means this file cannot be served, which the caller reports.
        log.warning("model_load_failed file=%s loader=%s", filename, loader, exc_info=True)
        raise load_failure(filename, loader, info.keras_version, config, _one_line(exc)) from exc
    log.debug(
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
            _ModelCall(model, feeds, _input_structure(model, model_inputs)),
            input_signature=self._signature,
            # The call is plain Python around the model: nothing for autograph to convert, and
            # autograph re-reads source from disk, which breaks if the file changed since import.
            autograph=False,
        )

    @property
    def trace_count(self) -> int:
        """How many graphs the call has traced: 1 once warmed up, whatever the batch sizes."""
        return int(self._graph.experimental_get_tracing_count())

    def warm_up(self) -> None:
        """Run one prediction on a zero (or empty-string) row per input, tracing the graph."""
        import tensorflow as tf

        rows = []
        for spec in self._signature:
            shape = [1] + [1 if d is None else d for d in spec.shape.as_list()[1:]]
            if spec.dtype == "string":
                rows.append(np.full(shape, "", dtype=object))
            else:
                rows.append(np.zeros(shape, dtype=spec.dtype.as_numpy_dtype))
        try:
            outputs = self.predict(rows)
        except (tf.errors.OpError, ValueError, TypeError) as exc:
            # Tracing or running the graph failed: the model loads but cannot be served here.
            raise UnsupportedModelFile(
                f"The model loaded but could not run on a zero row: {_one_line(exc)}",
                details={"loader": self.loader},
            ) from exc
        self._check_warm_up(outputs)

    def _check_warm_up(self, outputs: list[np.ndarray]) -> None:
        """Refuse a model whose zero-row prediction is not finite, or not the shape it declares.

        A damaged or crafted file can load and still answer NaN, infinities, or arrays of
        another shape than its outputs declare; either would reach clients as scores.
        """
        declared = [_batch_free_shape(t.shape) for t in getattr(self.model, "outputs", None) or []]
        names = [s.name for s in self.output_specs]
        if declared and len(declared) != len(outputs):
            raise self._warm_up_refusal(
                "output_count",
                f"it declares {len(declared)} output(s) but its prediction gave {len(outputs)}",
            )
        for index, array in enumerate(outputs):
            name = names[index] if index < len(names) else f"output {index}"
            shape = declared[index] if index < len(declared) else None
            got = list(array.shape)
            if not got or got[0] != 1:
                raise self._warm_up_refusal(
                    "output_shape", f"output {name!r} gave shape {got} for one row"
                )
            if shape is not None and (
                len(shape) != len(got)
                or any(d is not None and d != g for d, g in zip(shape[1:], got[1:], strict=True))
            ):
                raise self._warm_up_refusal(
                    "output_shape",
                    f"output {name!r} declares shape {shape} but gave {got} for one row",
                )
            if np.issubdtype(array.dtype, np.number) and not np.all(np.isfinite(array)):
                raise self._warm_up_refusal(
                    "non_finite_output",
                    f"output {name!r} gave non-finite values (NaN or infinity) for a zero row",
                )

    def _warm_up_refusal(self, reason: str, what: str) -> UnsupportedModelFile:
        return UnsupportedModelFile(
            f"The model loaded but its warm-up prediction failed the check: {what}. Its "
            "weights may be damaged; check the model in Keras and save it again.",
            details={"loader": self.loader, "reason": reason},
        )

    def output_signature(self) -> list[TensorSpec]:
        """Each output as Keras reports it for the loaded model, in the order predict() gives.

        ``shape`` is the output's Keras shape (``model.outputs``) with the batch dimension as
        None, e.g. ``[None, 10]``; ``dtype`` its dtype name ("float32"). ``name`` and
        ``activation`` are the file config's (``self.output_specs``). Traces the call if
        warm_up() has not yet; raises what tracing raises.
        """
        import tensorflow as tf

        structure = self._graph.get_concrete_function().structured_outputs
        tensors = self._flat_outputs(structure)
        keras_outputs = list(getattr(self.model, "outputs", None) or [])
        if len(keras_outputs) == len(tensors):
            # model.outputs is the call's result flattened the same way (nested lists in
            # order, dicts in sorted key order), with the shapes Keras declares.
            tensors = keras_outputs
        names = [s.name for s in self.output_specs]
        if len(names) != len(tensors):
            names = [str(n) for n in (getattr(self.model, "output_names", None) or [])]
        specs = []
        for index, tensor in enumerate(tensors):
            declared = self.output_specs[index] if index < len(self.output_specs) else None
            specs.append(
                TensorSpec(
                    name=names[index] if index < len(names) else f"output_{index}",
                    shape=_batch_free_shape(tensor.shape),
                    dtype=tf.as_dtype(tensor.dtype).name,
                    activation=declared.activation if declared is not None else None,
                )
            )
        return specs

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One array per model input (model order) -> one array per output, rows in order."""
        arrays = self._check_inputs(inputs)
        rows = len(arrays[0])
        step = self.direct_call_max_rows
        if rows <= step:
            return self._call(arrays)
        # Fixed-size pieces through the traced call: on 2 cores a small CNN scores 10k rows in
        # ~70 ms this way against ~125-230 ms with model.predict(batch_size=1024..10000) and
        # ~150 ms with eager calls; the piece size also bounds one call's memory.
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
        """The call's result as a flat list, in the order the output specs name them.

        Outputs may come back nested (``Model(x, [[a, b], c])``) or as dicts (Keras 3); both
        Keras and ``signature`` flatten them depth first, dict keys sorted, so
        ``tf.nest.flatten`` puts them in spec order.
        """
        import tensorflow as tf

        return list(tf.nest.flatten(result))


class _ModelCall:
    """``model(inputs, training=False)`` with the inputs as positional tensors in spec order.

    The tensors are packed into the structure the model was built with (one tensor, a list,
    a nested list, a dict), which Keras 3 requires and tf_keras accepts. A callable object
    rather than a closure: TensorFlow counts traces per code object, so one closure per
    loaded model would look like retracing and log a warning for every model.
    """

    def __init__(self, model: Any, feeds: list[int], structure: Any) -> None:
        self.model = model
        self.feeds = feeds
        self.structure = structure

    def __call__(self, *tensors: Any) -> Any:
        import tensorflow as tf

        ordered = [tensors[i] for i in self.feeds]
        if self.structure is None:
            return self.model(ordered[0] if len(ordered) == 1 else ordered, training=False)
        return self.model(tf.nest.pack_sequence_as(self.structure, ordered), training=False)


def _batch_free_shape(shape: Any) -> list[int | None] | None:
    """A Keras or TensorFlow shape as a list with the batch dimension None; None if unknown."""
    import tensorflow as tf

    try:
        dims: list[int | None] = tf.TensorShape(shape).as_list()
    except ValueError:  # unknown rank
        return None
    return [None, *dims[1:]] if dims else dims


def _input_structure(model: Any, model_inputs: list[Any]) -> Any:
    """The structure of ``model.input`` (a tensor, list, nested list or dict of tensors).

    ``model.inputs`` is that structure flattened (depth first, dict keys sorted); packing the
    call's flat tensors into it hands each tensor to its input. None when the model states no
    structure that flattens to its inputs: the call then passes one tensor or a flat list.
    """
    import tensorflow as tf

    try:
        struct = model.input
    except (AttributeError, ValueError):
        return None
    flat = tf.nest.flatten(struct)
    if len(flat) != len(model_inputs) or any(
        a is not b for a, b in zip(flat, model_inputs, strict=True)
    ):
        return None
    return tf.nest.map_structure(lambda _: 0, struct)


# --- loaders -------------------------------------------------------------------------------


def _load_tf_keras_h5(path: Path, config: Any, info: ModelInfo) -> Any:
    """A Keras 2 .h5 built by tf_keras from ``config`` (already normalised and checked).

    Not ``tf_keras.models.load_model``: it would build from the file's own config, which may
    name GPU-only layers, and it runs a Lambda's bytecode from an .h5 even in safe mode.
    """
    import tf_keras
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    # model_from_config takes no safe_mode; the scope makes tf_keras refuse any Lambda
    # bytecode it meets (the safety check refused those already).
    with SafeModeScope(True):
        model = tf_keras.models.model_from_config(config)
    with _named_link(path, "model.h5") as link:
        # Topological loading; tf_keras converts cuDNN (and Keras 1) weight layouts here.
        model.load_weights(str(link))
    if info.backend == "theano" and _major_version(info.keras_version) == 2:
        _flip_theano_kernels(model)
    return model


def _load_with_keras_loader(path: Path, fmt: str, loader: Loader) -> Any:
    """Keras 3 files (either format) and tf_keras .keras zips, through their own loader."""
    name = "model.keras" if fmt == "keras" else "model.h5"
    with _named_link(path, name) as link:
        if loader == "keras":
            keras = _import_keras()
            return keras.saving.load_model(str(link), compile=False, safe_mode=True)
        import tf_keras

        return tf_keras.models.load_model(str(link), compile=False, safe_mode=True)


def _flip_theano_kernels(model: Any) -> None:
    """Flip convolution kernels trained with Theano, as Keras 2 did when loading them.

    Theano convolves (flipping the kernel), TensorFlow correlates; Keras 2's loader flipped the
    spatial axes of Conv*/ConvLSTM2D kernels from Theano files, and tf_keras no longer does.
    """
    for layer in model.submodules:
        count = _THEANO_KERNELS.get(type(layer).__name__, 0)
        if not count:
            continue
        weights = layer.get_weights()
        for i in range(count):
            spatial = (slice(None, None, -1),) * (weights[i].ndim - 2)
            weights[i] = np.ascontiguousarray(weights[i][spatial])
        layer.set_weights(weights)


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


_TF_NOISE = re.compile(r"\{\{[^}]*\}\}|\[Op:[^\]]*\]|\[\[[^\]]*\]\]")
_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception): ")


def _one_line(exc: BaseException) -> str:
    """The complaint in ``exc`` as one line, without TensorFlow's node names and call sites."""
    lines = [_TF_NOISE.sub("", line).strip() for line in str(exc).splitlines()]
    # Errors raised while tracing quote the user code, then "SomeError: the complaint".
    starts = [i for i, line in enumerate(lines) if _ERROR_LINE.match(line)]
    if starts:
        lines = lines[starts[-1] :]
    boilerplate = ("Graph execution error", "Detected at node", "File ", "in user code:")
    useful = [line for line in lines if line and not line.startswith(boilerplate)]
    text = " ".join(" ".join(useful).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def limit_threads(threads: int) -> None:
    """Let TensorFlow in this process use ``threads`` threads per op (0: its default, all cores).

    Several workers on one machine each get a share of the cores instead of all fighting for
    all of them. Must run before TensorFlow's runtime starts; later calls are logged and ignored.
    """
    if threads <= 0:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as exc:
        log.warning("tensorflow threads not limited threads=%d reason=%s", threads, exc)
