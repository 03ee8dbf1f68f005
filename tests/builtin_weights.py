"""Generate ``shared/keras_file/builtin_weights.json``: the weight names each built-in Keras
layer class can create, as tf_keras 2.x and Keras 3 name them.

Run ``PYTHONPATH=. python -m tests.builtin_weights`` after upgrading keras or tf_keras;
``tests/shared/keras_file/test_safety.py`` checks that the committed file still equals what
this module generates. Each class is built in each Keras with every variant below (the
arguments that add weights), in Keras 3 also with LoRA and each quantization mode the class
supports, and the last path component of every weight name is kept
(``attn/scale:0`` -> ``scale``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.keras_files import _keras, _tf_keras

OUTPUT = Path(__file__).resolve().parents[1] / "shared" / "keras_file" / "builtin_weights.json"

# class name -> variants: (constructor kwargs, input shapes without the batch dimension;
# several shapes for layers called on a list).
VARIANTS: dict[str, list[tuple[dict[str, Any], list[tuple[int, ...]]]]] = {
    "Dense": [({"units": 2}, [(3,)])],
    "EinsumDense": [({"equation": "ab,bc->ac", "output_shape": 2}, [(3,)])],
    "Embedding": [({"input_dim": 5, "output_dim": 2}, [(3,)])],
    "Conv1D": [({"filters": 2, "kernel_size": 2}, [(5, 3)])],
    "Conv2D": [({"filters": 2, "kernel_size": 2}, [(5, 5, 3)])],
    "Conv3D": [({"filters": 2, "kernel_size": 2}, [(4, 4, 4, 3)])],
    "Conv1DTranspose": [({"filters": 2, "kernel_size": 2}, [(5, 3)])],
    "Conv2DTranspose": [({"filters": 2, "kernel_size": 2}, [(5, 5, 3)])],
    "SeparableConv1D": [({"filters": 2, "kernel_size": 2}, [(5, 3)])],
    "SeparableConv2D": [({"filters": 2, "kernel_size": 2}, [(5, 5, 3)])],
    "DepthwiseConv2D": [({"kernel_size": 2}, [(5, 5, 3)])],
    "DepthwiseConv1D": [({"kernel_size": 2}, [(5, 3)])],
    "Conv3DTranspose": [({"filters": 2, "kernel_size": 2}, [(4, 4, 4, 3)])],
    "ConvLSTM1D": [({"filters": 2, "kernel_size": 2}, [(3, 5, 3)])],
    "ConvLSTM2D": [({"filters": 2, "kernel_size": 2}, [(3, 5, 5, 3)])],
    "LocallyConnected1D": [({"filters": 2, "kernel_size": 2}, [(5, 3)])],
    "LocallyConnected2D": [({"filters": 2, "kernel_size": 2}, [(5, 5, 3)])],
    "GroupNormalization": [({"groups": 1}, [(4, 3)])],
    "SimpleRNN": [({"units": 2}, [(4, 3)])],
    "GRU": [({"units": 2}, [(4, 3)])],
    "LSTM": [({"units": 2}, [(4, 3)])],
    "BatchNormalization": [({}, [(3,)])],
    "LayerNormalization": [({}, [(3,)])],
    "PReLU": [({}, [(3,)])],
    "Attention": [({"use_scale": True, "score_mode": "concat"}, [(4, 3), (4, 3)])],
    "AdditiveAttention": [({"use_scale": True}, [(4, 3), (4, 3)])],
    "MultiHeadAttention": [({"num_heads": 2, "key_dim": 2}, [(4, 3), (4, 3)])],
    # Layers without weights: a stored weight means the class is not the built-in one.
    "Activation": [({"activation": "relu"}, [(3,)])],
    "AveragePooling1D": [({"pool_size": 2}, [(4, 3)])],
    "AveragePooling2D": [({"pool_size": 2}, [(4, 4, 3)])],
    "Cropping1D": [({}, [(4, 3)])],
    "Cropping2D": [({}, [(4, 4, 3)])],
    "ELU": [({}, [(3,)])],
    "GaussianDropout": [({"rate": 0.5}, [(3,)])],
    "GaussianNoise": [({"stddev": 0.1}, [(3,)])],
    "GlobalAveragePooling2D": [({}, [(4, 4, 3)])],
    "GlobalMaxPooling2D": [({}, [(4, 4, 3)])],
    "SpatialDropout1D": [({"rate": 0.5}, [(4, 3)])],
    "ThresholdedReLU": [({}, [(3,)])],
    "UnitNormalization": [({}, [(3,)])],
    "UpSampling1D": [({}, [(4, 3)])],
    "UpSampling2D": [({}, [(4, 4, 3)])],
    "ZeroPadding1D": [({}, [(4, 3)])],
    "ZeroPadding2D": [({}, [(4, 4, 3)])],
    "Add": [({}, [(3,), (3,)])],
    "Average": [({}, [(3,), (3,)])],
    "Concatenate": [({}, [(3,), (3,)])],
    "Dot": [({"axes": 1}, [(3,), (3,)])],
    "Dropout": [({"rate": 0.5}, [(3,)])],
    "Flatten": [({}, [(2, 3)])],
    "GlobalAveragePooling1D": [({}, [(4, 3)])],
    "GlobalMaxPooling1D": [({}, [(4, 3)])],
    "LeakyReLU": [({}, [(3,)])],
    "Masking": [({}, [(4, 3)])],
    "MaxPooling1D": [({"pool_size": 2}, [(4, 3)])],
    "MaxPooling2D": [({"pool_size": 2}, [(4, 4, 3)])],
    "Maximum": [({}, [(3,), (3,)])],
    "Minimum": [({}, [(3,), (3,)])],
    "Multiply": [({}, [(3,), (3,)])],
    "Permute": [({"dims": (2, 1)}, [(2, 3)])],
    "ReLU": [({}, [(3,)])],
    "RepeatVector": [({"n": 2}, [(3,)])],
    "Reshape": [({"target_shape": (3, 1)}, [(3,)])],
    "Softmax": [({}, [(3,)])],
    "Subtract": [({}, [(3,), (3,)])],
}


# Keras 3 layers can also carry LoRA and quantization weights (enable_lora, quantize).
KERAS3_MODES = ("lora", "int8", "int4", "float8")


def _weight_names(keras: Any, class_name: str) -> set[str]:
    names: set[str] = set()
    if not hasattr(keras.layers, class_name):
        return names  # a class only the other Keras has (LocallyConnected2D, ThresholdedReLU)
    modes = (None, *KERAS3_MODES) if hasattr(keras, "ops") else (None,)
    for kwargs, shapes in VARIANTS[class_name]:
        for mode in modes:
            layer = _built(keras, class_name, kwargs, shapes)
            try:
                if mode == "lora":
                    layer.enable_lora(2)
                elif mode is not None:
                    layer.quantize(mode)
            except (NotImplementedError, ValueError, AttributeError):
                continue  # the class has no such mode
            for weight in layer.weights:
                # tf_keras: "lstm/lstm_cell/kernel:0"; Keras 3: path "lstm/lstm_cell/kernel".
                full = getattr(weight, "path", None) or weight.name
                names.add(full.rsplit("/", 1)[-1].split(":", 1)[0])
    return names


def _built(keras: Any, class_name: str, kwargs: dict[str, Any], shapes: list[Any]) -> Any:
    layer = getattr(keras.layers, class_name)(**kwargs)
    inputs = [keras.Input(shape) for shape in shapes]
    if class_name == "MultiHeadAttention":
        layer(*inputs)
    else:
        layer(inputs if len(inputs) > 1 else inputs[0])
    return layer


def generate() -> dict[str, Any]:
    """The data as it is committed: weight names per class, union over both Keras."""
    per_class = {
        name: sorted(_weight_names(_tf_keras(), name) | _weight_names(_keras(), name))
        for name in sorted(VARIANTS)
    }
    return {
        "_generated_by": "PYTHONPATH=. python -m tests.builtin_weights (see its docstring)",
        "weights": per_class,
    }


if __name__ == "__main__":
    OUTPUT.write_text(json.dumps(generate(), indent=1) + "\n")
    print(f"wrote {OUTPUT}")
