"""Set Transformer blocks (Lee et al., 2019): ISAB and PMA, masked.

Both are built from `CrossAttentionBlock` (the paper's MAB) and take the
hyperparameters of the attention blocks; padded elements are masked out as
attention keys, so valid outputs never depend on padding.
"""

import keras
from keras import ops

from ddeq_keras.layers._common import clone_initializer, dense, sublayer_options
from ddeq_keras.layers.attention_blocks import CrossAttentionBlock, _BlockOptions


def _broadcast_parameter(param, like):
    """Repeats a ``(m, d)`` parameter over the batch of ``like``."""
    param = ops.expand_dims(param, 0)
    batch = ops.shape(like)[0]
    return ops.broadcast_to(param, (batch,) + tuple(param.shape[1:]))


class _SetTransformerBlock(_BlockOptions):
    """Shared constructor and config of `ISAB` and `PMA` (``dropout`` defaults
    to 0 here, as in the Set Transformer)."""

    def __init__(self, dropout=0.0, **kwargs):
        super().__init__(dropout=dropout, **kwargs)

    def _block(self, name, seed_offset):
        """A `CrossAttentionBlock` with this block's hyperparameters."""
        options = {key: getattr(self, key) for key in _BlockOptions.config_fields}
        options.update(sublayer_options(self), name=name)
        if self.seed is not None:
            options["seed"] = self.seed + seed_offset
        return CrossAttentionBlock(**options)

    def _learned_set(self, size, features, name):
        """``size`` learned vectors (inducing points, seeds), initialised by
        ``kernel_initializer``."""
        return self.add_weight(
            shape=(size, features),
            initializer=clone_initializer(self.kernel_initializer),
            name=name,
        )


@keras.saving.register_keras_serializable(package="ddeq_keras")
class ISAB(_SetTransformerBlock):
    """Induced set attention block (Lee et al., 2019, "Set Transformer").

    ``ISAB_m(X) = MAB(X, H)`` with ``H = MAB(I, X)``, where ``I`` are ``m``
    learned inducing points and ``MAB(A, B)`` is a `CrossAttentionBlock`
    (queries ``A``, keys/values ``B``). Cost is linear in the set size.
    Padded elements of ``X`` are masked out as keys of the first block, so
    ``H`` and the outputs at valid rows do not depend on padding. Equivariant
    to permutations of the set.

    Args:
        num_inducing_points: ``m``.
        num_heads, key_dim, ff_dim, dropout, activation, norm_first, epsilon,
        use_bias, kernel_initializer, bias_initializer, seed: as in
            `CrossAttentionBlock` (``dropout`` defaults to 0 here, as in the
            Set Transformer). ``kernel_initializer`` also initialises ``I``.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: ``(batch, n, features)``.
        mask: boolean ``(batch, n)``.
        training: Keras training flag.

    Example:
    >>> from ddeq_keras.layers import ISAB
    >>> isab = ISAB(num_inducing_points=4, num_heads=2, ff_dim=16)
    >>> tuple(isab(keras.random.normal((2, 50, 8))).shape)
    (2, 50, 8)
    """

    config_fields = _SetTransformerBlock.config_fields + ("num_inducing_points",)

    def __init__(self, num_inducing_points=16, **kwargs):
        super().__init__(**kwargs)
        self.num_inducing_points = int(num_inducing_points)
        self.supports_masking = True
        self.induce = self._block("induce", 0)
        self.output_block = self._block("output_block", 1)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        features = input_shape[-1]
        self.inducing_points = self._learned_set(
            self.num_inducing_points, features, "inducing_points"
        )
        induced_shape = (input_shape[0], self.num_inducing_points, features)
        self.induce.build(induced_shape, input_shape)
        self.output_block.build(input_shape, induced_shape)

    def call(self, inputs, mask=None, training=None):
        inducing = _broadcast_parameter(self.inducing_points, inputs)
        h = self.induce(inducing, inputs, x_mask=mask, training=training)
        return self.output_block(inputs, h, training=training)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)



@keras.saving.register_keras_serializable(package="ddeq_keras")
class PMA(_SetTransformerBlock):
    """Pooling by multi-head attention (Lee et al., 2019, "Set Transformer").

    ``PMA_k(Z) = MAB(S, rFF(Z))`` with ``k`` learned seed vectors ``S``; here
    ``rFF`` is a row-wise ``Dense(features, activation)`` (``use_rff=False``
    drops it, as the Set Transformer's reference code does) and ``MAB`` a
    `CrossAttentionBlock`. Padded elements are masked out as keys, so the
    output does not depend on padding. Invariant to permutations of the set.

    Args:
        num_seeds: ``k``, the number of output vectors.
        use_rff: apply the row-wise feed-forward layer before attention.
        num_heads, key_dim, ff_dim, dropout, activation, norm_first, epsilon,
        use_bias, kernel_initializer, bias_initializer, seed: as in
            `CrossAttentionBlock` (``dropout`` defaults to 0 here).
            ``kernel_initializer`` also initialises ``S``.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: ``(batch, n, features)``.
        mask: boolean ``(batch, n)``.
        training: Keras training flag.

    Returns:
        ``(batch, num_seeds, features)`` (no mask).

    Example:
    >>> from ddeq_keras.layers import PMA
    >>> pma = PMA(num_seeds=1, num_heads=2, ff_dim=16)
    >>> x = keras.random.normal((2, 50, 8))
    >>> y = ops.convert_to_numpy(pma(x))
    >>> y.shape
    (2, 1, 8)
    >>> np.allclose(ops.convert_to_numpy(pma(x[:, ::-1])), y, atol=1e-5)  # order-free
    True
    """

    config_fields = _SetTransformerBlock.config_fields + ("num_seeds", "use_rff")

    def __init__(self, num_seeds=1, use_rff=True, **kwargs):
        super().__init__(**kwargs)
        self.num_seeds = int(num_seeds)
        self.use_rff = bool(use_rff)
        self.rff = None
        self.pool = self._block("pool", 0)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        features = input_shape[-1]
        self.seeds = self._learned_set(self.num_seeds, features, "seeds")
        if self.use_rff:
            self.rff = dense(self, features, self.activation, "rff")
            self.rff.build(input_shape)
        self.pool.build((input_shape[0], self.num_seeds, features), input_shape)

    def call(self, inputs, mask=None, training=None):
        x = self.rff(inputs) if self.use_rff else inputs
        seeds = _broadcast_parameter(self.seeds, inputs)
        return self.pool(seeds, x, x_mask=mask, training=training)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_seeds, input_shape[-1])
