"""Scoring payloads as the client sends them: rows, ``{"values"|"inputs"}`` bodies, WML's complete
payload, numpy arrays. The one parser of these shapes: the client and the CLI both call it.

Every function raises :class:`~kscore.errors.KscoreError` with a sentence naming ``where`` (a
file name, or "the payload") and the first key that is missing or wrong.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kscore.errors import KscoreError

__all__ = [
    "WmlPayload",
    "check_rows_payload",
    "is_wml_payload",
    "job_payload",
    "npy_bytes",
    "npy_bytes_kind",
    "parse_wml_payload",
    "read_json_file",
]

Record = dict[str, Any]

_WML_SHAPE = '{"modelId": ..., "deploymentId": ..., "payload": {"values": [...]}}'


@dataclass(frozen=True)
class WmlPayload:
    """WML's complete scoring payload: ``{"modelId"?, "deploymentId", "payload": {...}}``."""

    deployment_id: str
    model_id: str | None
    payload: Record


def read_json_file(path: Path) -> Any:
    """The JSON document in ``path``.

    Raises KscoreError if the file cannot be read or is not JSON (with the line and column).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KscoreError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise KscoreError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from exc


def check_rows_payload(payload: Any, where: str) -> Record:
    """``payload`` itself once it is a ``{"values": [...]}`` or ``{"inputs": {...}}`` object.

    Raises KscoreError naming ``where`` if it is not an object, lacks both keys, or the rows
    under them have the wrong type.
    """
    if not isinstance(payload, dict):
        raise KscoreError(f'{where} must be a JSON object such as {{"values": [...]}}.')
    if "values" in payload:
        if not isinstance(payload["values"], list):
            raise KscoreError(f'{where}: "values" must be a list of rows.')
    elif "inputs" in payload:
        if not isinstance(payload["inputs"], dict):
            raise KscoreError(f'{where}: "inputs" must be an object mapping input names to rows.')
    else:
        raise KscoreError(f'{where} is missing the key "values" (the rows to score).')
    return payload


def parse_wml_payload(doc: Any, where: str) -> WmlPayload:
    """WML's complete scoring payload in ``doc``, validated.

    Raises KscoreError naming ``where`` and the first key that is missing or has a wrong type.
    """
    if not isinstance(doc, dict):
        raise KscoreError(f"{where} must hold a JSON object like {_WML_SHAPE}.")
    deployment_id = doc.get("deploymentId")
    if deployment_id is None:
        raise KscoreError(f'{where} is missing the key "deploymentId" (the deployment to score).')
    if not isinstance(deployment_id, str) or not deployment_id:
        raise KscoreError(f'{where}: "deploymentId" must be a non-empty string.')
    if "payload" not in doc:
        raise KscoreError(
            f'{where} is missing the key "payload" (an object with the "values" to score).'
        )
    model_id = doc.get("modelId")
    if model_id is not None and not isinstance(model_id, str):
        raise KscoreError(f'{where}: "modelId" must be a string.')
    payload = check_rows_payload(doc["payload"], f'{where}: "payload"')
    return WmlPayload(deployment_id, model_id, payload)


def is_wml_payload(doc: Any) -> bool:
    """Whether ``doc`` is shaped as WML's complete payload rather than a rows body."""
    return (
        isinstance(doc, dict)
        and "values" not in doc
        and "inputs" not in doc
        and ("deploymentId" in doc or "payload" in doc)
    )


def job_payload(values_or_payload: Any, where: str = "The payload") -> Record:
    """The JSON body to send for rows: a list (or array) of rows, a ``{"values"|"inputs"}``
    payload, or WML's complete payload (its ``"payload"`` is sent).

    Raises KscoreError (naming ``where``) for anything else.
    """
    data = values_or_payload
    if isinstance(data, dict):
        if is_wml_payload(data):
            return dict(parse_wml_payload(data, where).payload)
        return dict(check_rows_payload(data, where))
    if hasattr(data, "tolist"):  # numpy arrays, without importing numpy
        data = data.tolist()
    if isinstance(data, str | bytes) or not isinstance(data, Sequence):
        raise KscoreError('Rows must be a list (or an array), or a payload {"values": [...]}.')
    return {"values": list(data)}


def npy_bytes_kind(data: Any) -> bool:
    """Whether ``data`` is a numpy array that .npy holds without pickling."""
    if type(data).__module__ != "numpy" or not hasattr(data, "dtype"):
        return False
    return bool(data.dtype.kind in "biufUS")  # object arrays go as JSON: .npy would need pickle


def npy_bytes(data: Any) -> bytes | None:
    """A numpy array as .npy bytes; None for anything else (numpy is imported only for arrays)."""
    if not npy_bytes_kind(data):
        return None
    import numpy

    buffer = io.BytesIO()
    numpy.save(buffer, data, allow_pickle=False)
    return buffer.getvalue()
