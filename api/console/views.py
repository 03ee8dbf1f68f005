"""The console's pages. Each view calls what the JSON API's view for the same action calls
(the stores and ``api.services.Services``, through ``api.context``), so rules, limits and
error messages are the same; a ``DomainError`` is shown with its message instead of the JSON
envelope. Forms post whole pages (they work without JavaScript); htmx only polls progress and
sends the "try it" form in place."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from api.auth import bound_to_loopback, instance_for_bearer, issue_wml_token, set_current_instance
from api.console import csrf
from api.console.forms import load_form, rows_from_form
from api.console.session import console_secret
from api.context import base_url, instance, services
from api.schemas import (
    DeploymentCreateSchema,
    ModelUploadSchema,
    result_shape_of,
)
from shared.deployment_store import DeploymentRecord
from shared.errors import (
    DomainError,
    ModelNotFound,
    Unauthorized,
)
from shared.job_record import JobRecord
from shared.status import DeploymentStatus, JobStatus
from shared.timeutil import iso

log = logging.getLogger(__name__)

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)

PAGE_SIZE = 50
# The views that act as an API call does, counted against KSCORE_RATE_LIMIT; the pages and
# the fragments htmx polls are not.
METERED = (
    "upload_model",
    "delete_model",
    "create_deployment",
    "delete_deployment",
    "try_deployment",
    "submit_job",
    "cancel_job",
    "job_result",
)
# What a page may load and run: its own files only (htmx is configured not to eval or inject
# styles), and no framing.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# The page says where keys come from, just above the message.
_SIGN_IN_REFUSED = "That API key is unknown or revoked: check it, or make a new one."


# --- hooks ------------------------------------------------------------------------------------


@bp.before_request
def _authenticate() -> BaseResponse | None:
    """CSRF on every form, then the signed-in instance (or the way to the sign-in page)."""
    if request.endpoint == "console.static":
        return None
    config = current_app.config
    if "WTF_CSRF_SECRET_KEY" not in config:
        config["WTF_CSRF_SECRET_KEY"] = console_secret(current_app, "csrf")
    csrf.protect()  # the sign-in form too: no page elsewhere may sign a browser in
    if request.endpoint == "console.sign_in":
        return None
    token = session.get("token")
    if token is None:
        settings = services().settings
        if settings.auth == "disabled" and bound_to_loopback():
            # The /api/v1 rule: on a loopback listener with KSCORE_AUTH=disabled, no key.
            set_current_instance(settings.default_instance)
            return None
        return _to_sign_in()
    try:
        set_current_instance(instance_for_bearer(token))
    except Unauthorized as exc:
        log.info("console session ended instance=%s reason=%s", session.get("instance"), exc.code)
        session.clear()
        flash("Your session has ended; sign in again.")
        return _to_sign_in()
    return None


@bp.after_request
def _headers(response: Response) -> BaseResponse:
    response.headers.update(_SECURITY_HEADERS)
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _to_sign_in() -> BaseResponse:
    if request.headers.get("HX-Request"):
        # htmx follows HX-Redirect with a full page load.
        return Response(status=401, headers={"HX-Redirect": url_for(".sign_in")})
    target = None
    if request.method == "GET":
        query = request.query_string.decode("latin-1")
        target = request.path + ("?" + query if query else "")
    return redirect(url_for(".sign_in", next=target))


def _safe_next(target: str | None) -> str:
    """``target`` when it is a console path of this site, else the models page."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/console/"):
            return target
    return url_for(".models")


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> tuple[str, int, dict[str, str]]:
    page, status = _error_page(exc.status, exc.message)
    # Not WWW-Authenticate: a browser would answer it with a password dialog.
    headers = {k: v for k, v in exc.headers.items() if k != "WWW-Authenticate"}
    return page, status, headers


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    status = exc.code or 500
    if status == 400 and exc.__class__.__name__ == "CSRFError":
        message = (
            "The form's security token is missing or no longer valid: reload the page and "
            "send the form again."
        )
    elif status == 413:
        message = (
            "That is more than this server accepts in one form (a pasted field over 1 MiB, or a "
            "file over KSCORE_MAX_REQUEST_BYTES / KSCORE_MAX_MODEL_BYTES): send the rows as a "
            "file, or split them."
        )
    else:
        message = exc.description or exc.name
    return _error_page(status, message)


@bp.errorhandler(redis.ConnectionError)
def _redis_down(exc: redis.ConnectionError) -> tuple[str, int]:
    log.error("redis unreachable error=%s", exc)
    return _error_page(503, "kscore's Redis is unreachable; retry shortly.")


def _error_page(status: int, message: str) -> tuple[str, int]:
    template = "console/_error.html" if request.headers.get("HX-Request") else "console/error.html"
    return render_template(template, status=status, message=message), status


@bp.app_template_filter("when")
def _when(ts: float | None) -> str:
    text = iso(ts)
    return text[:19].replace("T", " ") + " UTC" if text else "-"


@bp.app_template_filter("shape")
def _shape(shape: list[int | None] | None) -> str:
    if shape is None:
        return "known once deployed"
    return "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"


@bp.app_template_filter("cell")
def _cell(value: Any) -> str:
    """A result value as a table shows it: numbers to 6 significant digits."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value)


@bp.context_processor
def _context() -> dict[str, Any]:
    return {"signed_in_as": session.get("instance"), "JobStatus": JobStatus}


# --- signing in and out -----------------------------------------------------------------------


@bp.get("/")
def index() -> BaseResponse:
    """The console starts at the models."""
    return redirect(url_for(".models"))


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> tuple[str, int] | BaseResponse:
    """The sign-in form; a valid API key puts a token for its instance in the session."""
    error = None
    if request.method == "POST":
        key = request.form.get("api_key", "").strip()
        try:
            instance_id = instance_for_bearer(key) if key else None
        except Unauthorized:
            instance_id = None
        if instance_id is None:
            log.warning("console sign-in refused remote=%s", request.remote_addr)
            error = _SIGN_IN_REFUSED if key else "Enter an API key."
        else:
            session.clear()  # a new CSRF token too
            session["token"] = issue_wml_token(instance_id)
            session["instance"] = instance_id
            log.info("console sign-in instance=%s remote=%s", instance_id, request.remote_addr)
            return redirect(_safe_next(request.form.get("next")))
    next_page = request.values.get("next", "")
    status = 401 if error else 200
    return render_template("console/sign_in.html", error=error, next_page=next_page), status


@bp.post("/sign-out")
def sign_out() -> BaseResponse:
    """Forget the session."""
    log.info("console sign-out instance=%s remote=%s", session.get("instance"), request.remote_addr)
    session.clear()
    flash("Signed out.")
    return redirect(url_for(".sign_in"))


# --- models -----------------------------------------------------------------------------------


def _models_page(status: int = 200, error: DomainError | None = None) -> tuple[str, int]:
    svc = services()
    offset = max(request.args.get("offset", 0, type=int) or 0, 0)
    records, total = svc.models.page(instance(), PAGE_SIZE, offset)
    counts = svc.deployments.count_by_model(instance(), [r.id for r in records])
    page = render_template(
        "console/models.html",
        models=list(zip(records, counts, strict=True)),
        total=total,
        offset=offset,
        page_size=PAGE_SIZE,
        error=error,
        form=request.form,
    )
    return page, status


@bp.get("/models")
def models() -> tuple[str, int]:
    """The instance's models and the upload form."""
    return _models_page()


@bp.post("/models")
def upload_model() -> tuple[str, int] | BaseResponse:
    """Store an uploaded model file (as ``POST /api/v1/models``)."""
    svc = services()
    try:
        form = load_form(
            ModelUploadSchema(),
            {
                "file": request.files.get("file"),
                "name": request.form.get("name", "").strip(),
                "description": request.form.get("description", "").strip() or None,
            },
        )
        upload = form["file"]
        workdir = svc.settings.data_dir / "tmp"
        workdir.mkdir(parents=True, exist_ok=True)
        record = svc.models.store_upload(
            instance(),
            upload.stream,
            upload.filename or "",
            form["name"],
            form["description"],
            max_bytes=svc.settings.max_model_bytes,
            workdir=workdir,
        )
    except DomainError as exc:
        return _models_page(exc.status, exc)
    flash(f"Stored model {record.name}.")
    return redirect(url_for(".model", model_id=record.id))


def _model_page(
    model_id: str, status: int = 200, error: DomainError | None = None
) -> tuple[str, int]:
    svc = services()
    record = svc.models.get(instance(), model_id)
    deployments, _ = svc.deployments.page(instance(), 100, 0, model_id=model_id)
    page = render_template("console/model.html", model=record, deployments=deployments, error=error)
    return page, status


@bp.get("/models/<model_id>")
def model(model_id: str) -> tuple[str, int]:
    """A model: its signature, its deployments, deploy and delete."""
    return _model_page(model_id)


@bp.post("/models/<model_id>/delete")
def delete_model(model_id: str) -> tuple[str, int] | BaseResponse:
    """Delete a model (refused while a deployment uses it)."""
    try:
        services().models.delete(instance(), model_id)
    except ModelNotFound:
        raise
    except DomainError as exc:
        return _model_page(model_id, exc.status, exc)
    flash("Model deleted.")
    return redirect(url_for(".models"))


# --- deployments ------------------------------------------------------------------------------


def _model_names(records: list[DeploymentRecord]) -> dict[str, str]:
    names = {}
    for model_id in {r.model_id for r in records}:
        try:
            names[model_id] = services().models.get(instance(), model_id).name
        except ModelNotFound:
            names[model_id] = model_id
    return names


def _deployments_page(status: int = 200, error: DomainError | None = None) -> tuple[str, int]:
    svc = services()
    offset = max(request.args.get("offset", 0, type=int) or 0, 0)
    records, total = svc.deployments.page(instance(), PAGE_SIZE, offset)
    all_models, _ = svc.models.page(instance(), 1000, 0)
    page = render_template(
        "console/deployments.html",
        deployments=records,
        model_names=_model_names(records),
        models=all_models,
        total=total,
        offset=offset,
        page_size=PAGE_SIZE,
        error=error,
        form=request.form,
    )
    return page, status


@bp.get("/deployments")
def deployments() -> tuple[str, int]:
    """The instance's deployments with their status and model, and the deploy form."""
    return _deployments_page()


@bp.post("/deployments")
def create_deployment() -> tuple[str, int] | BaseResponse:
    """Deploy a model (as ``POST /api/v1/deployments``)."""
    try:
        data = load_form(
            DeploymentCreateSchema(),
            {
                "model_id": request.form.get("model_id", ""),
                "name": request.form.get("name", "").strip(),
                "description": request.form.get("description", "").strip() or None,
            },
        )
        record = services().create_deployment(
            instance(), data["model_id"], data["name"], data["description"]
        )
    except DomainError as exc:
        return _deployments_page(exc.status, exc)
    flash(f"Deploying {record.name}.")
    return redirect(url_for(".deployment", deployment_id=record.id))


def _deployment_page(deployment_id: str, status: int = 200, **context: Any) -> tuple[str, int]:
    svc = services()
    record = svc.deployments.get(instance(), deployment_id)
    jobs, _ = svc.jobs.page(instance(), 10, 0, deployment_id=deployment_id, status=None)
    page = render_template(
        "console/deployment.html",
        deployment=record,
        model_name=_model_names([record])[record.model_id],
        jobs=jobs,
        settling=_settling(record),
        form=request.form,
        **context,
    )
    return page, status


def _settling(record: DeploymentRecord) -> bool:
    return record.status == DeploymentStatus.DEPLOY_IN_PROGRESS or record.pending_model is not None


@bp.get("/deployments/<deployment_id>")
def deployment(deployment_id: str) -> tuple[str, int]:
    """A deployment: status, model, the "try it" form, jobs and the job form."""
    return _deployment_page(deployment_id)


@bp.get("/deployments/<deployment_id>/status")
def deployment_status(deployment_id: str) -> str:
    """The status fragment htmx polls while the deployment settles."""
    record = services().deployments.get(instance(), deployment_id)
    return render_template(
        "console/_deployment_status.html", deployment=record, settling=_settling(record)
    )


@bp.post("/deployments/<deployment_id>/delete")
def delete_deployment(deployment_id: str) -> BaseResponse:
    """Delete a deployment (its jobs still finish)."""
    record = services().deployments.delete(instance(), deployment_id)
    flash(f"Deployment {record.name} deleted.")
    return redirect(url_for(".deployments"))


@bp.post("/deployments/<deployment_id>/try")
def try_deployment(deployment_id: str) -> tuple[str, int]:
    """Score pasted rows online (as ``POST .../online``) and show the answer."""
    started = time.perf_counter()
    svc = services()
    try:
        body = rows_from_form()
        job = svc.submit_online(instance(), deployment_id, body, result_shape_of(body))
        outcome = svc.await_online(instance(), job, svc.settings.online_timeout_s, started)
    except DomainError as exc:
        return _try_answer(deployment_id, exc.status, error=exc)
    if isinstance(outcome, JobRecord):
        return _try_answer(deployment_id, 202, pending=outcome)
    answer = json.loads(outcome)
    table = answer["predictions"][0] if "predictions" in answer else answer
    return _try_answer(
        deployment_id, 200, table=table, raw=_raw_json(answer), sha256=job.model_sha256
    )


def _raw_json(answer: dict[str, Any]) -> str:
    """The answer as JSON with one row per line (readable, and still the exact numbers)."""
    if set(answer) != {"fields", "values"} or not answer["values"]:
        return json.dumps(answer, indent=1)
    rows = ",\n  ".join(json.dumps(row) for row in answer["values"])
    fields = json.dumps(answer["fields"])
    return f'{{"fields": {fields},\n "values": [\n  {rows}\n ]}}'


def _try_answer(deployment_id: str, status: int, **result: Any) -> tuple[str, int]:
    if request.headers.get("HX-Request"):
        return render_template("console/_try_result.html", **result), status
    return _deployment_page(deployment_id, status, **result)


@bp.post("/deployments/<deployment_id>/jobs")
def submit_job(deployment_id: str) -> tuple[str, int] | BaseResponse:
    """Submit a batch job from pasted rows or a file (as ``POST .../jobs``)."""
    svc = services()
    try:
        body = rows_from_form()
        job = svc.submit_job(
            instance(),
            deployment_id,
            body,
            kind="batch",
            result_shape=result_shape_of(body),
            base_url=base_url(),
        )
    except DomainError as exc:
        return _deployment_page(deployment_id, exc.status, job_error=exc)
    flash(f"Job {job.id} queued: {job.rows_total} rows in {job.chunks} chunks.")
    return redirect(url_for(".job", job_id=job.id))
