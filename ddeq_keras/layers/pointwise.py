"""Point-wise (per set element) MLP with masking."""

import keras

from ddeq_keras.layers._common import ConfigFieldsMixin, dense
from ddeq_keras.ops import zero_padded


@keras.saving.register_keras_serializable(package="ddeq_keras")
class PointwiseMLP(ConfigFieldsMixin, keras.layers.Layer):
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
    >>> from ddeq_keras.layers import PointwiseMLP
    >>> mlp = PointwiseMLP(16, 16)
    >>> mask = ops.arange(10)[None, :] < ops.array([[10], [4]])
    >>> y = ops.convert_to_numpy(mlp(keras.random.normal((2, 10, 128)), mask=mask))
    >>> y.shape, mlp.count_params(), bool((y[1, 4:] == 0).all())  # padded rows are 0
    ((2, 10, 16), 2336, True)
    """

    config_fields = ("hidden_units", "output_units", "activation", "use_bias",
                     "kernel_initializer", "bias_initializer")

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
        self.hidden_dense = dense(self, self.hidden_units, self.activation, "hidden")
        self.output_dense = dense(self, self.output_units, None, "output")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.hidden_dense.build(input_shape)
        self.output_dense.build(input_shape[:-1] + (self.hidden_units,))

    def call(self, inputs, mask=None):
        return zero_padded(self.output_dense(self.hidden_dense(inputs)), mask)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.output_units,)
