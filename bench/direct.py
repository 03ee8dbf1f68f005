"""The benchmark's baseline: the same small CNN called directly in this process, no service.

``bench/run.py`` measures the service next to these numbers; Keras is imported inside the
functions, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

INPUT_SHAPE = (28, 28, 1)
SEED = 1234
DIRECT_SLICES = (256, 1024, 4096)
DIRECT_PREDICT_BATCHES = (256, 1024)


def build_model(path: Path) -> None:
    """Save a small seeded CNN (28x28x1 -> 10 softmax) as a .keras file."""
    import keras

    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="bench_cnn",
    )
    model.save(path)


def load_model(path: Path) -> Any:
    """The model as a worker would have it: loaded from the saved file."""
    import keras

    return keras.models.load_model(path)


def make_rows(count: int) -> np.ndarray:
    """Seeded pixel-like inputs in [0, 1] with 3 decimals, so the JSON stays compact."""
    rng = np.random.default_rng(SEED)
    return np.round(rng.random((count, *INPUT_SHAPE)), 3)


def time_direct_calls(model: Any, x: np.ndarray, requests: int, warmup: int) -> list[float]:
    """Seconds per ``model(x, training=False)`` call, output fetched to numpy."""
    for _ in range(warmup):
        model(x, training=False).numpy()
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        model(x, training=False).numpy()
        seconds.append(time.perf_counter() - started)
    return seconds


def score_sliced(model: Any, x: np.ndarray, batch: int) -> np.ndarray:
    """The model called directly on consecutive slices of ``batch`` rows."""
    parts = [model(x[i : i + batch], training=False).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(parts)


def score_predict(model: Any, x: np.ndarray, batch: int) -> np.ndarray:
    """``model.predict`` with ``batch_size=batch``."""
    return np.asarray(model.predict(x, batch_size=batch, verbose=0))


def direct_throughput(model: Any, x: np.ndarray, repeats: int) -> dict[str, float]:
    """Rows/s of each way of scoring ``x`` in this process, best of ``repeats`` after a warm-up."""
    methods: dict[str, Callable[[], np.ndarray]] = {}
    for batch in DIRECT_SLICES:
        methods[f"model(x[i:i+{batch}])"] = functools.partial(score_sliced, model, x, batch)
    for batch in DIRECT_PREDICT_BATCHES:
        methods[f"model.predict(batch_size={batch})"] = functools.partial(
            score_predict, model, x, batch
        )
    rates = {}
    for name, method in methods.items():
        method()  # warm-up: traces predict's function, sizes the allocator
        best = min(_timed(method) for _ in range(repeats))
        rates[name] = len(x) / best
    return rates


def _timed(method: Callable[[], object]) -> float:
    started = time.perf_counter()
    method()
    return time.perf_counter() - started
