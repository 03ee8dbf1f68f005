"""The safety check (shared.keras_file.safety): what it refuses, on real files and on configs."""

from __future__ import annotations

import base64
import json
import marshal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import pytest

from shared.errors import UnsafeModel
from shared.keras_file import check_config_safe, find_unsafe_layers, read_model_config
from tests import keras_files as kf
from tests.shared.keras_file.helpers import Builder, Built, dense, functional, inspect

REPO = Path(__file__).resolve().parents[3]


# --- real files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("builder", "name", "class_name", "why"),
    [
        (kf.lambda_h5_file, "my_lambda", "Lambda", ""),
        (kf.lambda_keras_file, "my_lambda", "Lambda", ""),
        (
            kf.custom_layer_keras_file,
            "doubler",
            "Doubler",
            ": not a built-in Keras layer; its class comes from the Python module "
            "'tests.keras_files'; its class is registered by the package 'kscore_tests'",
        ),
    ],
    ids=["lambda_h5", "lambda_keras", "custom_layer"],
)
def test_unsafe_files_are_refused_naming_the_layer(
    built: Built, builder: Builder, name: str, class_name: str, why: str
) -> None:
    with pytest.raises(UnsafeModel) as caught:
        inspect(built(builder))
    error = caught.value
    assert (error.status, error.code) == (422, "unsafe_model")
    assert error.message == (
        "Model config names layers that could run code when loaded: "
        f'"{name}" ({class_name}{why}). kscore refuses such files; rebuild the model with '
        "built-in layers only."
    )
    assert [(item["name"], item["class_name"]) for item in error.details["layers"]] == [
        (name, class_name)
    ]


def test_custom_layer_reasons_name_its_module_and_package(built: Built) -> None:
    path = built(kf.custom_layer_keras_file)
    (finding,) = find_unsafe_layers(read_model_config(path, path.name))
    assert "not a built-in Keras layer" in finding["reason"]
    assert "'kscore_tests'" in finding["reason"]


def test_inspection_never_imports_tensorflow_or_keras(built: Built) -> None:
    paths = [
        built(kf.lambda_h5_file),
        built(kf.lambda_keras_file),
        built(kf.tf_keras_h5_file),
        built(kf.keras3_keras_file),
    ]
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from shared.keras_file import inspect_model_file\n"
        "from shared.errors import UnsafeModel\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        inspect_model_file(Path(p), Path(p).name)\n"
        "    except UnsafeModel:\n"
        "        pass\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf_keras'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_tf_keras_training_config_names_custom_adam_and_is_not_refused(built: Built) -> None:
    path = built(kf.tf_keras_h5_file)
    with h5py.File(path, "r") as f:
        training = json.loads(f.attrs["training_config"])
    assert training["optimizer_config"]["class_name"].endswith("Adam")
    assert inspect(path).model_class == "Functional"


# --- the safety check on configs ---------------------------------------------------------------


def bytecode(fn: Callable[..., Any]) -> str:
    return base64.b64encode(marshal.dumps(fn.__code__)).decode("ascii")


def reasons(config: Any, **others: Any) -> dict[str, str]:
    return {item["name"]: item["reason"] for item in find_unsafe_layers(config, **others)}


def test_plain_configs_are_safe() -> None:
    check_config_safe(functional(dense()))
    assert find_unsafe_layers(functional(dense(activation=None))) == []


@pytest.mark.parametrize(
    ("activation", "expected"),
    [
        ({"value": [bytecode(lambda t: t), None, None]}, "bytecode"),
        ({"class_name": "__lambda__", "config": {"code": "AAAA", "defaults": None}}, "function"),
        (
            {
                "module": "builtins",
                "class_name": "function",
                "config": "my_act",
                "registered_name": "function",
            },
            "my_act",
        ),
        ("my_custom_activation", "not a built-in Keras activation"),
        ({"class_name": "Custom>Swish", "config": {}}, "not a built-in Keras activation"),
    ],
    ids=["tf_keras_lambda", "keras3_lambda", "python_function", "unknown_name", "custom_class"],
)
def test_functions_in_an_activation_are_refused(activation: Any, expected: str) -> None:
    config = functional(dense("probs", activation=activation))
    with pytest.raises(UnsafeModel) as caught:
        check_config_safe(config)
    assert expected in reasons(config)["probs"]
    assert '"probs" (Dense: ' in caught.value.message


def test_builtin_activation_written_as_a_keras3_function_object_is_safe() -> None:
    activation = {
        "module": "keras.activations",
        "class_name": "function",
        "config": "relu",
        "registered_name": "function",
    }
    assert find_unsafe_layers(functional(dense(activation=activation))) == []


def test_keras_20_raw_marshal_string_is_bytecode() -> None:
    raw = marshal.dumps((lambda t: t).__code__).decode("raw_unicode_escape")
    config = functional(
        {"class_name": "Lambda", "config": {"name": "l", "function": [raw, None, None]}}
    )
    assert "bytecode" in reasons(config)["l"]


def test_innocent_lists_are_not_mistaken_for_bytecode() -> None:
    text = base64.b64encode(b"just some words, not code").decode()
    config = functional(dense(vocabulary=[text, None, None], tags=["c\x00", 1, 2]))
    assert find_unsafe_layers(config) == []


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        (
            {
                "class_name": "TFOpLambda",
                "config": {"name": "tf.io.write_file", "function": "io.write_file"},
            },
            "calls tf.io.write_file, which kscore refuses: reads or writes files",
        ),
        ({"class_name": "TFSMLayer", "config": {"name": "saved", "filepath": "/x"}}, "SavedModel"),
        ({"class_name": "Custom>Scale", "config": {"name": "scale"}}, "not a built-in Keras layer"),
        ({"class_name": "MyLayer", "config": {"name": "mine"}}, "not a built-in Keras layer"),
        (
            {
                "module": "my_pkg.layers",
                "class_name": "Dense",
                "config": {"name": "fake", "units": 3},
            },
            "module 'my_pkg.layers'",
        ),
        (
            {
                "registered_name": "my_pkg>Dense",
                "class_name": "Dense",
                "config": {"name": "reg", "units": 3},
            },
            "package 'my_pkg'",
        ),
        (
            {
                "class_name": "Dense",
                "config": {
                    "name": "init",
                    "units": 3,
                    "kernel_initializer": {"module": "evil", "class_name": "Init", "config": {}},
                },
            },
            "kernel_initializer: its class comes from the Python module 'evil'",
        ),
    ],
    ids=[
        "tf_op_lambda",
        "tfsm_layer",
        "custom_prefix",
        "unknown_class",
        "foreign_module",
        "foreign_package",
        "foreign_initializer",
    ],
)
def test_non_builtin_layers_are_refused(layer: dict[str, Any], expected: str) -> None:
    config = functional(layer)
    with pytest.raises(UnsafeModel):
        check_config_safe(config)
    (reason,) = reasons(config).values()
    assert expected in reason


def test_unsafe_layers_are_found_inside_wrappers_and_nested_models() -> None:
    lam = {"class_name": "Lambda", "config": {"name": "inner_lambda", "function": "x"}}
    nested = {
        "class_name": "Sequential",
        "config": {
            "name": "inner",
            "layers": [{"class_name": "Custom>Thing", "config": {"name": "thing"}}],
        },
    }
    wrapped = {"class_name": "TimeDistributed", "config": {"name": "td", "layer": lam}}
    bidi = {
        "class_name": "Bidirectional",
        "config": {
            "name": "bi",
            "layer": {"class_name": "LSTM", "config": {"name": "f", "units": 2}},
            "backward_layer": {"class_name": "MyRNN", "config": {"name": "back"}},
        },
    }
    rnn = {
        "class_name": "RNN",
        "config": {"name": "rnn", "cell": {"class_name": "MyCell", "config": {"name": "cell"}}},
    }
    found = reasons(functional(wrapped, nested, bidi, rnn))
    assert set(found) == {"inner_lambda", "thing", "back", "cell"}


def test_a_custom_model_class_is_refused() -> None:
    config = {
        "module": "my_models",
        "class_name": "MyModel",
        "config": {"name": "mine", "layers": []},
        "registered_name": "MyModel",
    }
    with pytest.raises(UnsafeModel, match=r'"mine" \(MyModel'):
        check_config_safe(config)


def test_lambdas_outside_the_architecture_are_refused_but_custom_optimizers_are_not() -> None:
    lam = {"class_name": "__lambda__", "config": {"code": "AAAA"}}
    config = functional(dense())
    assert reasons(
        config, training_config={"loss": {"value": [bytecode(lambda: 0), None, None]}}
    ) == {"training_config": "loss holds serialized Python bytecode"}
    assert "compile_config" in reasons(config, compile_config={"loss": lam})
    keras3 = {**config, "compile_config": {"loss": lam}}
    assert list(reasons(keras3)) == ["m"]
    tf_keras_training = {"optimizer_config": {"class_name": "Custom>Adam", "config": {}}}
    assert find_unsafe_layers(config, training_config=tf_keras_training) == []


def test_bare_list_sequential_config_is_checked() -> None:
    layers = [
        dense("ok", batch_input_shape=[None, 4]),
        {"class_name": "Lambda", "config": {"name": "l"}},
    ]
    with pytest.raises(UnsafeModel, match=r'"l" \(Lambda\)'):
        check_config_safe(layers)


def test_refusal_message_lists_several_layers() -> None:
    layers = [{"class_name": "Lambda", "config": {"name": f"l{i}"}} for i in range(12)]
    with pytest.raises(UnsafeModel) as caught:
        check_config_safe(functional(*layers))
    assert '"l0" (Lambda), "l1" (Lambda)' in caught.value.message
    assert "and 2 more" in caught.value.message
    assert len(caught.value.details["layers"]) == 12


# --- operations (issue 7, kind 4) --------------------------------------------------------------


def tf_op(function: str, class_name: str = "TFOpLambda") -> dict[str, Any]:
    return {"class_name": class_name, "config": {"name": f"tf.{function}", "function": function}}


def keras3_op(module: str, class_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "module": module,
        "class_name": class_name,
        "config": {"name": class_name.lower()},
        "registered_name": class_name,
        **extra,
    }


@pytest.mark.parametrize(
    "layer",
    [
        tf_op("math.multiply"),
        tf_op("__operators__.add"),
        tf_op("math.reduce_sum"),
        tf_op("cast"),
        tf_op("nn.softmax"),
        tf_op("__operators__.getitem", "SlicingOpLambda"),
        {**tf_op("math.add"), "module": "tf_keras.src.layers.core.tf_op_layer"},
        keras3_op("keras.src.ops.numpy", "NotEqual"),
        keras3_op("keras.src.ops.numpy", "GetItem"),
        keras3_op("keras.src.ops.core", "Cast"),
        keras3_op("keras.src.ops.nn", "Relu"),
    ],
    ids=lambda layer: (
        f"{layer.get('module', '')}:{layer['config'].get('function', layer['class_name'])}"
    ),
)
def test_allow_listed_operations_are_safe(layer: dict[str, Any]) -> None:
    assert find_unsafe_layers(functional(layer)) == []


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        (tf_op("io.write_file"), "tf.io.write_file, which kscore refuses: reads or writes files"),
        (tf_op("io.read_file"), "tf.io.read_file, which kscore refuses: reads or writes files"),
        (tf_op("io.gfile.GFile"), "reads or writes files"),
        (tf_op("summary.scalar"), "tf.summary.scalar, which kscore refuses: writes summary"),
        (tf_op("py_function"), "tf.py_function, which kscore refuses: calls Python code"),
        (tf_op("numpy_function"), "tf.numpy_function, which kscore refuses: calls Python code"),
        (tf_op("compat.v1.py_func"), "calls Python code"),
        (tf_op("print"), "tf.print, which kscore refuses: prints"),
        (tf_op("compat.v1.add"), "compatibility alias kscore does not vouch for"),
        (tf_op("strings.format"), "tf.strings.format"),
        (tf_op("os.system"), "tf.os.system, which kscore refuses: not an allow-listed"),
        (tf_op("math.multiply", "SlicingOpLambda"), "tf.math.multiply"),
        ({"class_name": "TFOpLambda", "config": {"name": "nofn"}}, "names no TensorFlow function"),
        (
            keras3_op("keras.src.ops.core", "WhileLoop"),
            "keras.src.ops.core.WhileLoop is not an allow-listed tensor operation",
        ),
        (keras3_op("keras.src.ops.image", "Resize"), "keras.src.ops.image.Resize is not"),
        (keras3_op("keras.src.ops.numpy", "Dense"), "keras.src.ops.numpy.Dense is not"),
        (
            keras3_op("keras.src.ops.numpy", "Add", registered_name="Custom>Add"),
            "registered as 'Custom>Add'",
        ),
        (keras3_op("tensorflow.io", "write_file"), "module 'tensorflow.io'"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_operations_outside_the_allow_list_are_refused_by_name(
    layer: dict[str, Any], expected: str
) -> None:
    config = functional(layer)
    with pytest.raises(UnsafeModel) as caught:
        check_config_safe(config)
    (reason,) = reasons(config).values()
    assert expected in reason
    assert caught.value.code == "unsafe_model"


def test_operation_refusals_name_the_operation_in_the_message() -> None:
    with pytest.raises(UnsafeModel) as caught:
        check_config_safe(functional(tf_op("io.write_file")))
    assert '"tf.io.write_file" (TFOpLambda: calls tf.io.write_file' in caught.value.message


def test_every_tf_operation_name_resolves_to_a_pure_tensorflow_function() -> None:
    """The names are exactly what tf_keras looks up, and each is a math/array/nn function."""
    kf._tf_keras()  # quiet logs, registers tf_keras's dispatchers
    from tensorflow.python.util.tf_export import (
        get_canonical_name_for_symbol,
        get_symbol_from_name,
    )

    from shared.keras_file.operations import TF_OPERATION_LAYERS, TF_OPERATIONS

    pure_modules = {
        "math_ops", "gen_math_ops", "array_ops", "gen_array_ops", "array_ops_stack",
        "nn_ops", "gen_nn_ops", "nn_impl", "clip_ops", "special_math_ops", "manip_ops",
        "tensor_getitem_override",
    }  # fmt: skip
    names = set(TF_OPERATIONS) | set().union(*TF_OPERATION_LAYERS.values())
    for name in sorted(names):
        function = get_symbol_from_name(name)
        assert function is not None, name
        assert function.__module__.rsplit(".", 1)[-1] in pure_modules, (name, function)
        canonical = get_canonical_name_for_symbol(function, add_prefix_to_v1_names=True)
        assert canonical in names, (name, canonical)  # an alias, with its canonical name
    for dangerous in ("io.write_file", "io.read_file", "py_function", "numpy_function", "print"):
        assert get_symbol_from_name(dangerous) is not None  # real names, refused
        assert dangerous not in names


def test_every_keras3_operation_is_an_operation_class_of_its_module() -> None:
    import importlib

    kf._keras()
    from keras.src.ops.operation import Operation

    from shared.keras_file.operations import KERAS3_OPERATIONS

    for module_name, class_names in KERAS3_OPERATIONS.items():
        module = importlib.import_module(module_name)
        for class_name in class_names:
            cls = vars(module).get(class_name)
            assert isinstance(cls, type) and issubclass(cls, Operation), (module_name, class_name)


def test_the_real_operation_files_pass_the_check(tmp_path: Path) -> None:
    from tests import keras_ops as ko

    for build in (ko.embedding_mask_lstm_keras, ko.keras3_operations, ko.tf_keras_operations):
        folder = tmp_path / build.__name__
        folder.mkdir()
        inspect(build(folder).path)
    ko_keras = tmp_path / "tf_keras_keras"
    ko_keras.mkdir()
    inspect(ko.tf_keras_operations(ko_keras, ".keras").path)


def test_keras3_operations_in_a_legacy_h5_stay_refused(tmp_path: Path) -> None:
    """Keras 3 writes operations to .h5 without their module, and cannot load them back."""
    from tests import keras_ops as ko

    path = ko.keras3_operations(tmp_path, ".h5").path
    with pytest.raises(UnsafeModel, match=r"\(GetItem\)"):
        inspect(path)


# --- collisions (issue 7, kind 6) ------------------------------------------------------------


def test_a_custom_attention_in_h5_is_refused_by_its_weights(tmp_path: Path) -> None:
    from tests import keras_ops as ko

    with pytest.raises(UnsafeModel) as caught:
        inspect(ko.custom_attention_h5(tmp_path))
    message = caught.value.message
    assert message.startswith(
        "Model config names layers that are not the built-in Keras classes they are named "
        'after: "attn" (Attention: a custom class named like the built-in Attention: its '
        "stored weights 'attn/w:0', 'attn/v:0' are not weights the built-in Attention creates)"
    ), message


def test_a_registered_custom_attention_in_keras_is_refused_by_its_origin(tmp_path: Path) -> None:
    from tests import keras_ops as ko

    with pytest.raises(UnsafeModel) as caught:
        inspect(ko.custom_attention_keras(tmp_path))
    (finding,) = caught.value.details["layers"]
    assert finding["name"] == "attn" and finding["class_name"] == "Attention"
    assert finding["reason"].startswith("a custom class named like the built-in Attention")
    assert "'my_models'" in finding["reason"]


def test_a_custom_attention_inside_a_nested_model_is_refused(tmp_path: Path) -> None:
    from tests import keras_ops as ko

    with pytest.raises(UnsafeModel) as caught:
        inspect(ko.nested_custom_attention_h5(tmp_path))
    (finding,) = caught.value.details["layers"]
    assert (finding["name"], finding["class_name"]) == ("attn", "Attention")
    assert "'attn/w:0', 'attn/v:0'" in finding["reason"]


def test_a_custom_layer_inside_a_wrapper_is_refused() -> None:
    wrapped = {
        "class_name": "TimeDistributed",
        "config": {"name": "td", "layer": {"class_name": "Dense", "config": {"name": "d"}}},
    }
    (finding,) = find_unsafe_layers(
        functional(wrapped), stored_weights={"td": ["td/kernel:0", "td/gate:0"]}
    )
    assert (finding["name"], finding["class_name"]) == ("d", "Dense")
    assert "'td/gate:0'" in finding["reason"]


def test_builtin_weights_are_not_collisions(tmp_path: Path) -> None:
    from tests import keras_ops as ko

    inspect(ko.builtin_attention_h5(tmp_path).path)
    inspect(ko.builtin_wrappers_h5(tmp_path))
    config = functional(dense("probs"))
    weights = {"probs": ["probs/kernel:0", "probs/bias:0"]}
    assert find_unsafe_layers(config, stored_weights=weights) == []
    # Keras 1 weight names carry no "/" and are not compared; unknown classes are not checked.
    assert find_unsafe_layers(config, stored_weights={"probs": ["probs_W", "probs_b"]}) == []
    odd = functional({"class_name": "Bidirectional", "config": {"name": "bi"}})
    assert find_unsafe_layers(odd, stored_weights={"bi": ["bi/forward/odd:0"]}) == []


def test_weights_a_weightless_builtin_never_has_are_a_collision() -> None:
    config = functional({"class_name": "Add", "config": {"name": "add"}})
    (finding,) = find_unsafe_layers(config, stored_weights={"add": ["add/kernel:0"]})
    assert "not weights the built-in Add creates" in finding["reason"]


def test_builtin_weights_data_is_what_keras_generates() -> None:
    from tests.builtin_weights import OUTPUT, generate

    assert json.loads(OUTPUT.read_text()) == generate()


def test_objects_hidden_in_call_arguments_are_refused() -> None:
    """Keras 3 deserializes any object in inbound_nodes like a layer: only data may be there."""
    tfsm = {
        "module": "keras.layers",
        "class_name": "TFSMLayer",
        "config": {"filepath": "/somewhere/saved_model"},
        "registered_name": None,
    }
    op = keras3_op("keras.src.ops.numpy", "Multiply")
    tensor = {"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}}
    config = functional(op)
    config["config"]["layers"][1]["inbound_nodes"] = [{"args": [tensor, tfsm], "kwargs": {}}]
    assert reasons(config) == {
        "multiply": "its call arguments hold a serialized 'TFSMLayer' object"
    }
    plain = [
        tensor,
        {"class_name": "__slice__", "config": {"start": None, "stop": 2, "step": None}},
        {"class_name": "__numpy__", "config": {"value": [1.0], "dtype": "float32"}},
    ]
    config["config"]["layers"][1]["inbound_nodes"] = [{"args": plain, "kwargs": {"k": 1}}]
    assert find_unsafe_layers(config) == []
