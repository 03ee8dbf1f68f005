"""The worker's own lines of defence against hostile model files (issue 9): how loaders are
called, which Keras they are, and the check of the warm-up prediction after a load."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.errors import UnsafeModel, UnsupportedModelFile
from tests import hostile_models as hm
from tests import keras_files as kf
from workers import model_loader
from workers.model_loader import LEGACY_KERAS_VARIABLE, legacy_keras_refusal, load_model

WORKERS = Path(model_loader.__file__).parent
LOADER_CALLS = {"load_model", "model_from_config", "model_from_json", "from_config"}


# --- loader calls ------------------------------------------------------------------------------


def _calls(source: str) -> list[tuple[ast.Call, list[ast.AST]]]:
    """Every call in ``source`` with the nodes that enclose it."""
    found: list[tuple[ast.Call, list[ast.AST]]] = []
    stack: list[tuple[ast.AST, list[ast.AST]]] = [(ast.parse(source), [])]
    while stack:
        node, parents = stack.pop()
        if isinstance(node, ast.Call):
            found.append((node, parents))
        stack.extend((child, [*parents, node]) for child in ast.iter_child_nodes(node))
    return found


def _in_safe_mode_scope(parents: list[ast.AST]) -> bool:
    for node in parents:
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and call.func.id == "SafeModeScope"
                    and [ast.literal_eval(a) for a in call.args] == [True]
                ):
                    return True
    return False


@pytest.mark.parametrize("module", sorted(WORKERS.glob("*.py")), ids=lambda p: p.name)
def test_every_keras_loader_call_is_uncompiled_safe_and_without_custom_objects(
    module: Path,
) -> None:
    for call, parents in _calls(module.read_text()):
        keywords = {k.arg: k.value for k in call.keywords}
        where = f"{module.name}:{call.lineno}"
        assert "custom_objects" not in keywords, where
        func = call.func
        # Our own load_model (model_cache -> model_loader) is a plain name; Keras's are
        # attributes of a Keras module (keras.saving.load_model, tf_keras.models...).
        if not (isinstance(func, ast.Attribute) and func.attr in LOADER_CALLS):
            continue
        if func.attr == "load_model":
            assert ast.literal_eval(keywords["compile"]) is False, where
            assert ast.literal_eval(keywords["safe_mode"]) is True, where
        else:
            assert _in_safe_mode_scope(parents), where


def test_the_loaders_are_called_at_all() -> None:
    # The test above checks something: the calls it looks for exist.
    source = (WORKERS / "model_loader.py").read_text()
    names = {c.func.attr for c, _ in _calls(source) if isinstance(c.func, ast.Attribute)}
    assert {"load_model", "model_from_config"} <= names


# --- TF_USE_LEGACY_KERAS -----------------------------------------------------------------------


def test_the_legacy_keras_variable_is_named_in_the_refusal() -> None:
    assert legacy_keras_refusal({}) is None
    message = legacy_keras_refusal({LEGACY_KERAS_VARIABLE: "1"})
    assert message is not None and "TF_USE_LEGACY_KERAS is set (to '1')" in message


def test_a_worker_does_not_start_with_legacy_keras_set() -> None:
    env = {**os.environ, LEGACY_KERAS_VARIABLE: "1"}
    done = subprocess.run(
        [sys.executable, "-c", "import workers.main"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("kscore: the worker will not start: TF_USE_LEGACY_KERAS is set")


def test_a_model_is_not_loaded_with_legacy_keras_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = kf.keras3_keras_file(tmp_path)
    monkeypatch.setenv(LEGACY_KERAS_VARIABLE, "true")
    with pytest.raises(UnsupportedModelFile, match="TF_USE_LEGACY_KERAS"):
        load_model(path, path.name)


# --- the warm-up check -------------------------------------------------------------------------


def test_a_model_answering_nan_on_zeros_fails_its_warm_up(tmp_path: Path) -> None:
    keras = kf._keras()
    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Dense(3, activation="softmax", name="probs")(x))
    kernel, bias = model.get_layer("probs").get_weights()
    model.get_layer("probs").set_weights([kernel, np.full_like(bias, np.nan)])
    path = kf._save_quietly(model, tmp_path / "nan.keras")
    loaded = load_model(path, path.name)
    with pytest.raises(UnsupportedModelFile) as caught:
        loaded.warm_up()
    assert caught.value.details["reason"] == "non_finite_output"
    assert "'probs' gave non-finite values" in caught.value.message


def test_a_model_answering_another_shape_than_it_declares_fails_its_warm_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow as tf

    path = kf.keras3_keras_file(tmp_path)
    loaded = load_model(path, path.name)
    loaded.warm_up()  # the real model passes
    # Fault injection: a graph answering 7 columns where the model declares 3.
    monkeypatch.setattr(loaded, "_graph", lambda *tensors: tf.zeros((1, 7)))
    with pytest.raises(UnsupportedModelFile) as caught:
        loaded.warm_up()
    assert caught.value.details["reason"] == "output_shape"
    assert "declares shape [None, 3] but gave [1, 7]" in caught.value.message


# --- the corpus's payloads are live ------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [hm.tf_keras_lambda_in_time_distributed_h5, hm.tf_keras_lambda_in_sequential_h5],
    ids=lambda b: b.__name__,
)
def test_control_tf_keras_runs_the_corpus_payload_and_kscore_does_not(
    tmp_path: Path, build: Any
) -> None:
    import tf_keras

    marker = tmp_path / "marker"
    path = build(tmp_path, marker)
    with pytest.raises(UnsafeModel):
        load_model(path, path.name)
    assert not marker.exists()
    model = tf_keras.models.load_model(str(path), compile=False, safe_mode=True)
    model(np.zeros((1, *model.input_shape[1:]), np.float32))
    assert marker.exists()  # the payload is real: tf_keras ran it
