"""A corpus of hostile model files, built here from real Keras files (issue 9).

Every builder is ``def name(directory: Path, marker: Path) -> Path``: it writes one file into
``directory`` and returns it. Files that carry code carry it aimed at ``marker``: a Lambda whose
bytecode creates ``marker``, or a class pointed at ``os.system`` / ``builtins.exec`` /
``subprocess.Popen`` with arguments that would create it. Builders that run the Lambda while
building the model remove the marker before returning, so a marker that exists afterwards
means kscore ran the payload.

:data:`CORPUS` lists each file with the error code (and ``details.reason``) kscore answers
with, at upload and again at deploy when the file is smuggled into Redis past the API.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tests import keras_files as kf

Builder = Callable[[Path, Path], Path]


def _save(model: Any, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(path))
    return path


def _marker_function(marker: Path) -> Any:
    # A lambda (not a def) so that Keras 3 stores its bytecode; the path is baked into it.
    return eval(f"lambda t: (open({str(marker)!r}, 'a').close(), t * 2.0)[1]")


def _forget(marker: Path) -> None:
    marker.unlink(missing_ok=True)  # building the model ran the Lambda once


# --- editing real files ----------------------------------------------------------------------


def _edit_keras_config(path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Rewrite ``config.json`` of the .keras file ``path`` in place through ``edit``."""
    edited = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(edited, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    edited.replace(path)
    return path


def _edit_h5_config(path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config).encode()
    return path


def _layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    return config["config"]["layers"]  # type: ignore[no-any-return]


# --- Lambda, in each dialect and nesting ------------------------------------------------------


def keras3_lambda(directory: Path, marker: Path) -> Path:
    """Keras 3 .keras: x -> Lambda (bytecode creating ``marker``)."""
    keras = kf._keras()
    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Lambda(_marker_function(marker), name="touch")(x))
    path = _save(model, directory / "keras3_lambda.keras")
    _forget(marker)
    return path


def keras3_lambda_in_sequential(directory: Path, marker: Path) -> Path:
    """Keras 3 .keras: a functional model calling a nested Sequential that holds the Lambda."""
    keras = kf._keras()
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(_marker_function(marker), name="touch")],
        name="inner",
    )
    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Dense(2, name="probs")(inner(x)))
    path = _save(model, directory / "keras3_lambda_in_sequential.keras")
    _forget(marker)
    return path


def keras3_lambda_in_time_distributed(directory: Path, marker: Path) -> Path:
    """Keras 3 .keras: TimeDistributed(Lambda) over (3, 4) sequences."""
    keras = kf._keras()
    x = keras.Input((3, 4), name="x")
    wrapped = keras.layers.TimeDistributed(
        keras.layers.Lambda(_marker_function(marker), name="touch"), name="each"
    )
    model = keras.Model(x, wrapped(x))
    path = _save(model, directory / "keras3_lambda_in_time_distributed.keras")
    _forget(marker)
    return path


def keras3_lambda_in_bidirectional(directory: Path, marker: Path) -> Path:
    """Keras 3 .keras: a Bidirectional whose wrapped layers are the Lambda (edited config)."""
    lambda_entry = _keras3_lambda_entry(directory, marker)
    keras = kf._keras()
    x = keras.Input((3, 4), name="x")
    model = keras.Model(x, keras.layers.Bidirectional(keras.layers.LSTM(2), name="bi")(x))
    path = _save(model, directory / "keras3_lambda_in_bidirectional.keras")

    def edit(config: dict[str, Any]) -> None:
        for layer in _layers(config):
            if layer["class_name"] == "Bidirectional":
                layer["config"]["layer"] = copy.deepcopy(lambda_entry)
                layer["config"]["backward_layer"] = copy.deepcopy(lambda_entry)

    return _edit_keras_config(path, edit)


def _keras3_lambda_entry(directory: Path, marker: Path) -> dict[str, Any]:
    scratch = directory / "scratch"
    scratch.mkdir(exist_ok=True)
    path = keras3_lambda(scratch, marker)
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    shutil.rmtree(scratch)
    return next(layer for layer in _layers(config) if layer["class_name"] == "Lambda")


def tf_keras_lambda_h5(directory: Path, marker: Path) -> Path:
    """tf_keras .h5: x -> Lambda (tf_keras runs its bytecode even with safe_mode=True)."""
    tf_keras = kf._tf_keras()
    x = tf_keras.Input((4,), name="x")
    model = tf_keras.Model(x, tf_keras.layers.Lambda(_marker_function(marker), name="touch")(x))
    path = _save(model, directory / "tf_keras_lambda.h5")
    _forget(marker)
    return path


def tf_keras_lambda_in_sequential_h5(directory: Path, marker: Path) -> Path:
    """tf_keras .h5: a functional model calling a nested Sequential that holds the Lambda."""
    tf_keras = kf._tf_keras()
    inner = tf_keras.Sequential(
        [tf_keras.layers.Lambda(_marker_function(marker), input_shape=(4,), name="touch")],
        name="inner",
    )
    x = tf_keras.Input((4,), name="x")
    model = tf_keras.Model(x, tf_keras.layers.Dense(2, name="probs")(inner(x)))
    path = _save(model, directory / "tf_keras_lambda_in_sequential.h5")
    _forget(marker)
    return path


def tf_keras_lambda_in_time_distributed_h5(directory: Path, marker: Path) -> Path:
    """tf_keras .h5: TimeDistributed(Lambda) over (3, 4) sequences."""
    tf_keras = kf._tf_keras()
    x = tf_keras.Input((3, 4), name="x")
    wrapped = tf_keras.layers.TimeDistributed(
        tf_keras.layers.Lambda(_marker_function(marker), name="touch"), name="each"
    )
    model = tf_keras.Model(x, wrapped(x))
    path = _save(model, directory / "tf_keras_lambda_in_time_distributed.h5")
    _forget(marker)
    return path


def tf_keras_lambda_in_bidirectional_h5(directory: Path, marker: Path) -> Path:
    """tf_keras .h5: a Bidirectional whose wrapped layers are the Lambda (edited config)."""
    scratch = directory / "scratch"
    scratch.mkdir(exist_ok=True)
    with h5py.File(tf_keras_lambda_h5(scratch, marker), "r") as f:
        lambda_entry = next(
            layer
            for layer in _layers(json.loads(f.attrs["model_config"]))
            if layer["class_name"] == "Lambda"
        )
    shutil.rmtree(scratch)
    tf_keras = kf._tf_keras()
    x = tf_keras.Input((3, 4), name="x")
    model = tf_keras.Model(x, tf_keras.layers.Bidirectional(tf_keras.layers.LSTM(2), name="bi")(x))
    path = _save(model, directory / "tf_keras_lambda_in_bidirectional.h5")

    def edit(config: dict[str, Any]) -> None:
        for layer in _layers(config):
            if layer["class_name"] == "Bidirectional":
                layer["config"]["layer"] = copy.deepcopy(lambda_entry)

    return _edit_h5_config(path, edit)


# --- classes pointed at importable functions --------------------------------------------------


def _keras3_pointed_at(module: str, name: str, config: dict[str, Any]) -> Builder:
    def build(directory: Path, marker: Path) -> Path:
        path = kf.keras3_keras_file(directory)
        arguments = json.loads(json.dumps(config).replace("MARKER", str(marker)))

        def edit(model_config: dict[str, Any]) -> None:
            for layer in _layers(model_config):
                if layer["class_name"] == "Dense":
                    layer.update(module=module, class_name=name, registered_name=name)
                    layer["config"].update(arguments)

        return _edit_keras_config(path, edit)

    build.__name__ = f"keras3_{module}_{name}"
    return build


keras3_os_system = _keras3_pointed_at("os", "system", {"command": "touch MARKER"})
keras3_builtins_exec = _keras3_pointed_at(
    "builtins", "exec", {"source": "open('MARKER', 'a').close()"}
)
keras3_subprocess_popen = _keras3_pointed_at("subprocess", "Popen", {"args": ["touch", "MARKER"]})


def keras3_activation_os_system(directory: Path, marker: Path) -> Path:
    """Keras 3 .keras whose Dense activation is the function ``os.system``."""
    path = kf.keras3_keras_file(directory)

    def edit(config: dict[str, Any]) -> None:
        for layer in _layers(config):
            if layer["class_name"] == "Dense":
                layer["config"]["activation"] = {
                    "module": "os",
                    "class_name": "function",
                    "config": "system",
                    "registered_name": "function",
                }
                layer["config"]["name"] = f"touch {marker}"

    return _edit_keras_config(path, edit)


def tf_keras_builtins_exec_h5(directory: Path, marker: Path) -> Path:
    """tf_keras .h5 whose Dense is renamed to ``builtins.exec`` with code for ``marker``."""
    path = kf.tf_keras_h5_file(directory)

    def edit(config: dict[str, Any]) -> None:
        for layer in _layers(config):
            if layer["class_name"] == "Dense":
                layer.update(class_name="exec", module="builtins")
                layer["config"]["source"] = f"open({str(marker)!r}, 'a').close()"

    return _edit_h5_config(path, edit)


# --- HDF5 that reaches outside the file, or lies about its size -------------------------------


def h5_external_link(directory: Path, marker: Path) -> Path:
    """tf_keras .h5 whose ``model_weights`` group is an external link to another file."""
    path = kf.tf_keras_h5_file(directory)
    elsewhere = directory / "elsewhere.h5"
    with h5py.File(path, "r+") as f, h5py.File(elsewhere, "w") as other:
        f.copy(f["model_weights"], other, "model_weights")
        del f["model_weights"]
        f["model_weights"] = h5py.ExternalLink(str(elsewhere), "/model_weights")
    return path


def h5_soft_link(directory: Path, marker: Path) -> Path:
    """tf_keras .h5 with a soft link inside ``model_weights``."""
    path = kf.tf_keras_h5_file(directory)
    with h5py.File(path, "r+") as f:
        f["model_weights/alias"] = h5py.SoftLink("/model_weights/probs")
    return path


def h5_virtual_dataset(directory: Path, marker: Path) -> Path:
    """tf_keras .h5 with a virtual dataset mapped from another file."""
    path = kf.tf_keras_h5_file(directory)
    source = directory / "source.h5"
    with h5py.File(source, "w") as f:
        f["data"] = np.arange(4, dtype=np.float32)
    layout = h5py.VirtualLayout(shape=(4,), dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(source), "data", shape=(4,))
    with h5py.File(path, "r+") as f:
        f["model_weights"].create_virtual_dataset("mapped", layout)
    return path


def h5_external_storage(directory: Path, marker: Path) -> Path:
    """tf_keras .h5 with a dataset whose bytes live in an external raw file."""
    path = kf.tf_keras_h5_file(directory)
    raw = directory / "raw.bin"
    raw.write_bytes(bytes(16))
    with h5py.File(path, "r+") as f:
        f["model_weights"].create_dataset(
            "outside", shape=(4,), dtype=np.float32, external=[(str(raw), 0, 16)]
        )
    return path


def h5_shape_bomb(directory: Path, marker: Path) -> Path:
    """tf_keras .h5 with a chunked dataset declaring 4 TB and storing nothing."""
    path = kf.tf_keras_h5_file(directory)
    with h5py.File(path, "r+") as f:
        f["model_weights/probs"].create_dataset(
            "huge", shape=(10**12,), dtype=np.float32, chunks=(1024,)
        )
    return path


def keras_weights_external_link(directory: Path, marker: Path) -> Path:
    """Keras 3 .keras whose ``model.weights.h5`` holds an external link to another file."""
    path = kf.keras3_keras_file(directory)
    elsewhere = directory / "elsewhere.h5"
    with h5py.File(elsewhere, "w") as other:
        other["data"] = np.zeros(3, np.float32)
    edited = directory / "keras_weights_external_link.keras"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(edited, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "model.weights.h5":
                buffer = io.BytesIO(data)
                with h5py.File(buffer, "r+") as f:
                    f["elsewhere"] = h5py.ExternalLink(str(elsewhere), "/data")
                data = buffer.getvalue()
            zout.writestr(item, data)
    path.unlink()
    return edited


# --- configs past the caps ---------------------------------------------------------------------


def h5_config_nested_past_the_parser(directory: Path, marker: Path) -> Path:
    """An .h5 whose model_config nests 5000 lists deep (past Python's JSON recursion)."""
    path = directory / "deep_parser.h5"
    deep = "[" * 5000 + "]" * 5000
    text = (
        '{"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", '
        f'"config": {{"name": "d", "units": 1, "deep": {deep}}}}}]}}}}'
    )
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = text.encode()
        f.attrs["keras_version"] = b"2.21.0"
        f.attrs["backend"] = b"tensorflow"
    return path


def keras_config_nested_sequentials(directory: Path, marker: Path) -> Path:
    """A .keras whose config nests 200 Sequentials in one another (JSON parses, past the cap)."""
    path = kf.keras3_keras_file(directory)

    def edit(config: dict[str, Any]) -> None:
        nested: dict[str, Any] = {"class_name": "Dense", "config": {"name": "d", "units": 1}}
        for level in range(200):
            nested = {
                "class_name": "Sequential",
                "module": "keras",
                "config": {"name": f"s{level}", "layers": [nested]},
            }
        _layers(config).append(nested)

    return _edit_keras_config(path, edit)


# --- archives ----------------------------------------------------------------------------------

#: Zeros that deflate about 1000:1: a bomb of 64 MiB in a file of about 64 KiB.
BOMB_BYTES = 64 * 1024**2


def _deflated_zeros_member(zf: zipfile.ZipFile, name: str) -> None:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w") as member:
        block = bytes(1024**2)
        for _ in range(BOMB_BYTES // len(block)):
            member.write(block)


def keras_zip_bomb(directory: Path, marker: Path) -> Path:
    """A .keras whose model.weights.h5 member is 64 MiB of deflated zeros."""
    source = kf.keras3_keras_file(directory)
    path = directory / "bomb.keras"
    with (
        zipfile.ZipFile(source) as zin,
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zout,
    ):
        for item in zin.infolist():
            if item.filename == "model.weights.h5":
                _deflated_zeros_member(zout, item.filename)
            else:
                zout.writestr(item.filename, zin.read(item.filename))
    return path


def zip_bomb(directory: Path, marker: Path) -> Path:
    """A .zip upload holding model.h5: 64 MiB of deflated zeros."""
    path = directory / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        _deflated_zeros_member(zf, "model.h5")
    return path


def tar_bomb(directory: Path, marker: Path) -> Path:
    """A .tar.gz holding model.h5: 64 MiB of zeros, gzipped to about 64 KiB."""
    path = directory / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("model.h5")
        info.size = BOMB_BYTES
        tar.addfile(info, _Zeros(BOMB_BYTES))
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        super().__init__()
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._left)
        buffer[:count] = bytes(count)
        self._left -= count
        return count


def keras_unexpected_member(directory: Path, marker: Path) -> Path:
    """A .keras with a member Keras never writes (``payload.py``)."""
    path = kf.keras3_keras_file(directory)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("payload.py", f"open({str(marker)!r}, 'a').close()\n")
    return path


def keras_member_traversal(directory: Path, marker: Path) -> Path:
    """A .keras with an asset member named ``assets/../../escape``."""
    path = kf.keras3_keras_file(directory)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("assets/../../escape", b"x")
    return path


def _model_bytes(directory: Path) -> bytes:
    scratch = directory / "scratch"
    scratch.mkdir(exist_ok=True)
    data = kf.tf_keras_h5_file(scratch).read_bytes()
    shutil.rmtree(scratch)
    return data


def tar_member_traversal(directory: Path, marker: Path) -> Path:
    """A .tar.gz whose one model member is named ``../evil.h5``."""
    return kf.tar_gz_of(
        None, directory, extra_members=[("../evil.h5", _model_bytes(directory))], name="up.tar.gz"
    )


def zip_member_absolute(directory: Path, marker: Path) -> Path:
    """A .zip with the model and a member named ``/tmp/evil.h5``."""
    model = _model_bytes(directory)
    return kf.zip_of(
        None,
        directory,
        extra_members=[("model.h5", model), ("/tmp/evil.h5", model)],
        name="up.zip",
    )


def _tar_with(directory: Path, name: str, member: tarfile.TarInfo) -> Path:
    path = directory / name
    model = _model_bytes(directory)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("model.h5")
        info.size = len(model)
        tar.addfile(info, io.BytesIO(model))
        tar.addfile(member)
    return path


def tar_symlink(directory: Path, marker: Path) -> Path:
    """A .tar.gz with the model and a symbolic link to /etc/passwd."""
    link = tarfile.TarInfo("passwd")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    return _tar_with(directory, "link.tar.gz", link)


def tar_device(directory: Path, marker: Path) -> Path:
    """A .tar.gz with the model and a character device (/dev/zero's numbers)."""
    device = tarfile.TarInfo("zero")
    device.type = tarfile.CHRTYPE
    device.devmajor, device.devminor = 1, 5
    return _tar_with(directory, "device.tar.gz", device)


# --- not what they say they are -------------------------------------------------------------


def fake_h5(directory: Path, marker: Path) -> Path:
    """Text named ``model.h5``."""
    path = directory / "model.h5"
    path.write_text("import os; os.system('touch marker')\n")
    return path


def hdf5_magic_then_garbage(directory: Path, marker: Path) -> Path:
    """The HDF5 signature followed by random bytes."""
    path = directory / "garbage.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + np.random.default_rng(9).bytes(4096))
    return path


def keras_that_is_hdf5(directory: Path, marker: Path) -> Path:
    """An HDF5 model named ``.keras``."""
    return Path(shutil.copy(kf.tf_keras_h5_file(directory), directory / "really_h5.keras"))


def h5_that_is_a_zip(directory: Path, marker: Path) -> Path:
    """A .keras zip named ``.h5``."""
    return Path(shutil.copy(kf.keras3_keras_file(directory), directory / "really_zip.h5"))


def zip_that_is_hdf5(directory: Path, marker: Path) -> Path:
    """An HDF5 model named ``.zip``."""
    return Path(shutil.copy(kf.tf_keras_h5_file(directory), directory / "really_h5.zip"))


def tgz_that_is_a_zip(directory: Path, marker: Path) -> Path:
    """A .keras zip named ``.tgz``."""
    return Path(shutil.copy(kf.keras3_keras_file(directory), directory / "really_zip.tgz"))


def _truncated(source: Path, path: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_h5(directory: Path, marker: Path) -> Path:
    """The first half of a tf_keras .h5."""
    return _truncated(kf.tf_keras_h5_file(directory), directory / "truncated.h5")


def truncated_keras(directory: Path, marker: Path) -> Path:
    """The first half of a Keras 3 .keras zip (no central directory)."""
    return _truncated(kf.keras3_keras_file(directory), directory / "truncated.keras")


def truncated_tar_gz(directory: Path, marker: Path) -> Path:
    """The first half of a .tar.gz holding a model."""
    archive = kf.tar_gz_of(kf.tf_keras_h5_file(directory), directory, name="whole.tar.gz")
    return _truncated(archive, directory / "truncated.tar.gz")


# --- the corpus --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """A hostile file and how kscore refuses it: HTTP status, error code, ``details.reason``."""

    build: Builder
    status: int
    code: str
    reason: str | None = None

    @property
    def id(self) -> str:
        return self.build.__name__


def _unsafe(build: Builder) -> Hostile:
    return Hostile(build, 422, "unsafe_model")


def _structure(build: Builder, reason: str) -> Hostile:
    return Hostile(build, 422, "unsafe_model_file", reason)


def _unsupported(build: Builder) -> Hostile:
    return Hostile(build, 400, "unsupported_model_file")


CORPUS = [
    _unsafe(keras3_lambda),
    _unsafe(keras3_lambda_in_sequential),
    _unsafe(keras3_lambda_in_time_distributed),
    _unsafe(keras3_lambda_in_bidirectional),
    _unsafe(tf_keras_lambda_h5),
    _unsafe(tf_keras_lambda_in_sequential_h5),
    _unsafe(tf_keras_lambda_in_time_distributed_h5),
    _unsafe(tf_keras_lambda_in_bidirectional_h5),
    _unsafe(keras3_os_system),
    _unsafe(keras3_builtins_exec),
    _unsafe(keras3_subprocess_popen),
    _unsafe(keras3_activation_os_system),
    _unsafe(tf_keras_builtins_exec_h5),
    _structure(h5_external_link, "hdf5_external_link"),
    _structure(h5_soft_link, "hdf5_soft_link"),
    _structure(h5_virtual_dataset, "hdf5_virtual_dataset"),
    _structure(h5_external_storage, "hdf5_external_storage"),
    _structure(h5_shape_bomb, "hdf5_shape_bomb"),
    _structure(keras_weights_external_link, "hdf5_external_link"),
    _structure(h5_config_nested_past_the_parser, "config_too_deep"),
    _structure(keras_config_nested_sequentials, "config_too_deep"),
    _structure(keras_zip_bomb, "zip_bomb"),
    _structure(zip_bomb, "zip_bomb"),
    _structure(tar_bomb, "tar_bomb"),
    _structure(keras_unexpected_member, "archive_unexpected_member"),
    _structure(keras_member_traversal, "archive_member_path"),
    _structure(tar_member_traversal, "archive_member_path"),
    _structure(zip_member_absolute, "archive_member_path"),
    _structure(tar_symlink, "archive_member_type"),
    _structure(tar_device, "archive_member_type"),
    _unsupported(fake_h5),
    _unsupported(hdf5_magic_then_garbage),
    _unsupported(keras_that_is_hdf5),
    _unsupported(h5_that_is_a_zip),
    _unsupported(zip_that_is_hdf5),
    _unsupported(tgz_that_is_a_zip),
    _unsupported(truncated_h5),
    _unsupported(truncated_keras),
    _unsupported(truncated_tar_gz),
]
