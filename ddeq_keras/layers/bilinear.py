"""The DDEQ equivariant bilinear layer (equivariant in z, invariant in x)."""

import keras
from keras import ops

from ddeq_keras.layers._common import ConfigFieldsMixin, clone_initializer
from ddeq_keras.ops import masked_sum, zero_padded


@keras.saving.register_keras_serializable(package="ddeq_keras")
class EquivariantBilinear(ConfigFieldsMixin, keras.layers.Layer):
    """Bilinear interaction of every particle with the sum of a context set.

    ``B_i = act(LN(sum_{p,d} z_ip alpha_phd s_d + b_h))`` with
    ``s = sum_j x_j`` a masked *sum* (not a mean) over the valid points of
    ``x``. Each particle is transformed independently given ``s``, so the
    layer is equivariant to permutations of ``z`` and invariant to
    permutations (and padding) of ``x``. ``alpha`` has shape
    ``(z_features, units, x_features)``; ``alpha`` and ``b`` are initialised
    N(0, 1) as in the method. With 16/16/16: 4,096 + 16 + LN 32 = 4,144
    parameters.

    ``s`` depends only on ``x``, which is fixed during an equilibrium solve:
    compute it once with `compute_context` and pass ``s=`` at every step
    (bit-identical to passing ``x``).

    Args:
        units: output features ``h``.
        activation: applied after the LayerNormalization (ReLU in the method).
        epsilon: LayerNormalization epsilon (1e-5, PyTorch's default).
        alpha_initializer: initializer of ``alpha``.
        bias_initializer: initializer of ``b``.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: particles ``z``, ``(batch, n, z_features)``.
        s: precomputed masked sum ``(batch, x_features)`` (from
            `compute_context`); or give ``x``.
        x: context points ``(batch, m, x_features)``.
        mask: boolean ``(batch, n)``; outputs at padded particles are set to 0.
        x_mask: boolean ``(batch, m)`` mask of ``x``.

    Example:
    >>> from ddeq_keras.layers import EquivariantBilinear
    >>> layer = EquivariantBilinear(16)
    >>> z, x = keras.random.normal((2, 10, 16)), keras.random.normal((2, 50, 16))
    >>> y = layer(z, x=x)
    >>> tuple(y.shape), layer.count_params()
    ((2, 10, 16), 4144)
    >>> s = layer.compute_context(x)        # once per forward pass
    >>> np.array_equal(ops.convert_to_numpy(layer(z, s=s)), ops.convert_to_numpy(y))
    True
    """

    config_fields = ("units", "activation", "epsilon", "alpha_initializer", "bias_initializer")

    def __init__(
        self,
        units=16,
        activation="relu",
        epsilon=1e-5,
        alpha_initializer=None,
        bias_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.epsilon = float(epsilon)
        normal = {"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 1.0}}
        self.alpha_initializer = keras.initializers.get(alpha_initializer or normal)
        self.bias_initializer = keras.initializers.get(bias_initializer or normal)
        self.supports_masking = True
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=self.dtype_policy, name="norm"
        )

    def build(self, inputs_shape, s_shape=None, x_shape=None):
        context_shape = s_shape if s_shape is not None else x_shape
        if context_shape is None:
            raise ValueError(f"{self.name}: build it with `s_shape` or `x_shape`.")
        self.alpha = self.add_weight(
            shape=(inputs_shape[-1], self.units, context_shape[-1]),
            initializer=clone_initializer(self.alpha_initializer),
            name="alpha",
        )
        self.bias = self.add_weight(
            shape=(self.units,),
            initializer=clone_initializer(self.bias_initializer),
            name="bias",
        )
        self.norm.build(tuple(inputs_shape)[:-1] + (self.units,))

    @staticmethod
    def compute_context(x, x_mask=None):
        """The masked sum ``s = sum_j x_j`` over valid points, ``(batch, features)``."""
        return masked_sum(x, x_mask, axis=1)

    def call(self, inputs, s=None, x=None, mask=None, x_mask=None):
        if s is None:
            if x is None:
                raise ValueError("EquivariantBilinear needs `s` or `x`.")
            s = self.compute_context(x, x_mask)
        # Contract alpha with s first: one (z_features, units) matrix per set.
        weights = ops.einsum("phd,bd->bph", self.alpha, s)
        y = ops.einsum("bnp,bph->bnh", inputs, weights) + self.bias
        return zero_padded(self.activation(self.norm(y)), mask)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, inputs_shape, s_shape=None, x_shape=None):
        return tuple(inputs_shape)[:-1] + (self.units,)
