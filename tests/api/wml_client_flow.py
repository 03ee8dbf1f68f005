"""IBM's watson-machine-learning-client 1.0.391, unchanged, against a live kscore.

Run by tests/api/test_wml_client.py with the Python of a venv holding only IBM's client:
``python wml_client_flow.py ARGS.json OUT.json``. The client prints tables and progress on
stdout, so the results go to OUT.json. ``store_and_score`` is the README's snippet, verbatim.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Any

from watson_machine_learning_client import WatsonMachineLearningAPIClient


def store_and_score(wml_credentials: dict[str, str], model_tgz: str, rows: list[Any]) -> Any:
    # --- README start
    client = WatsonMachineLearningAPIClient(wml_credentials)
    meta_props = {
        client.repository.ModelMetaNames.NAME: "dense keras model",
        client.repository.ModelMetaNames.FRAMEWORK_NAME: "tensorflow",
        client.repository.ModelMetaNames.FRAMEWORK_VERSION: "1.5",
        client.repository.ModelMetaNames.RUNTIME_NAME: "python",
        client.repository.ModelMetaNames.RUNTIME_VERSION: "3.5",
        client.repository.ModelMetaNames.FRAMEWORK_LIBRARIES: [
            {"name": "keras", "version": "2.1.3"}
        ],
    }
    model_details = client.repository.store_model(model=model_tgz, meta_props=meta_props)
    model_uid = client.repository.get_model_uid(model_details)
    deployment = client.deployments.create(model_uid, name="dense keras deployment")
    scoring_url = client.deployments.get_scoring_url(deployment)
    predictions = client.deployments.score(scoring_url, {"values": rows})
    # --- README end
    return client, model_uid, deployment, predictions


def error_of(call: Any) -> str | None:
    """The client's exception from ``call()`` as text, or None if it returned."""
    try:
        call()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def run(args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    client, model_uid, deployment, predictions = store_and_score(
        args["credentials"], args["tgz"], args["rows"]
    )
    deployment_uid = client.deployments.get_uid(deployment)
    scoring_url = client.deployments.get_scoring_url(deployment)
    out.update(model_uid=model_uid, deployment_uid=deployment_uid, predictions=predictions)
    out["scoring_url"] = scoring_url
    out["model_details"] = client.repository.get_details(model_uid)
    out["model_type"] = client.repository.get_model_details(model_uid)["entity"]["model_type"]
    client.repository.list()
    client.repository.list_models()
    client.deployments.list()
    out["all_details"] = client.repository.get_details()
    out["status"] = client.deployments.get_status(deployment_uid)
    out["deployment_details"] = client.deployments.get_details(deployment_uid)

    # A Keras 3 .keras file, deployed asynchronously and polled with get_status.
    keras_details = client.repository.store_model(
        model=args["keras"],
        meta_props={
            client.repository.ModelMetaNames.NAME: "keras 3 model",
            client.repository.ModelMetaNames.FRAMEWORK_NAME: "keras",
            client.repository.ModelMetaNames.FRAMEWORK_VERSION: "3",
        },
    )
    keras_uid = client.repository.get_model_uid(keras_details)
    pending = client.deployments.create(keras_uid, name="keras 3 deployment", asynchronous=True)
    keras_deployment_uid = client.deployments.get_uid(pending)
    statuses = [client.deployments.get_status(keras_deployment_uid)]
    deadline = time.monotonic() + 120
    while statuses[-1] == "DEPLOY_IN_PROGRESS" and time.monotonic() < deadline:
        time.sleep(0.5)
        statuses.append(client.deployments.get_status(keras_deployment_uid))
    out["async_first_status"] = pending["entity"]["status"]
    out["async_statuses"] = statuses
    keras_url = client.deployments.get_scoring_url(
        client.deployments.get_details(keras_deployment_uid)
    )
    out["keras_predictions"] = client.deployments.score(keras_url, {"values": args["rows"]})

    # A model that fails to load: the client's deployment failure carries kscore's reason.
    broken = client.repository.store_model(
        model=args["broken_tgz"],
        meta_props={
            client.repository.ModelMetaNames.NAME: "broken model",
            client.repository.ModelMetaNames.FRAMEWORK_NAME: "tensorflow",
            client.repository.ModelMetaNames.FRAMEWORK_VERSION: "1.5",
        },
    )
    broken_uid = client.repository.get_model_uid(broken)
    out["broken_error"] = error_of(lambda: client.deployments.create(broken_uid, name="broken"))
    broken_deployments = [
        client.deployments.get_uid(d)
        for d in client.deployments.get_details()["resources"]
        if d["entity"]["deployable_asset"]["guid"] == broken_uid
    ]
    out["broken_statuses"] = [client.deployments.get_status(d) for d in broken_deployments]

    # Another instance's credentials: nothing of this instance is visible to them.
    other = WatsonMachineLearningAPIClient(args["other_credentials"])
    out["other_get_model"] = error_of(lambda: other.repository.get_details(model_uid))
    out["other_get_deployment"] = error_of(lambda: other.deployments.get_details(deployment_uid))
    out["other_score"] = error_of(lambda: other.deployments.score(scoring_url, {"values": [[0]]}))
    out["other_delete_deployment"] = other.deployments.delete(deployment_uid)
    out["other_delete_model"] = error_of(lambda: other.repository.delete(model_uid))
    out["other_models"] = other.repository.get_details()["models"]["resources"]

    out["deleted"] = [
        client.deployments.delete(deployment_uid),
        client.deployments.delete(keras_deployment_uid),
        *[client.deployments.delete(d) for d in broken_deployments],
        client.repository.delete(model_uid),
        client.repository.delete(keras_uid),
        client.repository.delete(broken_uid),
    ]
    out["models_left"] = client.repository.get_details()["models"]["resources"]
    return out


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        arguments = json.load(f)
    try:
        result = run(arguments)
    except Exception:
        result = {"crash": traceback.format_exc()}
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
