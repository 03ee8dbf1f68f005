"""Rebuild examples/iris_dense.h5 and iris_dense_v2.h5: a tiny Keras model saved with
model.save(), as WML users did, with two sets of fixed weights (v2 is what the README's
"Deployments that move" moves a deployment to: the same inputs, other weights).

Run with the server extras installed: .venv/bin/python examples/make_example_model.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def main() -> None:
    """Write both example models next to this script."""
    build(42, Path(__file__).with_name("iris_dense.h5"))
    build(7, Path(__file__).with_name("iris_dense_v2.h5"))


def build(seed: int, target: Path) -> None:
    """Build a 4-feature, 3-class softmax classifier with weights drawn from ``seed`` and save
    it as .h5."""
    import tf_keras as keras

    inputs = keras.Input(shape=(4,), name="features")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="species")(hidden)
    model = keras.Model(inputs, outputs, name="iris_dense")
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    model.save(target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
