"""The synchronous peer: a plain Flask app that calls the model directly in the request.

What most people write first, and what kscore's online path is measured against: gunicorn
with 2 sync worker processes, each loading the same ``.keras`` files, each request parsed,
scored with ``model(x)`` and answered in the same WML documents as kscore's online endpoint::

    POST /score/<model name>   {"values": [row, ...]}
    200 {"fields": ["prediction", "prediction_classes", "probability"], "values": [...]}

The models are the ``<name>.keras`` files in ``BENCH_PEER_MODELS`` (a directory), loaded when
each gunicorn process builds the app: gunicorn (without ``--preload``) calls
``create_app()`` in the process after the fork, so TensorFlow never crosses a fork (it hangs in
forked children), and no request pays for a load. Started by :func:`peer_command` under
kscore's supervisor.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from flask import Flask, Response, jsonify, request

from shared.scoring import format_rows

FIELDS = ["prediction", "prediction_classes", "probability"]
MODELS_ENV = "BENCH_PEER_MODELS"
PEER_PROCESSES = 2


def create_app(models_dir: str | None = None) -> Flask:
    """The peer app serving the ``.keras`` files in ``models_dir`` (default: $BENCH_PEER_MODELS).

    Raises KeyError without a directory. Unknown model names answer 404; a body without ``values`` or with rows of the wrong shape
    answers 400 with the reason.
    """
    import keras

    directory = Path(models_dir or os.environ[MODELS_ENV])
    models = {path.stem: keras.models.load_model(path) for path in directory.glob("*.keras")}
    app = Flask("bench.peer")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/score/<name>")
    def score(name: str) -> Response | tuple[Response, int]:
        model = models.get(name)
        if model is None:
            return jsonify({"error": f"no model {name!r}"}), 404
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("values"), list):
            return jsonify({"error": 'expected {"values": [row, ...]}'}), 400
        try:
            x = np.asarray(body["values"], dtype=np.float32)
            output = model(x, training=False).numpy()
        except (ValueError, TypeError) as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify({"fields": FIELDS, "values": format_rows([output], ["output"])})

    return app


def peer_command(host: str, port: int, processes: int = PEER_PROCESSES) -> list[str]:
    """The argv running the peer under gunicorn: ``processes`` sync workers on ``host:port``."""
    return [
        sys.executable, "-m", "gunicorn",
        "-b", f"{host}:{port}",
        "-w", str(processes),
        "-k", "sync",
        "--timeout", "120",
        "bench.peer:create_app()",
    ]  # fmt: skip
