"""Point-wise (per set element) MLP with masking."""

import keras
from keras import ops

from ddeq_keras.layers.feedforward import _clone_initializer, _serialize


@keras.saving.register_keras_serializable(package="ddeq_keras")
class PointwiseMLP(keras.layers.Layer):
    """``Dense(hidden_units, activation) -> Dense(output_units)`` on every point.

    The same MLP is applied to each element of a set, so the layer is
    permutation-equivariant. With a ``mask``, the outputs at padded rows are
    set to 0 (valid rows never depend on padded ones anyway). In the DDEQ
    network: ``MLP_z`` 128 -> 16 -> 16 (2,336 parameters), ``MLP_x``
    ``d_x`` -> 16 -> 16, and 16 -> 128 -> 128 (18,688).

    Args:
        hidden_units: width of the hidden layer.
        output_units: width of the output.
        activation: hidden activation.
        use_bias: biases in both layers.
        kernel_initializer: initializer of both kernels.
        bias_initializer: initializer of both biases.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: ``(batch, n, features)``.
        mask: boolean ``(batch, n)``, True for real points (propagated).

    Example:
    >>> mlp = PointwiseMLP(16, 16)
    >>> y = mlp(keras.random.normal((2, 10, 128)))  # (2, 10, 16)
    """

    def __init__(
        self,
        hidden_units,
        output_units,
        activation="relu",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_units = int(hidden_units)
        self.output_units = int(output_units)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        common = dict(
            use_bias=use_bias, dtype=self.dtype_policy
        )
        self.hidden_dense = keras.layers.Dense(
            self.hidden_units,
            activation=self.activation,
            kernel_initializer=_clone_initializer(self.kernel_initializer),
            bias_initializer=_clone_initializer(self.bias_initializer),
            name="hidden",
            **common,
        )
        self.output_dense = keras.layers.Dense(
            self.output_units,
            kernel_initializer=_clone_initializer(self.kernel_initializer),
            bias_initializer=_clone_initializer(self.bias_initializer),
            name="output",
            **common,
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.hidden_dense.build(input_shape)
        self.output_dense.build(input_shape[:-1] + (self.hidden_units,))

    def call(self, inputs, mask=None):
        y = self.output_dense(self.hidden_dense(inputs))
        if mask is not None:
            keep = ops.expand_dims(ops.cast(mask, "bool"), -1)
            y = ops.where(keep, y, ops.zeros_like(y))
        return y

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.output_units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_units": self.hidden_units,
                "output_units": self.output_units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": _serialize(self.kernel_initializer),
                "bias_initializer": _serialize(self.bias_initializer),
            }
        )
        return config
