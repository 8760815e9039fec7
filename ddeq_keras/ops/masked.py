"""Masked reductions over sets.

Sets are padded to a fixed length and carry a boolean ``mask`` of shape
``(batch, n)`` (True = a real element). Every reduction here ignores padded
rows, so a result never depends on how much padding a batch has.
"""

import ml_dtypes
import numpy as np
from keras import ops


def _expand(mask, x):
    """Broadcast a ``(batch, n)`` mask against ``x`` of shape ``(batch, n, ...)``."""
    mask = ops.cast(mask, "bool")
    while len(mask.shape) < len(x.shape):
        mask = ops.expand_dims(mask, -1)
    return mask


def zero_padded(x, mask=None):
    """``x`` with the rows of padded elements set to 0.

    Args:
        x: tensor ``(batch, n, ...)``.
        mask: boolean ``(batch, n)`` or None (then ``x`` is returned as it is).

    Example:
    >>> from ddeq_keras.ops import zero_padded
    >>> y = zero_padded(ops.ones((1, 3, 2)), ops.array([[True, True, False]]))
    >>> ops.convert_to_numpy(y)[0].tolist()
    [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    """
    if mask is None:
        return x
    return ops.where(_expand(mask, x), x, ops.zeros_like(x))


def masked_sum(x, mask=None, axis=1, keepdims=False):
    """Sum of the valid elements of ``x`` along the set axis.

    Args:
        x: tensor ``(batch, n, ...)``.
        mask: boolean ``(batch, n)`` or None (all valid).
        axis: the set axis.
        keepdims: keep the reduced axis.

    Example:
    >>> from ddeq_keras.ops import masked_sum
    >>> s = masked_sum(ops.ones((2, 3, 4)), ops.array([[1, 1, 0], [1, 0, 0]], "bool"))
    >>> ops.convert_to_numpy(s).tolist()  # 2 and 1 valid rows
    [[2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]]
    """
    x = zero_padded(ops.convert_to_tensor(x), mask)
    return ops.sum(x, axis=axis, keepdims=keepdims)


def count_valid(mask, x=None, dtype="float32"):
    """Number of valid elements per sample, shape ``(batch,)``, as ``dtype``."""
    if mask is None:
        return ops.cast(ops.full((ops.shape(x)[0],), ops.shape(x)[1]), dtype)
    return ops.sum(ops.cast(mask, dtype), axis=1)


def masked_mean(x, mask=None, axis=1, keepdims=False):
    """Mean of the valid elements of ``x`` along the set axis.

    A sample without valid elements gives 0 (never NaN).
    """
    x = ops.convert_to_tensor(x)
    if mask is None:
        return ops.mean(x, axis=axis, keepdims=keepdims)
    total = masked_sum(x, mask, axis=axis, keepdims=keepdims)
    n = ops.cast(ops.sum(ops.cast(mask, "int32"), axis=1), x.dtype)
    n = ops.maximum(n, ops.ones_like(n))
    shape = [ops.shape(n)[0]] + [1] * (len(total.shape) - 1)
    return total / ops.reshape(n, shape)


def masked_max(x, mask=None, axis=1, keepdims=False):
    """Maximum over the valid elements of ``x`` along the set axis.

    A sample without valid elements gives the dtype's lowest finite value
    (float types, bfloat16 included, and integer types).
    """
    x = ops.convert_to_tensor(x)
    if mask is not None:
        lowest = ops.full_like(x, lowest_finite(ops.dtype(x)))
        x = ops.where(_expand(mask, x), x, lowest)
    return ops.max(x, axis=axis, keepdims=keepdims)


def masked_std(x, mask=None, axis=1, keepdims=False, epsilon=0.0):
    """Per-feature standard deviation over the valid elements (population)."""
    x = ops.convert_to_tensor(x)
    mean = masked_mean(x, mask, axis=axis, keepdims=True)
    var = masked_mean(ops.square(x - mean), mask, axis=axis, keepdims=keepdims)
    return ops.sqrt(var + epsilon)


def lowest_finite(dtype):
    """The lowest finite value of ``dtype``: the fill value of padded elements
    (in `masked_max`, and the logit of padded keys in attention).

    ``ml_dtypes.finfo`` knows bfloat16 (and the float8 types) by name, which
    ``numpy.finfo`` does only once ml_dtypes has registered them; integer
    types take their own minimum, which no float fill value can express.
    """
    if "int" in dtype:
        return int(np.iinfo(dtype).min)
    if "float" in dtype:
        return float(ml_dtypes.finfo(dtype).min)
    raise ValueError(f"masked_max needs a float or integer tensor; got dtype {dtype}.")
