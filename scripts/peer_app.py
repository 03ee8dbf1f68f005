"""A synchronous Flask peer for load comparisons: the model called directly per request.

    MODEL_PATH=model.keras gunicorn -w 2 scripts.peer_app:app
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from flask import Flask, jsonify, request

app = Flask(__name__)
_model: Any = None


def model() -> Any:
    global _model
    if _model is None:
        import keras

        _model = keras.models.load_model(os.environ["MODEL_PATH"])
    return _model


@app.post("/predict")
def predict() -> Any:
    x = np.asarray(request.get_json()["values"], dtype=np.float32)
    out = np.asarray(model()(x, training=False))
    return jsonify({"values": [[p, int(np.argmax(p)), p] for p in out.tolist()]})
