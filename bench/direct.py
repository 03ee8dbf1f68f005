"""The benchmark's models and its limit: each model called directly in this process, no server.

Two seeded models, saved as ``.keras`` files and loaded back as a worker would load them:

- ``cnn``: the CNN of issue 10, 28x28x1 -> Conv2D(32,3) -> Conv2D(64,3) -> MaxPool -> Flatten
  -> Dense(128) -> Dense(10, softmax);
- ``dense``: ``features`` floats -> Dense(32) -> Dense(3, softmax), a model that costs next to
  nothing, so what is left is the service's own cost per request and per row.

Keras is imported inside the functions, so importing this module stays cheap (the load
generator and the report never pay for TensorFlow).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEED = 1234
LIMIT_BATCH = 1024  # rows per call for the limit's rows/s
CNN_SHAPE = (28, 28, 1)
DENSE_FEATURES = 256  # 1M rows of float32 = 1.0 GB, so peak RSS has something to be below


@dataclass(frozen=True)
class ModelSpec:
    """One benchmark model: its name, the shape of one input row, and how it is built."""

    name: str
    row_shape: tuple[int, ...]
    description: str

    def make_rows(self, count: int, start: int = 0) -> np.ndarray:
        """Rows ``start .. start+count`` of a seeded sequence: float32 in [0, 1] with 3 decimals
        (short JSON), the same rows whatever ``count`` asks for them."""
        return make_rows(self.row_shape, count, start)

    def row_bytes(self) -> int:
        """Bytes of one row as float32."""
        return int(np.prod(self.row_shape)) * 4


CNN = ModelSpec(
    "cnn",
    CNN_SHAPE,
    "28x28x1 -> Conv2D(32,3) -> Conv2D(64,3) -> MaxPool -> Flatten -> Dense(128) -> Dense(10)",
)


def dense_spec(features: int = DENSE_FEATURES) -> ModelSpec:
    """The small dense model for ``features`` inputs."""
    return ModelSpec("dense", (features,), f"{features} -> Dense(32) -> Dense(3)")


def build_model(spec: ModelSpec, path: Path) -> None:
    """Save ``spec``'s model with seeded weights as a .keras file at ``path``."""
    import keras

    keras.utils.set_random_seed(SEED)
    layers = keras.layers
    if spec.name == "cnn":
        body = [
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    else:
        body = [layers.Dense(32, activation="relu"), layers.Dense(3, activation="softmax")]
    model = keras.Sequential([keras.Input(shape=spec.row_shape), *body], name=f"bench_{spec.name}")
    model.save(path)


def load_model(path: Path) -> Any:
    """The model as a worker would have it: loaded from the saved file."""
    import keras

    return keras.models.load_model(path)


def make_rows(row_shape: tuple[int, ...], count: int, start: int = 0) -> np.ndarray:
    """``count`` seeded rows from row ``start`` on, float32 in [0, 1] rounded to 3 decimals.

    Generated in blocks of 4,096 rows seeded by block number, so any slice of a large dataset
    can be rebuilt without the rest (to check sampled predictions).
    """
    out = np.empty((count, *row_shape), dtype=np.float32)
    if count == 0:
        return out
    for number in range(start // _BLOCK, (start + count - 1) // _BLOCK + 1):
        rows = _block(row_shape, number)
        lo = max(start, number * _BLOCK)
        hi = min(start + count, (number + 1) * _BLOCK)
        out[lo - start : hi - start] = rows[lo - number * _BLOCK : hi - number * _BLOCK]
    return out


def rows_at(row_shape: tuple[int, ...], indices: np.ndarray) -> np.ndarray:
    """The seeded rows with the given (sorted) row numbers, as :func:`make_rows` makes them."""
    out = np.empty((len(indices), *row_shape), dtype=np.float32)
    numbers = indices // _BLOCK
    for number in np.unique(numbers):
        where = numbers == number
        out[where] = _block(row_shape, int(number))[indices[where] - number * _BLOCK]
    return out


_BLOCK = 4096


def _block(row_shape: tuple[int, ...], number: int) -> np.ndarray:
    rng = np.random.default_rng([SEED, number])
    return np.round(rng.random((_BLOCK, *row_shape), dtype=np.float32), 3)


def score(model: Any, x: np.ndarray, batch: int = LIMIT_BATCH) -> np.ndarray:
    """The model called directly on consecutive slices of ``batch`` rows; float32 outputs."""
    if len(x) == 0:
        return np.empty((0,), dtype=np.float32)
    parts = [model(x[i : i + batch], training=False).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(parts)


def traced_call(model: Any, row_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """The model behind one ``tf.function`` with the batch dimension left open, as a kscore
    worker calls it (``workers.model_loader``): one graph, no retracing, no predict loop."""
    import tensorflow as tf

    graph = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, *row_shape), tf.float32)],
        reduce_retracing=True,
    )
    return lambda x: graph(tf.constant(x)).numpy()


@dataclass(frozen=True)
class Limit:
    """The model in one process: 1-row latency and rows/s at LIMIT_BATCH rows per call."""

    p50_ms: float
    p99_ms: float
    calls: int
    rows_per_s: float
    method: str
    methods: dict[str, float]
    rows: int


def measure_limit(model: Any, spec: ModelSpec, calls: int, rows: int, repeats: int = 3) -> Limit:
    """Time ``calls`` 1-row ``model(x)`` calls (after a warm-up), then ``rows`` rows scored at
    LIMIT_BATCH rows per call three ways (eager calls, the traced call a worker makes, and
    ``model.predict``); the limit is the fastest, best of ``repeats``."""
    one = spec.make_rows(1)
    for _ in range(max(5, calls // 10)):
        model(one, training=False).numpy()
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        model(one, training=False).numpy()
        seconds.append(time.perf_counter() - started)
    ms = np.asarray(seconds) * 1000.0

    x = spec.make_rows(rows)
    graph = traced_call(model, spec.row_shape)
    methods: dict[str, Callable[[], object]] = {
        f"model(x[i:i+{LIMIT_BATCH}])": lambda: score(model, x),
        f"tf.function(model)(x[i:i+{LIMIT_BATCH}])": lambda: [
            graph(x[i : i + LIMIT_BATCH]) for i in range(0, len(x), LIMIT_BATCH)
        ],
        f"model.predict(batch_size={LIMIT_BATCH})": lambda: model.predict(
            x, batch_size=LIMIT_BATCH, verbose=0
        ),
    }
    rates = {}
    for name, method in methods.items():
        method()  # warm-up: traces predict's function, sizes the allocator
        rates[name] = rows / min(_timed(method) for _ in range(repeats))
    best = max(rates, key=lambda name: rates[name])
    return Limit(
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        calls=calls,
        rows_per_s=rates[best],
        method=best,
        methods=rates,
        rows=rows,
    )


def _timed(method: Callable[[], object]) -> float:
    started = time.perf_counter()
    method()
    return time.perf_counter() - started


def sample_indices(rows: int, size: int = 2048) -> np.ndarray:
    """Sorted row numbers to check a result by: the first and last 256 and ``size`` seeded
    random ones (row order errors show at both ends and in between)."""
    rng = np.random.default_rng(SEED)
    picks = [np.arange(min(rows, 256)), np.arange(max(0, rows - 256), rows)]
    picks.append(rng.integers(0, rows, size=min(size, rows)))
    return np.unique(np.concatenate(picks))


def expected_for(model: Any, spec: ModelSpec, indices: np.ndarray) -> np.ndarray:
    """Direct predictions for the given row numbers of ``spec``'s seeded rows."""
    if len(indices) == 0:
        return np.empty((0,), dtype=np.float32)
    return score(model, rows_at(spec.row_shape, indices))
