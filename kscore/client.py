"""A small typed HTTP client for kscore, shaped like IBM's watson-machine-learning-client.

    with Client() as client:
        model = client.repository.store_model("mnist.h5", name="mnist")
        deployment = client.deployments.create(model["id"], name="mnist online")
        scoring_url = client.deployments.get_scoring_url(deployment)
        print(client.deployments.score(scoring_url, {"values": rows}))

It speaks HTTP only (httpx); of the server's code it imports only the status vocabulary
(``shared.status``, standard library only).

Every method that talks to the server raises :class:`~kscore.errors.TransportError` when no
answer came, and an :class:`~kscore.errors.ApiError` subclass for a 4xx/5xx answer
(``NotFoundError`` for an unknown id, ``ConflictError``, ``UnprocessableError``...).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import httpx

from kscore.credentials import api_key_for
from kscore.errors import (
    DeploymentFailedError,
    DeploymentMoveFailedError,
    KscoreError,
    TransportError,
    WaitTimeoutError,
    error_from_response,
)
from kscore.wml_output import simple_table
from shared.status import DeploymentStatus

__all__ = ["DEFAULT_URL", "Client", "Deployments", "Repository"]

DEFAULT_URL = "http://127.0.0.1:8080"

Record = dict[str, Any]
Records = list[Record]
ProgressCallback = Callable[[int, int], None]
# Called with a deployment's details on each poll while it is DEPLOY_IN_PROGRESS.
WaitingCallback = Callable[[Record], None]

_PAGE_SIZE = 1000  # the server's maximum page size
_START_HINT = "Start the server with `make run` or `kscore up`, or point KSCORE_URL / --url at it."

try:
    __version__ = metadata.version("kscore")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"


def backoff(initial: float = 0.2, cap: float = 2.0, factor: float = 1.5) -> Iterator[float]:
    """Endless poll delays: ``initial`` growing by ``factor`` up to ``cap`` seconds."""
    delay = initial
    while True:
        yield delay
        delay = min(cap, delay * factor)


class Client:
    """A connection to one kscore server; use it as a context manager or call :meth:`close`."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``api_key`` defaults to ``KSCORE_API_KEY``, then, for the local server, the key
        ``kscore up`` wrote to ``<data dir>/credentials.json``."""
        self.url = (url or os.environ.get("KSCORE_URL") or DEFAULT_URL).rstrip("/")
        self.timeout = timeout
        headers = {"User-Agent": f"kscore-client/{__version__}", "Accept": "application/json"}
        key = api_key_for(self.url, api_key)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, transport=transport, headers=headers
        )
        self.repository = Repository(self)
        self.deployments = Deployments(self)
        # Both build on this module's helpers, so they are imported once it is loaded.
        from kscore.datasets import Datasets
        from kscore.jobs import Jobs

        self.jobs = Jobs(self)

        self.datasets = Datasets(self)

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def health(self) -> Record:
        """``GET /healthz``: the API's and Redis's liveness answer (ServerError if Redis is down)."""
        return self.get_json("/healthz")

    def ready(self) -> Record:
        """``GET /readyz``: the workers consuming, by name with their queues.

        Raises ServerError (503) while no worker has sent a heartbeat lately.
        """
        return self.get_json("/readyz")

    # -- plumbing shared by the namespaces -------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request (``url`` relative to the base, or absolute); the response.

        Raises TransportError without an answer, an ApiError subclass for 4xx/5xx.
        """
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, url) from exc
        self._raise_for_status(response)
        return response

    def download(self, url: str, dest: str | os.PathLike[str] | None, default_name: str) -> Path:
        """Stream ``url`` into ``dest`` (a file, or a directory: the server's filename, else
        ``default_name``), never holding the whole body in memory; the path written."""
        try:
            with self._http.stream("GET", url) as response:
                self._raise_for_status(response)
                filename = content_disposition_filename(response.headers) or default_name
                target = Path(dest) if dest is not None else Path.cwd()
                if str(dest).endswith(("/", os.sep)):  # "-o models/" means a directory
                    target.mkdir(parents=True, exist_ok=True)
                if target.is_dir():
                    target = target / filename
                partial = target.with_name(target.name + ".part")
                try:
                    with partial.open("wb") as out:
                        for chunk in response.iter_bytes():
                            out.write(chunk)
                    partial.replace(target)
                finally:
                    partial.unlink(missing_ok=True)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, url) from exc
        return target

    def stream(self, url: str, params: dict[str, Any] | None = None) -> Iterator[bytes]:
        """GET ``url`` and yield its body as it arrives (raised for 4xx/5xx first)."""
        try:
            with self._http.stream("GET", url, params=_clean(params)) as response:
                self._raise_for_status(response)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise self._transport_error(exc, url) from exc

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> Record:
        """GET ``url`` and decode its JSON object (KscoreError if the body is not one)."""
        return _json(self.request("GET", url, params=_clean(params)))

    def send_json(self, method: str, url: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        """Send ``body`` as JSON; return the response (raised for 4xx/5xx)."""
        return self.request(method, url, json=body, **kwargs)

    def paginate(
        self, url: str, params: dict[str, Any] | None = None, limit: int | None = None
    ) -> Records:
        """Every resource of a list endpoint, following ``next`` (at most ``limit`` of them)."""
        query = _clean(params) or {}
        query["limit"] = min(limit, _PAGE_SIZE) if limit is not None else _PAGE_SIZE
        resources: Records = []
        page = self.get_json(url, params=query)
        while True:
            resources.extend(page.get("resources") or [])
            if limit is not None and len(resources) >= limit:
                return resources[:limit]
            next_link = page.get("next")
            href = next_link.get("href") if isinstance(next_link, dict) else None
            if not href:
                return resources
            page = self.get_json(href)

    def _transport_error(self, exc: httpx.TransportError, url: str) -> TransportError:
        try:
            tried = str(exc.request.url)
        except RuntimeError:  # no request attached
            tried = url if url.startswith(("http://", "https://")) else self.url + url
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            message = f"Could not connect to kscore at {tried} ({_reason(exc)}). {_START_HINT}"
        elif isinstance(exc, httpx.TimeoutException):
            message = f"No answer from {tried} within {self.timeout:g} s ({type(exc).__name__})."
        else:
            message = f"Request to {tried} failed: {_reason(exc)}"
        return TransportError(message, url=tried)

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        if not response.is_closed:
            response.read()
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = response.text
        raise error_from_response(response.status_code, body, reason=response.reason_phrase)


class Repository:
    """Models: ``client.repository``, as in watson-machine-learning-client."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def store_model(
        self, path: str | os.PathLike[str], name: str, description: str | None = None
    ) -> Record:
        """Upload a Keras model file (.h5/.hdf5/.keras or an archive holding one); its details.

        Raises OSError if the file cannot be read, UnprocessableError (422) for a file the server
        refuses (``unsafe_model``...), PayloadTooLargeError (413) above its size limit.
        """
        file_path = Path(path)
        data = {"name": name}
        if description is not None:
            data["description"] = description
        with file_path.open("rb") as fh:
            files = {"file": (file_path.name, fh, "application/octet-stream")}
            response = self._client.request("POST", "/api/v1/models", data=data, files=files)
        return _json(response)

    def list_models(self, limit: int | None = None) -> Records:
        """The stored models, newest first (all of them, or the first ``limit``)."""
        return self._client.paginate("/api/v1/models", limit=limit)

    def get_details(self, model_id: str) -> Record:
        """One model's details."""
        return self._client.get_json(f"/api/v1/models/{_segment(model_id)}")

    @staticmethod
    def get_model_uid(details: Record) -> str:
        """The id in a model's details."""
        return _field(details, "id", "model")

    def list(self) -> None:
        """Print the models as watson-machine-learning-client does: GUID, NAME, FRAMEWORK."""
        rows = [
            [m.get("id", ""), m.get("name", ""), m.get("model_type", "")]
            for m in self.list_models()
        ]
        print(simple_table(["GUID", "NAME", "FRAMEWORK"], rows))

    def download(self, model_id: str, dest: str | os.PathLike[str] | None = None) -> Path:
        """Save the model's original file to ``dest`` (a file, or a directory); the path written."""
        url = f"/api/v1/models/{_segment(model_id)}/content"
        return self._client.download(url, dest, model_id)

    def delete(self, model_id: str) -> None:
        """Delete a model (409 ``model_in_use`` while a deployment uses it)."""
        self._client.request("DELETE", f"/api/v1/models/{_segment(model_id)}")


class Deployments:
    """Online deployments: ``client.deployments``, as in watson-machine-learning-client."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        model_id: str,
        name: str,
        description: str | None = None,
        *,
        batching: Record | None = None,
        wait: bool = True,
        timeout: float = 600,
        on_waiting: WaitingCallback | None = None,
    ) -> Record:
        """Deploy a model; its details, by default once ``DEPLOY_SUCCESS``.

        ``batching`` sets how its online requests are merged into model calls:
        ``{"max_batch_size": rows, "max_wait_ms": milliseconds}`` (either may be left out: the
        server's KSCORE_MAX_BATCH_SIZE / KSCORE_MAX_BATCH_WAIT_MS). With ``wait`` (``timeout``
        in seconds) raises DeploymentFailedError if it ends ``DEPLOY_FAILED`` and
        WaitTimeoutError if it is still in progress at the timeout; ``on_waiting`` is called as
        for :meth:`wait`.
        """
        body: Record = {"model_id": model_id, "name": name}
        if description is not None:
            body["description"] = description
        if batching is not None:
            body["batching"] = batching
        deployment = _json(self._client.send_json("POST", "/api/v1/deployments", body))
        if not wait:
            return deployment
        return self.wait(
            _field(deployment, "id", "deployment"), timeout=timeout, on_waiting=on_waiting
        )

    def wait(
        self, deployment_id: str, timeout: float = 600, on_waiting: WaitingCallback | None = None
    ) -> Record:
        """Poll until the deployment leaves ``DEPLOY_IN_PROGRESS``; its ``DEPLOY_SUCCESS`` details.

        ``on_waiting(details)`` is called after each poll that found it still in progress
        (``details["warnings"]`` says e.g. that no worker consumes the deploy queue).
        Raises DeploymentFailedError if it failed, WaitTimeoutError after ``timeout`` seconds.
        """
        details = self._poll(
            deployment_id,
            lambda d: d.get("status") != DeploymentStatus.DEPLOY_IN_PROGRESS,
            timeout,
            f"Deployment '{deployment_id}' was still DEPLOY_IN_PROGRESS after {timeout:g} s.",
            on_waiting,
        )
        if details.get("status") != DeploymentStatus.DEPLOY_SUCCESS:
            raise DeploymentFailedError(details)
        return details

    def _poll(
        self,
        deployment_id: str,
        settled: Callable[[Record], bool],
        timeout: float,
        message: str,
        on_waiting: WaitingCallback | None = None,
    ) -> Record:
        """The deployment's details once ``settled(details)``, polling with backoff;
        ``on_waiting(details)`` after each poll that found it unsettled. Raises
        WaitTimeoutError with ``message`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delays = backoff()
        while True:
            details = self.get_details(deployment_id)
            if settled(details):
                return details
            if on_waiting is not None:
                on_waiting(details)
            _sleep_or_give_up(next(delays), deadline, message)

    def update(
        self,
        deployment_id: str,
        *,
        model_id: str | None = None,
        name: str | None = None,
        description: str | None = None,
        batching: Record | None = None,
        wait: bool = True,
        timeout: float = 600,
    ) -> Record:
        """Change a deployment (PATCH); its details.

        ``model_id`` moves it to another model with the same inputs behind the same scoring
        URL: the current model answers until a worker has loaded the new one. ``batching``
        changes the values it names (as for :meth:`create`); ``name`` and ``description``
        replace theirs; what is None stays. With ``wait`` and a move, polls until the move
        settles (``timeout`` seconds: WaitTimeoutError) and raises DeploymentMoveFailedError
        when the new model did not load (the current one still serves). Raises
        UnprocessableError (``model_inputs_mismatch``) for a model of other inputs and
        ConflictError while another move is pending.
        """
        body: Record = {
            key: value
            for key, value in (
                ("model_id", model_id),
                ("name", name),
                ("description", description),
                ("batching", batching),
            )
            if value is not None
        }
        url = f"/api/v1/deployments/{_segment(deployment_id)}"
        details = _json(self._client.send_json("PATCH", url, body))
        if not wait or not details.get("pending_model"):
            return details
        details = self._poll(
            deployment_id,
            lambda d: not d.get("pending_model"),
            timeout,
            f"Deployment '{deployment_id}' was still loading model '{model_id}' after "
            f"{timeout:g} s.",
        )
        if details.get("pending_error"):
            raise DeploymentMoveFailedError(details)
        return details

    def get_details(self, deployment_id: str) -> Record:
        """One deployment's details."""
        return self._client.get_json(f"/api/v1/deployments/{_segment(deployment_id)}")

    def list_deployments(self, model_id: str | None = None) -> Records:
        """All deployments (of one model, if given)."""
        return self._client.paginate("/api/v1/deployments", params={"model_id": model_id})

    def list(self) -> None:
        """Print the deployments as watson-machine-learning-client does."""
        headers = ["GUID", "NAME", "TYPE", "STATE", "CREATED", "FRAMEWORK", "MODEL GUID"]
        rows = [
            [
                d.get("id", ""),
                d.get("name", ""),
                d.get("type", ""),
                d.get("status", ""),
                d.get("created_at", ""),
                d.get("model_type", ""),
                d.get("model_id", ""),
            ]
            for d in self.list_deployments()
        ]
        print(simple_table(headers, rows))

    def get_status(self, deployment_id: str) -> str:
        """The deployment's status: a DeploymentStatus value as a string."""
        return str(self.get_details(deployment_id).get("status"))

    @staticmethod
    def get_uid(details: Record) -> str:
        """The id in a deployment's details."""
        return _field(details, "id", "deployment")

    @staticmethod
    def get_scoring_url(details: Record) -> str:
        """The absolute online scoring URL in a deployment's details (no HTTP)."""
        return _field(details, "scoring_url", "deployment")

    def score(
        self,
        scoring_url: str,
        payload: Record,
        *,
        timeout: float | None = None,
        wait_timeout: float | None = None,
    ) -> Record:
        """POST ``payload`` to the scoring URL; the result ``{"fields", "values"}``.

        ``timeout`` asks the server to answer inline within that many seconds (``?timeout=``);
        if it answers 202 with a job instead, this waits for the job (at most ``wait_timeout``
        seconds: WaitTimeoutError) and raises JobFailedError if the job fails.
        """
        params = {"timeout": timeout} if timeout is not None else None
        response = self._client.send_json("POST", scoring_url, payload, params=params)
        if response.status_code != 202:
            return _json(response)
        job = _json(response)
        job_id = job.get("id") or _last_segment(response.headers.get("Location", ""))
        if not job_id:
            raise KscoreError("The server answered 202 without a job id or Location header.")
        self._client.jobs.wait(job_id, timeout=wait_timeout)
        return self._client.jobs.result(job_id)

    def delete(self, deployment_id: str) -> None:
        """Delete a deployment."""
        self._client.request("DELETE", f"/api/v1/deployments/{_segment(deployment_id)}")


def content_disposition_filename(headers: httpx.Headers) -> str | None:
    """The filename in a Content-Disposition header, reduced to a safe base name."""
    value = headers.get("Content-Disposition", "")
    match = re.search(r"filename\*\s*=\s*[^']*'[^']*'([^;]+)", value, re.IGNORECASE)
    if match:
        name = unquote(match.group(1).strip())
    else:
        match = re.search(r'filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;]+)', value, re.IGNORECASE)
        if not match:
            return None
        name = (match.group(1) if match.group(1) is not None else match.group(2)).strip()
    # Never let a header choose a directory to write into.
    name = Path(name.replace("\\", "/")).name
    return name if name not in {"", ".", ".."} else None


def _json(response: httpx.Response) -> Record:
    try:
        body = response.json()
    except ValueError:
        raise KscoreError(
            f"Expected JSON from {response.request.method} {response.request.url}, "
            f"got {response.headers.get('Content-Type', 'no content type')}."
        ) from None
    if not isinstance(body, dict):
        raise KscoreError(f"Expected a JSON object from {response.request.url}.")
    return body


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None}


def _field(details: Record, key: str, kind: str) -> str:
    value = details.get(key) if isinstance(details, dict) else None
    if not value:
        raise KscoreError(f"These are not a {kind}'s details: no {key!r} field.")
    return str(value)


def _segment(resource_id: str) -> str:
    if not resource_id or "/" in resource_id or resource_id in {".", ".."}:
        raise KscoreError(f"{resource_id!r} is not a valid id.")
    return resource_id


def _last_segment(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1] if location else ""


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _sleep_or_give_up(delay: float, deadline: float | None, message: str) -> None:
    if deadline is None:
        time.sleep(delay)
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise WaitTimeoutError(message)
    time.sleep(min(delay, remaining))
