"""The multi-head attention core of the set attention blocks, with key masks.

Masks are explicit booleans (``True`` = a real element) applied to the
attention *keys*: a padded key gets exactly zero attention weight and its
value row is zeroed, so the outputs of valid queries never depend on padding.
Outputs at padded query rows are finite but otherwise meaningless. The blocks
built on it are in `attention_blocks` (self / cross attention) and
`set_transformer` (ISAB, PMA).

`MaskedMultiHeadAttention` has the weight layout and the parameter count of
`keras.layers.MultiHeadAttention` (66,048 for 128 features and 32 heads of
size 4, the same as PyTorch's ``nn.MultiheadAttention(128, 32)``) and splits
its work in two, so that the key/value projections of a context that stays
fixed during an equilibrium solve are computed once:

    context = layer.compute_context(x, x_mask)   # once per forward pass
    out = layer.attend(z, context)               # every flow step

``call`` is exactly ``attend(query, compute_context(...))``, so both paths give
bit-identical results.

Long inputs: when the ``(heads, n_q, n_k)`` scores of one sample exceed
`ddeq_keras.ops.attention.FULL_SCORES_MAX_ELEMENTS`, `attend` never
materialises them (`ddeq_keras.ops.attention.memory_efficient_attention`:
PyTorch's fused kernel, elsewhere blocks of queries with a recomputing
backward pass), so self-attention over a 1,024-point cloud at batch 64 does
not need its 8 GiB ``(64, 32, 1024, 1024)`` score tensor. Same results to
float32 rounding, padded keys still get exactly zero weight. Short inputs
(a classifier's particles) keep the plain path (attention marked
``tight_memory`` leaves it from 2^20 scores); so does any call with an
``attention_mask`` or ``return_attention_scores=True``. JAX and PyTorch switch
earlier (already MNIST's 351 points), where it is faster; and on JAX attention of more than `ddeq_keras.ops.attention.SLICED_MIN_ELEMENTS`
scores per sample whose (sample, head) slices are small (MNIST's 351 x 351)
takes `ddeq_keras.ops.attention.sliced_attention` when its batch size is static:
see `ddeq_keras.backend.attention_policy`.
"""

import math

import keras
from keras import ops

from ddeq_keras.layers._common import ConfigFieldsMixin, clone_initializer
from ddeq_keras.ops import zero_padded
from ddeq_keras.ops.attention import (
    attention_path,
    memory_efficient_attention,
    sliced_attention,
)
from ddeq_keras.ops.masked import lowest_finite


def _mask_value(dtype):
    """The logit of a masked key: the lowest finite value of ``dtype``.

    Not a merely "large" negative number such as -1e9: real scores can be
    more negative than that (points ~1e10 from the origin give scores of
    ~-1e19, found by the property tests), and a padded key with a higher logit
    than every real key would take all the weight. Nothing finite is below the
    lowest value; after the softmax's max subtraction it underflows to weight
    0 (or overflows to -inf, also weight 0).
    """
    return lowest_finite(keras.backend.standardize_dtype(dtype))


def attention_mask_from_key_mask(key_mask, query_length=None):
    """Builds an attention mask from a key mask.

    Args:
        key_mask: boolean ``(batch, n_k)``, True for real keys.
        query_length: number of queries ``n_q``; None gives a mask that
            broadcasts over queries.

    Returns:
        boolean ``(batch, n_q, n_k)`` (or ``(batch, 1, n_k)``): query ``i`` may
        attend to key ``j`` iff key ``j`` is real.

    Example:
    >>> from ddeq_keras.layers import attention_mask_from_key_mask
    >>> m = attention_mask_from_key_mask(ops.array([[True, False]]), 3)
    >>> tuple(m.shape), ops.convert_to_numpy(m)[0].tolist()
    ((1, 3, 2), [[True, False], [True, False], [True, False]])
    """
    mask = ops.expand_dims(ops.cast(key_mask, "bool"), 1)
    if query_length is not None:
        mask = ops.repeat(mask, query_length, axis=1)
    return mask


@keras.saving.register_keras_serializable(package="ddeq_keras")
class MaskedMultiHeadAttention(ConfigFieldsMixin, keras.layers.Layer):
    """Multi-head attention with key masks and a reusable key/value context.

    Same computation and weight layout as `keras.layers.MultiHeadAttention`
    (query/key/value kernels ``(features, heads, head_dim)`` with biases
    ``(heads, head_dim)``, output kernel ``(heads, head_dim, out)``), without
    attention dropout, with key masks always applied, and with the key/value
    projections exposed as `compute_context` so a fixed context can be
    projected once and attended to many times (`attend`).

    Args:
        num_heads: number of heads.
        key_dim: size of each query/key head; None uses
            ``query_features // num_heads``.
        value_dim: size of each value head; None uses ``key_dim``.
        output_dim: output features; None uses the query features.
        use_bias: whether the projections have biases.
        kernel_initializer: initializer of the projection kernels.
        bias_initializer: initializer of the projection biases.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        query: ``(batch, n_q, query_features)``.
        value: ``(batch, n_k, value_features)``.
        key: ``(batch, n_k, key_features)``; None uses ``value``.
        key_mask: boolean ``(batch, n_k)``; False keys get zero weight.
        attention_mask: optional boolean ``(batch, n_q, n_k)``, combined with
            ``key_mask`` by logical and.
        return_attention_scores: also return the attention weights
            ``(batch, heads, n_q, n_k)``.

    Example:
    >>> from ddeq_keras.layers import MaskedMultiHeadAttention
    >>> mha = MaskedMultiHeadAttention(num_heads=2, key_dim=4)
    >>> z, x = keras.random.normal((2, 10, 8)), keras.random.normal((2, 50, 8))
    >>> x_mask = ops.arange(50)[None, :] < ops.array([[50], [20]])
    >>> y = mha(z, x, key_mask=x_mask)
    >>> tuple(y.shape)
    (2, 10, 8)
    >>> ctx = mha.compute_context(x, key_mask=x_mask)  # project x once
    >>> y2 = mha.attend(z, ctx)                        # attend many times
    >>> np.allclose(ops.convert_to_numpy(y2), ops.convert_to_numpy(y), atol=1e-6)
    True
    """

    config_fields = ("num_heads", "key_dim", "value_dim", "output_dim", "use_bias",
                     "kernel_initializer", "bias_initializer")

    def __init__(
        self,
        num_heads=32,
        key_dim=None,
        value_dim=None,
        output_dim=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.key_dim = None if key_dim is None else int(key_dim)
        self.value_dim = None if value_dim is None else int(value_dim)
        self.output_dim = None if output_dim is None else int(output_dim)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        # Set by the DDEQ models on attention whose activations must stay
        # small (not a config argument: where a layer sits decides it, see
        # `ddeq_keras.ops.attention.TIGHT_FULL_SCORES_MAX_ELEMENTS`).
        self.tight_memory = False
        self.query_dense = None
        self.key_dense = None
        self.value_dense = None
        self.output_dense = None

    def _dense(self, equation, output_shape, bias_axes, name):
        layer = keras.layers.EinsumDense(
            equation,
            output_shape=output_shape,
            bias_axes=bias_axes if self.use_bias else None,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )
        # Per-element projections: a set mask on the input stays valid (and
        # Keras does not warn about dropping it in functional models).
        layer.supports_masking = True
        return layer

    def build(self, query_shape, value_shape, key_shape=None):
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        features = query_shape[-1]
        key_dim = self.key_dim
        if key_dim is None:
            if features % self.num_heads:
                raise ValueError(
                    f"query features ({features}) are not divisible by "
                    f"num_heads ({self.num_heads}); pass key_dim."
                )
            key_dim = features // self.num_heads
        value_dim = self.value_dim or key_dim
        output_dim = self.output_dim or features
        self._head_dim = key_dim
        heads = self.num_heads
        self.query_dense = self._dense(
            "abc,cde->abde", (None, heads, key_dim), "de", "query"
        )
        self.query_dense.build(query_shape)
        self.key_dense = self._dense("abc,cde->abde", (None, heads, key_dim), "de", "key")
        self.key_dense.build(key_shape)
        self.value_dense = self._dense(
            "abc,cde->abde", (None, heads, value_dim), "de", "value"
        )
        self.value_dense.build(value_shape)
        self.output_dense = self._dense(
            "abcd,cde->abe", (None, output_dim), "e", "attention_output"
        )
        self.output_dense.build(query_shape[:-1] + (heads, value_dim))

    def compute_context(self, value, key=None, key_mask=None):
        """Projects keys and values once (they may be reused by `attend`).

        Args:
            value: ``(batch, n_k, value_features)``.
            key: ``(batch, n_k, key_features)``; None uses ``value``.
            key_mask: boolean ``(batch, n_k)`` or None.

        Returns:
            dict with ``"key"`` ``(batch, heads, key_dim, n_k)`` and ``"value"``
            ``(batch, heads, n_k, value_dim)`` (rows of padded keys zeroed in
            both),
            and, when ``key_mask`` is given, ``"mask"`` and ``"bias"``
            (``(batch, 1, 1, n_k)``: 0 for real keys, a large negative logit
            for padding). Head-major layouts, so that every `attend` is two
            plain batched matrix products with no transposes of the context:
            on CPU, XLA runs the attention of a flow step about 4x faster
            this way than from the ``(batch, n_k, heads, dim)`` layout.
        """
        if not self.built:
            raise ValueError(
                f"{self.name} must be built (call it once or call build()) "
                "before compute_context()."
            )
        key = value if key is None else key
        k = self.key_dense(key)
        v = self.value_dense(value)
        # Zeroed rows: garbage (even NaN) in padding never reaches a score.
        k, v = zero_padded(k, key_mask), zero_padded(v, key_mask)
        context = {"key": ops.transpose(k, (0, 2, 3, 1)), "value": ops.transpose(v, (0, 2, 1, 3))}
        if key_mask is not None:
            context = self.with_key_mask(context, key_mask)
        return context

    @staticmethod
    def with_key_mask(context, key_mask):
        """``context`` with the key mask ``(batch, n_k)`` (and its bias) set."""
        key_mask = ops.cast(key_mask, "bool")
        dtype = context["key"].dtype
        bias = ops.where(key_mask, ops.zeros((), dtype), ops.cast(_mask_value(dtype), dtype))
        return dict(context, mask=key_mask, bias=ops.expand_dims(ops.expand_dims(bias, 1), 1))

    def attend(self, query, context, attention_mask=None, return_attention_scores=False):
        """Attends from ``query`` to a context made by `compute_context`.

        Args:
            query: ``(batch, n_q, query_features)``.
            context: dict from `compute_context` (its ``"mask"``, if any, is the
                key mask).
            attention_mask: optional boolean ``(batch, n_q, n_k)``.
            return_attention_scores: also return the attention weights.

        Returns:
            ``(batch, n_q, output_dim)`` (and the weights
            ``(batch, heads, n_q, n_k)``).

        Long inputs without ``attention_mask`` and ``return_attention_scores``
        take the memory-efficient path (see the module docstring).
        """
        q = self.query_dense(query)
        q = q * ops.cast(1.0 / math.sqrt(self._head_dim), q.dtype)
        q = ops.transpose(q, (0, 2, 1, 3))  # (a, h, q, d)
        path = "plain"
        if attention_mask is None and not return_attention_scores:
            path = attention_path(*q.shape[:3], context["key"].shape[-1],
                                  tight_memory=self.tight_memory)
        if path != "plain":
            attend = sliced_attention if path == "sliced" else memory_efficient_attention
            out = attend(q, context["key"], context["value"], context.get("bias"))
            return self.output_dense(out)
        scores = ops.matmul(q, context["key"])  # (a, h, q, k)
        if attention_mask is None:
            # Adding the bias equals masking: padded keys have zeroed rows, so
            # their score is exactly 0 and their logit exactly the fill value,
            # below every real logit: weight 0 after the softmax. One add is
            # cheaper than a select.
            if "bias" in context:
                scores = scores + context["bias"]
        else:
            mask = ops.expand_dims(ops.cast(attention_mask, "bool"), 1)
            if "mask" in context:
                key_mask = ops.expand_dims(ops.expand_dims(context["mask"], 1), 1)
                mask = ops.logical_and(mask, key_mask)
            fill = ops.cast(_mask_value(scores.dtype), scores.dtype)
            scores = ops.where(mask, scores, fill)
        weights = ops.softmax(scores, axis=-1)
        out = ops.transpose(ops.matmul(weights, context["value"]), (0, 2, 1, 3))  # (a, q, h, d)
        out = self.output_dense(out)
        if return_attention_scores:
            return out, weights
        return out

    def call(
        self,
        query,
        value,
        key=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
    ):
        context = self.compute_context(value, key=key, key_mask=key_mask)
        return self.attend(
            query,
            context,
            attention_mask=attention_mask,
            return_attention_scores=return_attention_scores,
        )

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        return tuple(query_shape)[:-1] + (self.output_dim or query_shape[-1],)
