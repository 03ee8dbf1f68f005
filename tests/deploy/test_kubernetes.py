"""deploy/kubernetes/, validated offline: every Kubernetes object against the schemas
kubernetes-validate ships (strict: unknown fields are errors), probes and resources checked by
hand, and KEDA's objects (custom resources no Kubernetes schema describes) against KEDA's
ScaledObject / TriggerAuthentication fields. The queue keys KEDA watches are checked against
the keys Celery really writes."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import redis
import yaml

from shared.keys import ONLINE_GROUP, Keys
from shared.queueing import ALL_QUEUES, QUEUE_BATCH, celery_key_prefix, make_celery
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"  # a version kubernetes-validate ships schemas for
# The rule: objects of these API groups are custom resources or kustomize's own file, which
# kubernetes-validate has no schema for; they are checked by hand below.
NOT_KUBERNETES_GROUPS = ("keda.sh/", "kustomize.config.k8s.io/")


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def _kubernetes_objects() -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, doc)
        for name, doc in _documents()
        if not doc["apiVersion"].startswith(NOT_KUBERNETES_GROUPS)
    ]


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _documents() if doc["kind"] == kind}


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(workload["spec"]["template"]["spec"]["containers"])


def test_the_manifests_are_all_there() -> None:
    kinds = {(doc["kind"], doc.get("metadata", {}).get("name")) for _, doc in _documents()}
    assert {
        ("Deployment", "kscore-api"),
        ("Service", "kscore-api"),
        ("Deployment", "kscore-worker"),
        ("StatefulSet", "redis"),
        ("Service", "redis"),
        ("Deployment", "kscore-flower"),
        ("Secret", "kscore-secrets"),
        ("ScaledObject", "kscore-worker"),
        ("Kustomization", None),
    } <= kinds


@pytest.mark.parametrize(
    ("name", "doc"),
    _kubernetes_objects(),
    ids=[f"{n}:{d['kind']}" for n, d in _kubernetes_objects()],
)
def test_each_kubernetes_object_validates_against_its_schema(name: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files - {"secret.example.yaml"}


def test_api_probes_point_at_healthz_and_readyz() -> None:
    (api,) = _containers(_by_kind("Deployment")["kscore-api"])
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = api["livenessProbe"]["httpGet"]["port"]
    assert port in {p["name"] for p in api["ports"]} | {p["containerPort"] for p in api["ports"]}


def test_every_container_has_resource_requests_and_a_memory_limit() -> None:
    workloads = [*_by_kind("Deployment").values(), *_by_kind("StatefulSet").values()]
    assert len(workloads) == 4
    for workload in workloads:
        for container in _containers(workload):
            resources = container.get("resources", {})
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where


def test_kscore_pods_run_as_the_images_user_not_root() -> None:
    for workload in _by_kind("Deployment").values():
        security = workload["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0


def test_workers_get_longer_to_stop_than_a_chunk_takes() -> None:
    spec = _by_kind("Deployment")["kscore-worker"]["spec"]["template"]["spec"]
    # A chunk is KSCORE_CHUNK_ROWS rows scored in one predict call: seconds. Celery's warm
    # shutdown finishes it; Kubernetes' default (30 s) would cut a slow model's chunk short.
    assert spec["terminationGracePeriodSeconds"] >= 120
    api = _by_kind("Deployment")["kscore-api"]["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > api["terminationGracePeriodSeconds"]


def test_redis_persists_with_aof_everysec_and_a_password_from_the_secret() -> None:
    statefulset = _by_kind("StatefulSet")["redis"]
    (container,) = _containers(statefulset)
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "everysec"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    (password,) = [e for e in container["env"] if e["name"] == "REDIS_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["name"] == "kscore-secrets"
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] in {m["name"] for m in container["volumeMounts"]}
    assert "/data" in {m["mountPath"] for m in container["volumeMounts"]}


def test_secrets_come_from_the_secret_and_every_key_it_needs_is_in_the_template() -> None:
    secret = _by_kind("Secret")["kscore-secrets"]
    needed: set[str] = set()
    for _, doc in _documents():
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        for container in _containers(doc):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "kscore-secrets"
                    needed.add(ref["key"])
    for _, doc in _documents():
        if doc["kind"] == "TriggerAuthentication":
            needed |= {ref["key"] for ref in doc["spec"]["secretTargetRef"]}
    assert (
        needed
        == set(secret["stringData"])
        == {
            "KSCORE_TOKEN_SECRET",
            "REDIS_PASSWORD",
            "FLOWER_BASIC_AUTH",
        }
    )
    flower = {e["name"] for e in _containers(_by_kind("Deployment")["kscore-flower"])[0]["env"]}
    assert "FLOWER_BASIC_AUTH" in flower


# KEDA v2's ScaledObject and TriggerAuthentication (keda.sh/v1alpha1): the fields it accepts.
SCALED_OBJECT_SPEC = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced",
    "triggers",
}  # fmt: skip
SCALE_TARGET_REF = {"apiVersion", "kind", "name", "envSourceContainerName"}
TRIGGER = {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
REDIS_TRIGGER_METADATA = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv", "listName",
    "listLength", "activationListLength", "databaseIndex", "enableTLS", "unsafeSsl",
    "usernameFromEnv", "passwordFromEnv",
}  # fmt: skip
# KEDA's redis-streams scaler (online requests travel on a stream, shared/online_queue.py).
REDIS_STREAMS_TRIGGER_METADATA = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv", "stream",
    "consumerGroup", "pendingEntriesCount", "streamLength", "lagCount", "activationLagCount",
    "databaseIndex", "enableTLS", "unsafeSsl", "usernameFromEnv", "passwordFromEnv",
}  # fmt: skip


def test_the_scaled_object_has_kedas_fields_and_targets_the_worker() -> None:
    (doc,) = _by_kind("ScaledObject").values()
    assert doc["apiVersion"] == "keda.sh/v1alpha1"
    spec = doc["spec"]
    assert set(spec) <= SCALED_OBJECT_SPEC
    assert set(spec["scaleTargetRef"]) <= SCALE_TARGET_REF
    assert spec["scaleTargetRef"]["name"] in _by_kind("Deployment")
    assert spec["scaleTargetRef"]["name"] == "kscore-worker"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    auths = _by_kind("TriggerAuthentication")
    lists, streams = set(), set()
    for trigger in spec["triggers"]:
        assert set(trigger) <= TRIGGER
        assert trigger["type"] in {"redis", "redis-streams"}
        metadata = trigger["metadata"]
        assert all(isinstance(value, str) for value in metadata.values())  # KEDA wants strings
        assert metadata["address"].split(":")[0].split(".")[0] in _by_kind("Service")
        assert trigger["authenticationRef"]["name"] in auths
        if trigger["type"] == "redis":
            assert set(metadata) <= REDIS_TRIGGER_METADATA
            assert int(metadata["listLength"]) > 0
            lists.add(metadata["listName"])
        else:
            assert set(metadata) <= REDIS_STREAMS_TRIGGER_METADATA
            assert int(metadata["streamLength"]) > 0
            streams.add((metadata["stream"], metadata["consumerGroup"]))
    prefix = celery_key_prefix(Settings())
    assert lists == {f"{prefix}{QUEUE_BATCH}"}
    assert streams == {(Keys(Settings().key_prefix).online_stream(), ONLINE_GROUP)}
    for auth in auths.values():
        assert set(auth["spec"]) <= {"secretTargetRef", "env", "hashiCorpVault", "podIdentity"}
        for ref in auth["spec"]["secretTargetRef"]:
            assert set(ref) == {"parameter", "name", "key"} and ref["parameter"] == "password"


def test_celery_writes_each_queue_to_the_list_keda_watches(settings: Settings) -> None:
    """What the KEDA trigger relies on: a waiting task is one entry of the Redis list
    ``<key_prefix>:celery:<queue>`` (with a prefix of its own: no worker of the session takes
    the message before it is counted)."""
    settings = settings.replace(key_prefix=f"kedatest-{uuid.uuid4().hex[:8]}")
    app = make_celery(settings)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        for queue in ALL_QUEUES:
            key = f"{celery_key_prefix(settings)}{queue}"
            client.delete(key)
            app.send_task("kscore.no_such_task_for_keda", queue=queue)
            assert client.type(key) == b"list" and client.llen(key) == 1, key
            client.delete(key)
    finally:
        client.close()
        app.close()
