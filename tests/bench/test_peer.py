"""The synchronous peer answers the same WML document as kscore's online endpoint, with the
predictions of the model called directly (a tiny real Keras model, no server process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flask.testing import FlaskClient

from bench.direct import build_model, dense_spec, load_model, score
from bench.peer import FIELDS, create_app


def test_the_peer_scores_rows_as_the_model_does(tmp_path: Path) -> None:
    spec = dense_spec(4)
    build_model(spec, tmp_path / "dense.keras")
    client: FlaskClient = create_app(str(tmp_path)).test_client()
    x = spec.make_rows(3)

    answer = client.post("/score/dense", json={"values": x.tolist()})

    assert answer.status_code == 200
    body = answer.get_json()
    assert body["fields"] == FIELDS == ["prediction", "prediction_classes", "probability"]
    expected = score(load_model(tmp_path / "dense.keras"), x)
    predictions = np.asarray([row[0] for row in body["values"]])
    np.testing.assert_allclose(predictions, expected, atol=1e-6)
    assert [row[1] for row in body["values"]] == expected.argmax(axis=1).tolist()
    assert all(row[2] == row[0] for row in body["values"])

    assert client.post("/score/nope", json={"values": x.tolist()}).status_code == 404
    assert client.post("/score/dense", json={"rows": []}).status_code == 400
    assert client.post("/score/dense", json={"values": [[1, 2]]}).status_code == 400
