"""The deploy task records each output's shape and dtype as Keras reports them for the model.

Through the API and a real Celery worker: a model's output shapes are unknown (null) when it
is stored, and once a deployment succeeds the deployment and the model show, per output, the
shape and dtype that Keras itself reports for the same file (``model.outputs``), read here by
the Keras that wrote the file.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from shared.blob_store import BlobStore
from shared.deployment_store import DeploymentStore
from shared.keys import Keys
from shared.model_store import ModelStore
from shared.settings import Settings
from shared.status import DeploymentStatus
from tests import keras_files as kf
from tests.helpers import store_model, wait_for

Builder = Callable[[Path], Path]

BUILDERS: dict[str, Builder] = {
    "keras3_keras": kf.keras3_keras_file,
    "keras3_sequential_h5": kf.keras3_sequential_h5_file,
    "tf_keras_h5": kf.tf_keras_h5_file,
    "keras2.2.4_h5": functools.partial(kf.keras2_standalone_h5_file, keras_version="2.2.4"),
    "keras2.1.6_list_h5": functools.partial(kf.keras2_standalone_h5_file, keras_version="2.1.6"),
    "keras2.3.1_batchnorm_h5": kf.keras23_batchnorm_h5_file,
    "multi_io_keras": kf.multi_io_keras_file,
    "small_cnn_keras": kf.small_cnn_keras_file,
    "tf_keras_lstm_h5": kf.tf_keras_lstm_h5_file,
    "text_vectorization_keras": kf.text_vectorization_keras_file,
    **{builder.__name__: builder for builder in kf.LAYER_ZOO},
}


def keras_reports(path: Path, keras_version: str) -> list[tuple[list[int | None], str]]:
    """(shape, dtype) of each of the model's outputs, from the Keras that wrote the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if keras_version.startswith("3."):
            import keras

            model = keras.saving.load_model(str(path), compile=False)
        else:
            import tf_keras

            model = tf_keras.models.load_model(str(path), compile=False)
    return [(list(o.shape), getattr(o.dtype, "name", o.dtype)) for o in model.outputs]


def deploy(client: FlaskClient, model_id: str) -> dict[str, Any]:
    response = client.post("/api/v1/deployments", json={"model_id": model_id, "name": "dep"})
    assert response.status_code == 202, response.get_json()
    href = response.get_json()["href"].split("localhost", 1)[-1]

    def settled() -> dict[str, Any] | None:
        current = client.get(href).get_json()
        return None if current["status"] == "DEPLOY_IN_PROGRESS" else current

    final: dict[str, Any] = wait_for(settled, timeout=120, what="deployment to settle")
    assert final["status"] == "DEPLOY_SUCCESS", final
    return final


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deploy-outputs")


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("case", sorted(BUILDERS))
def test_deployment_reports_the_output_shapes_keras_reports(
    client: FlaskClient, model_dir: Path, case: str
) -> None:
    folder = model_dir / case
    folder.mkdir()
    path = BUILDERS[case](folder)
    stored = store_model(client, path)
    declared = stored["outputs"]
    assert declared and all(o["shape"] is None for o in declared)  # not known before deploying

    deployment = deploy(client, stored["id"])

    expected = keras_reports(path, stored["keras_version"])
    for shown in (deployment, client.get(f"/api/v1/models/{stored['id']}").get_json()):
        assert [(o["shape"], o["dtype"]) for o in shown["outputs"]] == expected
        # Names and activations stay those of the file's config, which scoring rows key on.
        assert [(o["name"], o["activation"]) for o in shown["outputs"]] == [
            (o["name"], o["activation"]) for o in declared
        ]
        assert shown["inputs"] == stored["inputs"]


def test_outputs_of_a_deleted_record_write_nothing(
    redis_client: redis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.key_prefix)
    deployments = DeploymentStore(redis_client, keys)
    models = ModelStore(
        redis_client, keys, BlobStore(redis_client, keys, settings.blob_chunk_bytes)
    )
    outputs = [{"name": "y", "shape": [None, 1], "dtype": "float32", "activation": None}]
    status = DeploymentStatus.DEPLOY_SUCCESS
    assert (
        deployments.set_status(settings.default_instance, "gone", status, outputs=outputs) is None
    )
    assert not redis_client.exists(keys.deployment(settings.default_instance, "gone"))
    assert models.record_outputs(settings.default_instance, "gone", outputs) is None
