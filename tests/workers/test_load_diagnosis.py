"""Naming the layer and argument a Keras refuses, with the real Keras of each dialect."""

from __future__ import annotations

from typing import Any

import pytest

from workers.load_diagnosis import argument_in, find_layer_problem, iter_layer_entries


def dense(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {"name": name, "units": 2, **extra},
        "registered_name": None,
    }


def test_layers_are_visited_innermost_first() -> None:
    inner = {"class_name": "GRU", "config": {"name": "gru", "units": 2}}
    wrapped = {"class_name": "Bidirectional", "config": {"name": "bi", "layer": inner}}
    model = {"class_name": "Sequential", "config": {"name": "m", "layers": [dense("a"), wrapped]}}
    names = [entry["config"]["name"] for entry in iter_layer_entries(model)]
    assert names == ["a", "gru", "bi", "m"]
    legacy = {"class_name": "Sequential", "config": [dense("only")]}  # Keras 2.0's list form
    assert [e["config"]["name"] for e in iter_layer_entries(legacy)] == ["only"]


@pytest.mark.parametrize(
    ("message", "argument"),
    [
        ("('Keyword argument not understood:', 'units_v2')", "units_v2"),  # tf_keras
        ("Unrecognized keyword arguments passed to Dense: {'units_v2': 3}", "units_v2"),  # keras 3
        ("__init__() got an unexpected keyword argument 'groups'", "groups"),
        ("Could not interpret activation function identifier: 'swishy'", None),
    ],
)
def test_the_argument_is_read_from_each_dialects_message(message: str, argument: str) -> None:
    assert argument_in(message) == argument


@pytest.mark.parametrize("loader", ["keras", "tf_keras"])
def test_the_first_layer_that_cannot_be_built_is_named(loader: Any) -> None:
    model = {
        "class_name": "Sequential",
        "config": {"name": "m", "layers": [dense("fine"), dense("odd", units_v2=3)]},
    }
    problem = find_layer_problem(model, loader)
    assert problem is not None
    assert (problem.name, problem.class_name, problem.argument) == ("odd", "Dense", "units_v2")
    assert find_layer_problem({"class_name": "Sequential", "config": [dense("a")]}, loader) is None
