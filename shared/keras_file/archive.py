"""Unpack an upload that is an archive (.tar.gz, .tgz, .zip) holding one Keras model file.

WML users uploaded models so. The archive is a stranger's file too: members are listed up to
:data:`MAX_ARCHIVE_MEMBERS`, exactly one model file must be present (macOS litter aside), its
path must be relative without ``..``, it must be a regular file (no links), not encrypted, and
its bytes are copied under a size limit into a file named by its base name only.
"""

from __future__ import annotations

import posixpath
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from shared.errors import PayloadTooLarge, UnsupportedModelFile
from shared.keras_file.container import MODEL_EXTENSIONS

#: Extensions of an archive that holds one model file.
ARCHIVE_EXTENSIONS = (".tar.gz", ".tgz", ".zip")

#: Largest model member extracted from an archive when the caller gives no limit.
DEFAULT_MAX_EXTRACTED_BYTES = 1024**3
#: Members listed in an archive before giving up (a model archive has a handful).
MAX_ARCHIVE_MEMBERS = 10_000


def extract_model_file(
    path: Path, filename: str, workdir: Path, *, max_bytes: int = DEFAULT_MAX_EXTRACTED_BYTES
) -> tuple[Path, str]:
    """The model file inside an upload: ``path`` itself, or the one member of an archive.

    ``filename`` is the upload's name (its extension decides); a member is copied into
    ``workdir`` under its base name, at most ``max_bytes`` bytes. Returns the model file's
    path and name. Raises UnsupportedModelFile (400) for another extension, a damaged
    archive, none or several model files, an unsafe, linked or encrypted member, or too many
    members; PayloadTooLarge (413) past ``max_bytes``.
    """
    lowered = filename.lower()
    if lowered.endswith(MODEL_EXTENSIONS):
        return path, filename
    if lowered.endswith((".tar.gz", ".tgz")):
        return _extract_from_tar(path, filename, workdir, max_bytes)
    if lowered.endswith(".zip"):
        return _extract_from_zip(path, filename, workdir, max_bytes)
    raise UnsupportedModelFile(
        f"{filename!r} is not a file kscore accepts: upload a Keras model file "
        "(.h5, .hdf5, .keras) or a .tar.gz, .tgz or .zip archive holding exactly one.",
        details={
            "filename": filename,
            "accepted_extensions": list(MODEL_EXTENSIONS + ARCHIVE_EXTENSIONS),
        },
    )


def _is_junk(name: str) -> bool:
    """macOS archive litter: ``__MACOSX/`` folders and ``._name`` resource forks."""
    parts = [part for part in name.replace("\\", "/").split("/") if part]
    return any(part == "__MACOSX" for part in parts) or bool(parts and parts[-1].startswith("._"))


def _is_model_name(name: str) -> bool:
    return name.lower().endswith(MODEL_EXTENSIONS) and not _is_junk(name)


def _unsafe_member_name(name: str) -> bool:
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return True
    return ".." in normalized.split("/")


def _listing(names: list[str]) -> str:
    if not names:
        return "the archive is empty"
    shown = ", ".join(names[:10])
    return f"found: {shown}" + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _pick_member(names: list[str], filename: str) -> str:
    models = [name for name in names if _is_model_name(name)]
    details: dict[str, Any] = {"filename": filename, "members": names[:50]}
    if not models:
        others = [name for name in names if not _is_junk(name)]
        raise UnsupportedModelFile(
            f"{filename} holds no Keras model file (.h5, .hdf5, .keras); {_listing(others)}. "
            "Put exactly one model file written by model.save() in the archive.",
            details=details,
        )
    if len(models) > 1:
        raise UnsupportedModelFile(
            f"{filename} holds {len(models)} model files ({', '.join(models[:10])}); kscore "
            "needs exactly one per archive. Upload each model separately.",
            details=details,
        )
    member = models[0]
    if _unsafe_member_name(member):
        raise UnsupportedModelFile(
            f"{filename}: the member {member!r} has an unsafe path (absolute or with '..'). "
            "Archive the model file under a plain relative name.",
            details=details,
        )
    return member


def _target(workdir: Path, member: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    # Only the base name is used, so nothing can land outside workdir.
    base = posixpath.basename(member.replace("\\", "/"))
    return workdir / base


def _copy_bounded(source: IO[bytes], target: Path, max_bytes: int, filename: str) -> None:
    written = 0
    try:
        with target.open("wb") as out:
            while chunk := source.read(1024 * 1024):
                written += len(chunk)
                if written > max_bytes:
                    raise PayloadTooLarge(
                        f"The model file in {filename} is larger than the limit of {max_bytes} "
                        "bytes (KSCORE_MAX_MODEL_BYTES).",
                        details={"limit_bytes": max_bytes, "filename": filename},
                    )
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _extract_from_tar(path: Path, filename: str, workdir: Path, max_bytes: int) -> tuple[Path, str]:
    try:
        with tarfile.open(path, "r:*") as tar:
            members: list[tarfile.TarInfo] = []
            for info in _bounded(tar, filename):
                if not info.isdir():
                    members.append(info)
            by_name = {info.name: info for info in members}
            member = by_name[_pick_member([info.name for info in members], filename)]
            if not member.isfile():
                raise UnsupportedModelFile(
                    f"{filename}: the member {member.name!r} is a link, not a file. Archive "
                    "the model file itself.",
                    details={"filename": filename},
                )
            if member.size > max_bytes:
                raise _too_large(filename, max_bytes)
            source = tar.extractfile(member)
            if source is None:
                raise UnsupportedModelFile(
                    f"{filename}: the member {member.name!r} cannot be read.",
                    details={"filename": filename},
                )
            target = _target(workdir, member.name)
            with source:
                _copy_bounded(source, target, max_bytes, filename)
            return target, target.name
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnsupportedModelFile(
            f"{filename} is not a readable .tar.gz archive ({type(exc).__name__}: {exc}).",
            details={"filename": filename},
        ) from None


def _bounded(tar: tarfile.TarFile, filename: str) -> Iterator[tarfile.TarInfo]:
    for count, info in enumerate(tar, start=1):
        if count > MAX_ARCHIVE_MEMBERS:
            raise UnsupportedModelFile(
                f"{filename} has more than {MAX_ARCHIVE_MEMBERS} members; a model archive "
                "should hold the model file and little else.",
                details={"filename": filename},
            )
        yield info


def _too_large(filename: str, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The model file in {filename} is larger than the limit of {max_bytes} bytes "
        "(KSCORE_MAX_MODEL_BYTES).",
        details={"limit_bytes": max_bytes, "filename": filename},
    )


def _extract_from_zip(path: Path, filename: str, workdir: Path, max_bytes: int) -> tuple[Path, str]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ARCHIVE_MEMBERS:
                raise UnsupportedModelFile(
                    f"{filename} has more than {MAX_ARCHIVE_MEMBERS} members; a model archive "
                    "should hold the model file and little else.",
                    details={"filename": filename},
                )
            names = [info.filename for info in infos if not info.is_dir()]
            if "config.json" in names:
                # A Keras 3 .keras file renamed to .zip (WML users uploaded them so): the
                # upload is the model; loaders need the .keras extension.
                return _as_keras_file(path, filename, workdir, max_bytes)
            info = zf.getinfo(_pick_member(names, filename))
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise UnsupportedModelFile(
                    f"{filename}: the member {info.filename!r} is a symbolic link, not a file. "
                    "Archive the model file itself.",
                    details={"filename": filename},
                )
            if info.flag_bits & 0x1:
                raise UnsupportedModelFile(
                    f"{filename}: the member {info.filename!r} is encrypted; upload an "
                    "unencrypted archive.",
                    details={"filename": filename},
                )
            if info.file_size > max_bytes:
                raise _too_large(filename, max_bytes)
            target = _target(workdir, info.filename)
            with zf.open(info) as source:
                _copy_bounded(source, target, max_bytes, filename)
            return target, target.name
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise UnsupportedModelFile(
            f"{filename} is not a readable .zip archive ({type(exc).__name__}: {exc}).",
            details={"filename": filename},
        ) from None


def _as_keras_file(path: Path, filename: str, workdir: Path, max_bytes: int) -> tuple[Path, str]:
    if path.stat().st_size > max_bytes:
        raise _too_large(filename, max_bytes)
    stem = posixpath.basename(filename.replace("\\", "/"))[: -len(".zip")] or "model"
    target = _target(workdir, f"{stem}.keras")
    shutil.copyfile(path, target)
    return target, target.name
