"""Set attention blocks: self-attention and cross-attention, post-LN or pre-LN.

Each block is a residual multi-head attention (`MaskedMultiHeadAttention`)
followed by a residual position-wise `FeedForward`, with LayerNormalization
after (post-LN, the DDEQ authors' choice) or before (pre-LN) each. Key masks
are applied as in `MaskedMultiHeadAttention`: padded keys never influence
valid outputs. Long sets (self-attention over a 1,024-point cloud: a
``(64, 32, 1024, 1024)`` score tensor at batch 64) are attended without
materialising the scores, in the forward and the backward pass (see
`MaskedMultiHeadAttention.attend`).
"""

import keras

from ddeq_keras.layers._common import ConfigFieldsMixin, sublayer_options
from ddeq_keras.layers.attention import MaskedMultiHeadAttention
from ddeq_keras.layers.feedforward import FeedForward


class _BlockOptions(ConfigFieldsMixin, keras.layers.Layer):
    """Stores and serialises the hyperparameters that every attention block
    has (those of `SelfAttentionBlock`), for the blocks here and the Set
    Transformer blocks built from them."""

    config_fields = ("num_heads", "key_dim", "ff_dim", "dropout", "activation", "norm_first",
                     "epsilon", "use_bias", "kernel_initializer", "bias_initializer", "seed")

    def __init__(
        self,
        num_heads=32,
        key_dim=None,
        ff_dim=512,
        dropout=0.1,
        activation="relu",
        norm_first=False,
        epsilon=1e-5,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.key_dim = None if key_dim is None else int(key_dim)
        self.ff_dim = int(ff_dim)
        self.dropout = float(dropout)
        self.activation = keras.activations.get(activation)
        self.norm_first = bool(norm_first)
        self.epsilon = float(epsilon)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed = seed


class _AttentionBlock(_BlockOptions):
    """Shared parts of `SelfAttentionBlock` and `CrossAttentionBlock`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.supports_masking = True
        self.attention = MaskedMultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=self.key_dim,
            name="attention",
            **sublayer_options(self),
        )
        self.feedforward = FeedForward(
            hidden_units=self.ff_dim,
            rate=self.dropout,
            activation=self.activation,
            seed=self.seed,
            name="feedforward",
            **sublayer_options(self),
        )
        self.norm1 = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=self.dtype_policy, name="norm1"
        )
        self.norm2 = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=self.dtype_policy, name="norm2"
        )

    def _build_common(self, query_shape, key_value_shape):
        query_shape = tuple(query_shape)
        self.attention.build(query_shape, tuple(key_value_shape))
        self.norm1.build(query_shape)
        self.norm2.build(query_shape)
        self.feedforward.build(query_shape)

    def sample_dropout_mask(self, batch_size, training=None):
        """Draws the feed-forward dropout keep-mask once (see `FeedForward`).

        Returns:
            ``(batch_size, 1, ff_dim)`` keep-mask, or None when ``training``
            is falsy or ``dropout == 0``.
        """
        return self.feedforward.sample_dropout_mask(batch_size, training=training)

    def _residual(self, t, attend, dropout_mask, training):
        """Post-LN (default) or pre-LN residual attention + feed-forward."""
        if self.norm_first:
            t = t + attend(self.norm1(t))
            return t + self.feedforward(
                self.norm2(t), dropout_mask=dropout_mask, training=training
            )
        t = self.norm1(t + attend(t))
        return self.norm2(
            t + self.feedforward(t, dropout_mask=dropout_mask, training=training)
        )

    def compute_mask(self, inputs, mask=None):
        return mask


@keras.saving.register_keras_serializable(package="ddeq_keras")
class SelfAttentionBlock(_AttentionBlock):
    """Set self-attention block (a Set Transformer SAB / Transformer encoder layer).

    Post-LN (default, the DDEQ authors' choice)::

        t = LN1(t + MHA(t, t, t));  t = LN2(t + FF(t))

    Pre-LN (``norm_first=True``)::

        t = t + MHA(u, u, u) with u = LN1(t);  t = t + FF(LN2(t))

    ``FF`` is Dense(ff_dim, activation) -> dropout -> Dense(features). With
    128 features, 32 heads and ``ff_dim=512`` the block has 198,272
    parameters (attention 66,048 + feed-forward 131,712 + 2 x LN 256).
    Padded elements (``mask`` False) are masked out as keys; the outputs at
    padded rows are finite but meaningless. Equivariant to permutations of
    the set.

    Args:
        num_heads: attention heads.
        key_dim: head size; None uses ``features // num_heads``.
        ff_dim: hidden width of the feed-forward layer.
        dropout: dropout rate of the feed-forward hidden layer.
        activation: feed-forward hidden activation.
        norm_first: pre-LN instead of post-LN.
        epsilon: LayerNormalization epsilon (1e-5, PyTorch's default).
        use_bias: biases in all projections.
        kernel_initializer: initializer of all kernels.
        bias_initializer: initializer of all biases.
        seed: seed of the dropout seed generator.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: ``(batch, n, features)``.
        mask: boolean ``(batch, n)``, True for real elements.
        dropout_mask: feed-forward keep-mask from `sample_dropout_mask`.
        training: Keras training flag (used when ``dropout_mask`` is None).

    Example:
    >>> from ddeq_keras.layers import SelfAttentionBlock
    >>> block = SelfAttentionBlock(num_heads=2, ff_dim=16)
    >>> x = keras.random.normal((2, 50, 8))
    >>> x_mask = ops.arange(50)[None, :] < ops.array([[50], [20]])
    >>> y = ops.convert_to_numpy(block(x, mask=x_mask))
    >>> y.shape
    (2, 50, 8)
    >>> unpadded = ops.convert_to_numpy(block(x[1:, :20]))  # the second set alone
    >>> np.allclose(y[1, :20], unpadded[0], atol=1e-5)
    True
    """

    def build(self, input_shape):
        self._build_common(input_shape, input_shape)

    def call(self, inputs, mask=None, dropout_mask=None, training=None):
        def attend(u):
            return self.attention(u, u, key_mask=mask)

        return self._residual(inputs, attend, dropout_mask, training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package="ddeq_keras")
class CrossAttentionBlock(_AttentionBlock):
    """Cross-attention block: queries ``z`` attend to a context set ``x``.

    Post-LN (default, the DDEQ authors' choice)::

        t = LN1(z + MHA(z, x, x));  t = LN2(t + FF(t))

    Pre-LN (``norm_first=True``, like PyTorch's ``TransformerDecoderLayer``:
    the context is not normalised)::

        t = z + MHA(LN1(z), x, x);  t = t + FF(LN2(t))

    The key/value projections depend only on ``x``; inside an equilibrium
    solve ``x`` is fixed, so project it once with `compute_context` and pass
    the result as ``context`` at every step::

        ctx = block.compute_context(x, x_mask)          # once
        t = block(z, context=ctx, dropout_mask=keep)    # every step

    which is bit-identical to ``block(z, x, x_mask=x_mask, dropout_mask=keep)``.
    Same parameter count as `SelfAttentionBlock` when ``x`` and ``z`` have
    the same width (198,272 for 128 features). Equivariant to permutations
    of ``z``, invariant to permutations of ``x``; padded context points
    (``x_mask`` False) get zero attention weight.

    Args:
        Same as `SelfAttentionBlock`.

    Call arguments:
        inputs: queries ``z``, ``(batch, n_q, features)``.
        x: context ``(batch, n_k, x_features)``; not needed with ``context``.
        mask: boolean ``(batch, n_q)`` mask of ``z`` (propagated only: padded
            queries never influence valid ones).
        x_mask: boolean ``(batch, n_k)`` mask of ``x``; overrides the mask
            stored in ``context``.
        context: dict from `compute_context`.
        dropout_mask: feed-forward keep-mask from `sample_dropout_mask`.
        training: Keras training flag (used when ``dropout_mask`` is None).

    Example:
    >>> from ddeq_keras.layers import CrossAttentionBlock
    >>> block = CrossAttentionBlock(num_heads=2, ff_dim=16, dropout=0.1)
    >>> z, x = keras.random.normal((2, 10, 8)), keras.random.normal((2, 50, 8))
    >>> x_mask = ops.arange(50)[None, :] < ops.array([[50], [20]])
    >>> tuple(block(z, x, x_mask=x_mask).shape)   # builds the block
    (2, 10, 8)
    >>> ctx = block.compute_context(x, x_mask)    # once per forward pass
    >>> keep = block.sample_dropout_mask(2, training=True)
    >>> y1 = block(z, context=ctx, dropout_mask=keep)
    >>> y2 = block(z, x, x_mask=x_mask, dropout_mask=keep)
    >>> np.array_equal(ops.convert_to_numpy(y1), ops.convert_to_numpy(y2))
    True
    """

    def build(self, inputs_shape, x_shape=None):
        if x_shape is None:
            raise ValueError(
                f"{self.name}: build it with the shape of `x` (call it once "
                "with `x`, or call build(inputs_shape, x_shape)) before using "
                "a precomputed `context`."
            )
        self._build_common(inputs_shape, x_shape)

    def compute_context(self, x, x_mask=None):
        """Projects the context set to keys and values, once.

        Args:
            x: ``(batch, n_k, x_features)``.
            x_mask: boolean ``(batch, n_k)`` or None.

        Returns:
            dict (``"key"``, ``"value"`` and, with a mask, ``"mask"`` and
            ``"bias"``) to pass as ``context=`` to ``call``.
        """
        return self.attention.compute_context(x, key_mask=x_mask)

    def call(
        self,
        inputs,
        x=None,
        mask=None,
        x_mask=None,
        context=None,
        dropout_mask=None,
        training=None,
    ):
        if context is None:
            if x is None:
                raise ValueError("CrossAttentionBlock needs `x` or `context`.")
            context = self.compute_context(x, x_mask)
        elif x_mask is not None:
            context = self.attention.with_key_mask(context, x_mask)

        def attend(u):
            return self.attention.attend(u, context)

        return self._residual(inputs, attend, dropout_mask, training)

    def compute_output_shape(self, inputs_shape, x_shape=None):
        return tuple(inputs_shape)
