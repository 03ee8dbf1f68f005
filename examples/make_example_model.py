"""Rebuild examples/iris_dense.h5: a tiny Keras model saved with model.save(), as WML users did.

Run with the server extras installed: .venv/bin/python examples/make_example_model.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def main() -> None:
    """Build a 4-feature, 3-class softmax classifier with fixed weights and save it as .h5."""
    import tf_keras as keras

    inputs = keras.Input(shape=(4,), name="features")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="species")(hidden)
    model = keras.Model(inputs, outputs, name="iris_dense")
    rng = np.random.default_rng(42)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    target = Path(__file__).with_name("iris_dense.h5")
    model.save(target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
