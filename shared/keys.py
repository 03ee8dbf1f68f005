"""Redis key names. Every key starts with the installation's prefix; tenant data also
carries the instance id, so several installations and instances can share one Redis."""

from __future__ import annotations

import re
from dataclasses import dataclass

# An instance id is a URL segment and a key segment: lowercase letters, digits and '-' (a
# UUID, or a name such as "default").
INSTANCE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")

_RESOURCE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_resource_id(value: str) -> bool:
    """Whether ``value`` has the shape of the ids kscore gives models, deployments and jobs (a
    lowercase UUID). Anything else names no resource, and must never reach a key name: an id
    with ``:`` in it would address another key (``<job id>:done`` is the job's done set)."""
    return _RESOURCE_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Keys:
    """Key builder for one installation prefix."""

    prefix: str

    # content-addressed blobs (shared by every instance: same bytes, same blob)
    def blob_meta(self, sha256: str) -> str:
        return f"{self.prefix}:blob:{sha256}"

    def blob_chunk(self, sha256: str, index: int) -> str:
        return f"{self.prefix}:blob:{sha256}:chunk:{index}"

    def blob_refs(self, sha256: str) -> str:
        return f"{self.prefix}:blob:{sha256}:refs"

    # instances (tenants) and their credentials
    def instances_index(self) -> str:
        return f"{self.prefix}:instances"

    def instance_names(self) -> str:
        """Hash of instance name -> id: names are unique, like the ids."""
        return f"{self.prefix}:instances:names"

    def instance(self, instance: str) -> str:
        return f"{self.prefix}:i:{instance}:instance"

    def instance_api_keys(self, instance: str) -> str:
        return f"{self.prefix}:i:{instance}:api_keys"

    def instance_pattern(self, instance: str) -> str:
        """A SCAN pattern matching every key of one instance."""
        return f"{self.prefix}:i:{instance}:*"

    def api_key(self, key_id: str) -> str:
        # Outside the instance's namespace: a bearer key must lead to its instance in one read.
        return f"{self.prefix}:api_key:{key_id}"

    def wml_user(self, username: str) -> str:
        return f"{self.prefix}:wml_user:{username}"

    def token_secret(self) -> str:
        return f"{self.prefix}:token_secret"

    # models
    def model(self, instance: str, model_id: str) -> str:
        return f"{self.prefix}:i:{instance}:model:{model_id}"

    def models_index(self, instance: str) -> str:
        return f"{self.prefix}:i:{instance}:models"

    def model_deployments(self, instance: str, model_id: str) -> str:
        return f"{self.prefix}:i:{instance}:model:{model_id}:deployments"

    def wml_asset(self, instance: str, model_id: str) -> str:
        """What a WML client sent when it created the model's asset (``shared.wml_store``)."""
        return f"{self.prefix}:i:{instance}:model:{model_id}:wml"

    # deployments
    def deployment(self, instance: str, deployment_id: str) -> str:
        return f"{self.prefix}:i:{instance}:deployment:{deployment_id}"

    def deployments_index(self, instance: str) -> str:
        return f"{self.prefix}:i:{instance}:deployments"

    def instance_of_deployments_index(self, key: str) -> str | None:
        """The instance whose deployments index ``key`` is, or None for any other key."""
        head, tail = f"{self.prefix}:i:", ":deployments"
        instance = (
            key[len(head) : -len(tail)] if key.startswith(head) and key.endswith(tail) else ""
        )
        return instance if instance and ":" not in instance else None

    # jobs
    def job(self, instance: str, job_id: str) -> str:
        return f"{self.prefix}:i:{instance}:job:{job_id}"

    def idempotency(self, instance: str, key_sha256: str) -> str:
        """What an ``Idempotency-Key`` (by its SHA-256, so any text makes a safe key name) holds."""
        return f"{self.prefix}:i:{instance}:idempotency:{key_sha256}"

    def webhook_secret(self, instance: str) -> str:
        return f"{self.prefix}:i:{instance}:webhook_secret"

    def job_webhook(self, instance: str, job_id: str) -> str:
        """The delivery log of the job's callback (list of JSON attempts)."""
        return f"{self.prefix}:i:{instance}:job:{job_id}:webhook"

    def jobs_index(self, instance: str) -> str:
        return f"{self.prefix}:i:{instance}:jobs"

    def jobs_expiry(self, instance: str) -> str:
        return f"{self.prefix}:i:{instance}:jobs:expiry"

    def deployment_jobs(self, instance: str, deployment_id: str) -> str:
        return f"{self.prefix}:i:{instance}:deployment:{deployment_id}:jobs"

    def job_input(self, instance: str, job_id: str, chunk: int) -> str:
        return f"{self.prefix}:i:{instance}:job:{job_id}:in:{chunk}"

    def job_output(self, instance: str, job_id: str, chunk: int) -> str:
        return f"{self.prefix}:i:{instance}:job:{job_id}:out:{chunk}"

    def job_done(self, instance: str, job_id: str) -> str:
        return f"{self.prefix}:i:{instance}:job:{job_id}:done"

    def job_attempts(self, instance: str, job_id: str) -> str:
        return f"{self.prefix}:i:{instance}:job:{job_id}:attempts"

    def job_notify(self, instance: str, job_id: str) -> str:
        return f"{self.prefix}:i:{instance}:job:{job_id}:notify"

    # datasets
    def dataset(self, instance: str, dataset_id: str) -> str:
        """The dataset's record (JSON)."""
        return f"{self.prefix}:i:{instance}:dataset:{dataset_id}"

    def dataset_chunk(self, instance: str, dataset_id: str, chunk: int) -> str:
        """Rows ``chunk * chunk_rows`` on, as ``shared.scoring.encode_chunk`` wrote them."""
        return f"{self.prefix}:i:{instance}:dataset:{dataset_id}:chunk:{chunk}"

    def dataset_jobs(self, instance: str, dataset_id: str) -> str:
        """Zset of the jobs reading the dataset (job id -> when it took its reference)."""
        return f"{self.prefix}:i:{instance}:dataset:{dataset_id}:jobs"

    def datasets_index(self, instance: str) -> str:
        return f"{self.prefix}:i:{instance}:datasets"

    def datasets_expiry(self, instance: str) -> str:
        return f"{self.prefix}:i:{instance}:datasets:expiry"

    def backlog(self, instance: str) -> str:
        """Hash ``job_id -> rows`` of the instance's jobs accepted and not finished: the
        scripts that create and end jobs add and remove a field exactly once."""
        return f"{self.prefix}:i:{instance}:backlog"

    def backlog_rows(self, instance: str) -> str:
        """The sum of the rows in :meth:`backlog` (an integer), kept by the same scripts."""
        return f"{self.prefix}:i:{instance}:backlog:rows"

    def rate_limits(self) -> str:
        """Prefix of the request-rate counters (Flask-Limiter's Redis storage)."""
        return f"{self.prefix}:ratelimit"

    def active_jobs(self) -> str:
        """Set of ``instance/job_id`` of jobs that may still be queued or running (any
        instance): what the reconciler walks. Finished jobs leave it on its next pass."""
        return f"{self.prefix}:jobs:active"

    def online_stream(self) -> str:
        """The stream of online requests waiting for a worker (every instance), read by the
        workers' consumer group :data:`ONLINE_GROUP`."""
        return f"{self.prefix}:online:requests"

    def reconciler_lease(self) -> str:
        """The name of the worker that runs the reconciler now, with a TTL."""
        return f"{self.prefix}:reconciler"

    def reconciler_server(self) -> str:
        """Hash of the Redis server the reconciler last saw (``run_id``, ``epoch``,
        ``seen_at``): how it tells a restart or a failover; see ``Reconciler.server_epoch``."""
        return f"{self.prefix}:reconciler:server"

    # metrics and liveness
    def metrics(self) -> str:
        return f"{self.prefix}:metrics"

    def latency_histogram(self) -> str:
        return f"{self.prefix}:metrics:latency"

    def worker_heartbeat(self, worker: str) -> str:
        return f"{self.prefix}:worker:{worker}"

    def workers_index(self) -> str:
        return f"{self.prefix}:workers"


# The consumer group of the workers on :meth:`Keys.online_stream`.
ONLINE_GROUP = "workers"
