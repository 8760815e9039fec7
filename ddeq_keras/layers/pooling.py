"""Masked pooling over the set axis (axis 1)."""

import keras

from ddeq_keras.layers._common import ConfigFieldsMixin
from ddeq_keras.ops import masked_max, masked_mean


class _MaskedPooling(ConfigFieldsMixin, keras.layers.Layer):
    """A masked reduction ``_reduce(inputs, mask, axis=1, keepdims)`` as a layer."""

    config_fields = ("keepdims",)
    _reduce = None  # set by the subclasses: a function of `ddeq_keras.ops`

    def __init__(self, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = bool(keepdims)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        return self._reduce(inputs, mask, axis=1, keepdims=self.keepdims)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if self.keepdims:
            return (input_shape[0], 1) + input_shape[2:]
        return (input_shape[0],) + input_shape[2:]


@keras.saving.register_keras_serializable(package="ddeq_keras")
class MaskedMaxPooling(_MaskedPooling):
    """Maximum over the valid elements of each set (the set axis is 1).

    Permutation-invariant; padded elements (``mask`` False) are ignored. A
    set without valid elements gives the dtype's lowest finite value. Used by
    the DDEQ classification head (max over the particles).

    Args:
        keepdims: keep the set axis (length 1).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: ``(batch, n, features)``.
        mask: boolean ``(batch, n)``, True for real elements.

    Example:
    >>> from ddeq_keras.layers import MaskedMaxPooling
    >>> x = ops.array([[[1.0], [5.0], [3.0]], [[2.0], [7.0], [9.0]]])
    >>> mask = ops.array([[True, True, True], [True, True, False]])  # 9.0 is padding
    >>> ops.convert_to_numpy(MaskedMaxPooling()(x, mask=mask)).tolist()
    [[5.0], [7.0]]
    """

    _reduce = staticmethod(masked_max)


@keras.saving.register_keras_serializable(package="ddeq_keras")
class MaskedMeanPooling(_MaskedPooling):
    """Mean over the valid elements of each set (the set axis is 1).

    Permutation-invariant; padded elements are ignored. A set without valid
    elements gives 0. Arguments and call arguments as `MaskedMaxPooling`.

    Example:
    >>> from ddeq_keras.layers import MaskedMeanPooling
    >>> x = ops.array([[[1.0], [5.0], [3.0]], [[2.0], [7.0], [9.0]]])
    >>> mask = ops.array([[True, True, True], [True, True, False]])  # 9.0 is padding
    >>> ops.convert_to_numpy(MaskedMeanPooling(keepdims=True)(x, mask=mask)).tolist()
    [[[3.0]], [[4.5]]]
    """

    _reduce = staticmethod(masked_mean)
