"""The tensor operations a model config may name: the allow-list, as data.

Keras 3 writes an operation used in a functional model (``x + y``, ``ops.sum``, the mask of
``Embedding(mask_zero=True)``) as a class from ``keras.src.ops.<module>``: ``{"module":
"keras.src.ops.numpy", "class_name": "NotEqual", "registered_name": "NotEqual"}``. Its loader
imports that module and takes the class by name, so an operation is identified by the exact
(module, class name) pair: :data:`KERAS3_OPERATIONS`.

tf.keras / tf_keras 2.x write a ``TFOpLambda`` (or ``SlicingOpLambda``) layer whose
``"function"`` is the name of a TensorFlow API symbol (``"math.multiply"``); tf_keras calls
``tensorflow.python.util.tf_export.get_symbol_from_name(function)``, an exact lookup in TF's
table of exported names (``tf.math.multiply`` is ``"math.multiply"``, ``tf.add`` is ``"add"``,
``compat.v1.*`` for the v1 API). :data:`TF_OPERATIONS` lists exact names: the canonical name
tf_keras writes and the aliases that resolve to the same function in that table
(``tests/shared/keras_file/test_safety.py`` checks every name against TensorFlow). Nothing under
``compat.v1`` is admitted: what those names resolve to is not vouched for here.

Admitted: pure tensor math (arithmetic, elementwise functions, comparisons, logic), shape and
indexing, casting, reductions and activations. Everything else is refused by name, in
particular file I/O, summaries, printing and Python calls (:data:`REFUSED_TF_PREFIXES` says
why in the refusal).
"""

from __future__ import annotations

from collections.abc import Mapping

# --- Keras 3: operation classes by module -----------------------------------------------------

#: Operation classes of Keras 3 by the module its configs name. The control-flow operations
#: (Cond, Map, Scan, WhileLoop, ForiLoop, Switch, VectorizedMap...) take Python functions and
#: are absent, as are constructors, random, linear-algebra solvers, image and signal ops.
KERAS3_OPERATIONS: Mapping[str, frozenset[str]] = {
    "keras.src.ops.numpy": frozenset(
        {
            # arithmetic and elementwise functions
            "Abs", "Absolute", "Add", "Subtract", "Multiply", "Divide", "TrueDivide",
            "FloorDivide", "DivideNoNan", "Mod", "Power", "Negative", "Reciprocal", "Sqrt",
            "Square", "Exp", "Exp2", "Expm1", "Log", "Log10", "Log1p", "Log2", "Logaddexp",
            "Sin", "Cos", "Tan", "Tanh", "Sinh", "Cosh", "Arcsin", "Arccos", "Arctan",
            "Arctan2", "Arcsinh", "Arccosh", "Arctanh", "Sign", "Floor", "Ceil", "Round",
            "Trunc", "Clip", "Maximum", "Minimum", "NanToNum", "Hypot",
            # comparison and logic
            "Equal", "NotEqual", "Greater", "GreaterEqual", "Less", "LessEqual",
            "LogicalAnd", "LogicalOr", "LogicalNot", "LogicalXor", "Isfinite", "Isinf",
            "Isnan", "Where",
            # shape and indexing
            "Reshape", "Transpose", "ExpandDims", "Squeeze", "Concatenate", "Stack", "Tile",
            "Repeat", "GetItem", "Take", "TakeAlongAxis", "Flip", "Roll", "Pad",
            "BroadcastTo", "Moveaxis", "Swapaxes", "Ravel", "Split", "Tril", "Triu",
            "Diagonal", "ZerosLike", "OnesLike",
            # reductions
            "Sum", "Mean", "Max", "Min", "Amax", "Amin", "Prod", "All", "Any", "Argmax",
            "Argmin", "Std", "Var", "Cumsum", "Cumprod", "Average", "CountNonzero",
            # products
            "Matmul", "Dot", "Tensordot", "Einsum", "Outer",
        }
    ),
    "keras.src.ops.core": frozenset(
        {"Cast", "SaturateCast", "ConvertToTensor", "Slice", "StopGradient", "Unstack"}
    ),
    "keras.src.ops.nn": frozenset(
        {
            "Relu", "Relu6", "Sigmoid", "Softplus", "Softsign", "Silu", "LogSigmoid",
            "LeakyRelu", "HardSigmoid", "HardSilu", "Elu", "Selu", "Gelu", "Celu", "Glu",
            "HardTanh", "Softmax", "LogSoftmax", "OneHot", "MultiHot", "Normalize",
        }
    ),
    "keras.src.ops.math": frozenset({"Erf", "Erfc", "Logsumexp", "Rsqrt", "TopK", "InTopK"}),
}  # fmt: skip

# --- tf.keras / tf_keras 2.x: TFOpLambda functions -------------------------------------------

#: TensorFlow API names a ``TFOpLambda`` may call (its config's ``"function"``), exactly as
#: ``get_symbol_from_name`` looks them up. Aliases follow their canonical name on one line.
TF_OPERATIONS = frozenset(
    {
        # arithmetic; x + y is "__operators__.add", x == y "__operators__.eq"
        "__operators__.add", "__operators__.eq", "__operators__.ne",
        "math.add", "add", "math.subtract", "subtract", "math.multiply", "multiply",
        "math.divide", "divide", "math.truediv", "truediv", "math.floordiv",
        "math.floormod", "math.mod", "math.negative", "negative", "math.pow", "pow",
        "math.divide_no_nan", "math.multiply_no_nan", "math.add_n", "add_n",
        "math.squared_difference", "math.scalar_mul",
        # elementwise functions
        "math.abs", "abs", "math.sign", "sign", "math.square", "square", "math.sqrt", "sqrt",
        "math.rsqrt", "math.reciprocal", "math.exp", "exp", "math.expm1", "math.log",
        "math.log1p", "math.floor", "floor", "math.ceil", "math.round", "round",
        "math.maximum", "maximum", "math.minimum", "minimum", "clip_by_value",
        "math.sin", "sin", "math.cos", "cos", "math.tan", "tan", "math.tanh", "tanh",
        "nn.tanh", "math.sinh", "sinh", "math.cosh", "cosh", "math.asin", "asin",
        "math.acos", "acos", "math.atan", "atan", "math.atan2", "atan2", "math.asinh",
        "asinh", "math.acosh", "acosh", "math.atanh", "atanh", "math.erf", "math.erfc",
        # comparison and logic
        "math.greater", "greater", "math.greater_equal", "greater_equal", "math.less",
        "less", "math.less_equal", "less_equal", "math.equal", "equal", "math.not_equal",
        "not_equal", "math.logical_and", "logical_and", "math.logical_or", "logical_or",
        "math.logical_not", "logical_not", "math.logical_xor", "math.is_nan",
        "math.is_inf", "math.is_finite", "where",
        # casting
        "cast", "dtypes.cast",
        # shape and indexing
        "reshape", "transpose", "linalg.matrix_transpose", "expand_dims", "squeeze",
        "concat", "stack", "unstack", "tile", "repeat", "gather", "gather_nd", "slice",
        "strided_slice", "split", "pad", "broadcast_to", "reverse", "roll", "one_hot",
        "identity", "stop_gradient", "zeros_like", "ones_like", "sequence_mask",
        # reductions
        "math.reduce_sum", "reduce_sum", "math.reduce_mean", "reduce_mean",
        "math.reduce_max", "reduce_max", "math.reduce_min", "reduce_min",
        "math.reduce_prod", "reduce_prod", "math.reduce_all", "reduce_all",
        "math.reduce_any", "reduce_any", "math.reduce_logsumexp", "reduce_logsumexp",
        "math.reduce_std", "math.reduce_variance", "math.argmax", "argmax", "math.argmin",
        "argmin", "math.cumsum", "cumsum", "math.cumprod", "math.count_nonzero",
        "math.top_k", "nn.top_k", "nn.moments",
        # products
        "linalg.matmul", "matmul", "tensordot", "linalg.tensordot", "einsum", "linalg.einsum",
        # activations
        "nn.relu", "nn.relu6", "nn.elu", "nn.selu", "nn.gelu", "nn.leaky_relu", "nn.crelu",
        "nn.silu", "nn.swish", "math.sigmoid", "sigmoid", "nn.sigmoid", "math.softplus",
        "nn.softplus", "nn.softsign", "math.softsign", "math.log_sigmoid", "nn.softmax",
        "math.softmax", "nn.log_softmax", "math.log_softmax", "nn.bias_add",
        "math.l2_normalize", "linalg.l2_normalize", "nn.l2_normalize",
    }
)  # fmt: skip

#: What each TensorFlow op-layer class may call: ``SlicingOpLambda`` only ever wraps ``x[...]``.
TF_OPERATION_LAYERS: Mapping[str, frozenset[str]] = {
    "TFOpLambda": TF_OPERATIONS,
    "SlicingOpLambda": frozenset({"__operators__.getitem"}),
}

#: Why well-known dangerous TensorFlow names are refused (the refusal quotes it); any name
#: not in the allow-list is refused whether or not it is listed here.
REFUSED_TF_PREFIXES: Mapping[str, str] = {
    "io.": "reads or writes files",
    "gfile.": "reads or writes files",
    "summary.": "writes summary files",
    "saved_model.": "reads or writes SavedModels",
    "data.": "reads data sets",
    "py_function": "calls Python code",
    "numpy_function": "calls Python code",
    "compat.v1.py_func": "calls Python code",
    "print": "prints to a stream or file",
    "compat.": "is a compatibility alias kscore does not vouch for",
    "debugging.": "prints or checks at run time",
    "strings.": "is a string operation",
    "random.": "is random",
    "raw_ops.": "is a raw TensorFlow kernel",
}
