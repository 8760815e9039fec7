"""Scaled dot-product attention without the full score tensor.

Self-attention over a 1,024-point cloud at batch 64 with 32 heads has a
``(64, 32, 1024, 1024)`` score tensor: 8 GiB of float32, and the backward pass
of a plain softmax keeps it. `memory_efficient_attention` gives the same
result (to float32 rounding) in bounded memory:

- on PyTorch, `keras.ops.dot_product_attention` runs
  ``torch.nn.functional.scaled_dot_product_attention``, whose CPU (flash) and
  GPU kernels never store the scores, in the forward or the backward pass;
- elsewhere (JAX on CPU and TensorFlow materialise the scores inside
  `keras.ops.dot_product_attention`), `blockwise_attention`: one block of
  queries at a time, sequentially, with a custom gradient that recomputes each
  block's softmax from its log-sum-exp (the flash-attention backward) instead
  of keeping it. The peak is a few score blocks of
  ``BLOCK_SCORES_ELEMENTS`` per sample.

Layouts are head-major, those of `MaskedMultiHeadAttention`'s context:
queries ``(batch, heads, n_q, d)`` already multiplied by the softmax scale,
keys transposed ``(batch, heads, d, n_k)``, values ``(batch, heads, n_k,
d_v)``, an additive bias ``(batch or 1, 1, 1, n_k)`` (0 for real keys, a large
negative logit for padding, so a padded key gets exactly zero weight).

Derivatives: first derivatives everywhere. Second derivatives (the unrolled
adjoint of the Euler flow differentiates the flow's velocity, itself a
gradient through the network) are exact on JAX and TensorFlow, whose
blockwise backward pass is made of differentiable operations (tested); on
PyTorch the fused kernel raises on a second derivative ("derivative for
..._flash_attention_for_cpu_backward is not implemented"), so full-size
completion with ``backward="unrolled"`` and the Euler flow does not run there
(and `blockwise_attention` called directly on PyTorch gives a wrong second
derivative: Keras runs its backward pass without autograd).
Short inputs, which the attention layer keeps on its plain path, support any
order on every backend.
"""

import math

import keras
from keras import ops

from ddeq_keras.backend.attention_policy import attention_policy
from ddeq_keras.backend.loops import scan

# Per sample: attention whose (heads, n_q, n_k) scores have more elements
# than this takes the memory-efficient path in `MaskedMultiHeadAttention`
# (32 MiB of float32 per sample, 2 GiB at batch 64). A flow step's attention
# over 10 particles (32 x 10 x 10, or 32 x 10 x 1024 across to a ModelNet
# cloud) and the MNIST classifier's 351-point encoder (32 x 351 x 351 =
# 3.9 M) stay on the plain path (the completer's 351-point attention does not:
# see `TIGHT_FULL_SCORES_MAX_ELEMENTS`); self-attention over a
# 1,024-point ModelNet cloud (33.5 M) does not. Why 2**23 and not 2**20: on
# CPU, a ddeq_mnist training step at batch 64 (Anderson defaults, alternating
# steps in one process) took 1.5x as long with its 351-point self-attention
# on the blockwise path on TensorFlow (it was 0.7x on JAX), so MNIST keeps
# the plain path, at about 1 GB per score tensor at batch 64. JAX and PyTorch
# switch earlier (`ddeq_keras.backend.attention_policy`: faster there).
FULL_SCORES_MAX_ELEMENTS = 2**23
# The bound for attention whose activations must stay small
# (`MaskedMultiHeadAttention.tight_memory`): inside the fixed-point map, which
# the backward pass differentiates (to second order through the velocity of
# the flow) and which keeps several score tensors of each block alive, and all
# attention of a DDEQ with as many particles as points (the completer), whose
# training step holds its encoder's and its map's activations together. The
# completer's 351-particle attention on the plain path took a TensorFlow
# training step (batch 64, Anderson 20 steps) past 10.7 GB (killed by the
# kernel on a 23 GB machine), 6.1 GB with only the map's attention blockwise.
# A classifier's 10 particles stay far below it.
TIGHT_FULL_SCORES_MAX_ELEMENTS = 2**20
# Per sample: the scores of one block of queries on the blockwise path
# (1 MiB of float32 per sample, 64 MiB at batch 64).
BLOCK_SCORES_ELEMENTS = 2**18


def scores_are_large(heads, n_q, n_k, tight_memory=False):
    """Whether attention of these static sizes should avoid the full scores
    (False when a size is unknown: the plain path handles any shape).

    ``tight_memory``: the attention's activations must stay small (see
    `TIGHT_FULL_SCORES_MAX_ELEMENTS`): the lower bound applies.
    """
    if None in (heads, n_q, n_k):
        return False
    bound = TIGHT_FULL_SCORES_MAX_ELEMENTS if tight_memory else FULL_SCORES_MAX_ELEMENTS
    # The backend may switch earlier for speed, never later (memory bound).
    threshold = attention_policy().full_scores_max_elements or bound
    return heads * n_q * n_k > min(threshold, bound)


# Per sample: attention with more scores than this may take the sliced path
# (`attention_path`); below it (a classifier's particles: 32 x 10 x 351) the
# plain path's few small tensors cost less than a loop.
SLICED_MIN_ELEMENTS = 2**18


def slice_group_for(batch, heads, n_q, n_k):
    """(sample, head) slices per group on the sliced path: the most that keep a
    group's scores within the backend's ``slice_group_elements`` and divide
    ``batch * heads``; None where the sliced path does not apply (the backend
    does not slice, a size is unknown, or one slice alone is too large)."""
    elements = attention_policy().slice_group_elements
    if not elements or None in (batch, heads, n_q, n_k) or n_q * n_k > elements:
        return None
    slices = batch * heads
    largest = min(slices, max(1, elements // (n_q * n_k)))
    return max(g for g in range(1, largest + 1) if slices % g == 0)


def attention_path(batch, heads, n_q, n_k, tight_memory=False):
    """``"sliced"``, ``"memory_efficient"`` or ``"plain"``: how attention of these
    static sizes is computed (for speed, then memory; see the module docstring)."""
    if (heads or 0) * (n_q or 0) * (n_k or 0) > SLICED_MIN_ELEMENTS and \
            slice_group_for(batch, heads, n_q, n_k):
        return "sliced"
    if scores_are_large(heads, n_q, n_k, tight_memory=tight_memory):
        return "memory_efficient"
    return "plain"


def _fused_attention_saves_memory():
    """Whether `keras.ops.dot_product_attention` avoids storing the scores here:
    PyTorch's kernels do; JAX on CPU (its "xla" implementation) and TensorFlow
    compute the full softmax."""
    return keras.config.backend() == "torch"


def memory_efficient_attention(query, key_t, value, bias=None):
    """``softmax(query @ key_t + bias) @ value`` without a ``(n_q, n_k)`` tensor.

    Args:
        query: ``(batch, heads, n_q, d)``, already scaled.
        key_t: ``(batch, heads, d, n_k)``.
        value: ``(batch, heads, n_k, d_v)``.
        bias: additive logits broadcastable to ``(batch, heads, n_q, n_k)``
            with size 1 on the query axis, or None.

    Returns:
        ``(batch, n_q, heads, d_v)`` (query-major: what the output projection
        takes).
    """
    if _fused_attention_saves_memory():
        out = ops.dot_product_attention(
            ops.transpose(query, (0, 2, 1, 3)),
            ops.transpose(key_t, (0, 3, 1, 2)),
            ops.transpose(value, (0, 2, 1, 3)),
            bias=bias,
            scale=1.0,  # the queries are scaled already
        )
        return out
    return ops.transpose(blockwise_attention(query, key_t, value, bias), (0, 2, 1, 3))


def sliced_attention(query, key_t, value, bias=None, group=None):
    """``softmax(query @ key_t + bias) @ value``, a few (sample, head) slices at a time.

    Each group's scores are small enough to stay in a core's cache, where the plain
    path streams its score tensors through memory (faster on CPU; see
    `ddeq_keras.backend.attention_policy`); the backward pass recomputes each
    group's softmax like `blockwise_attention`'s, and is itself differentiable.

    Args:
        query: ``(batch, heads, n_q, d)``, already scaled; every size static.
        key_t: ``(batch, heads, d, n_k)``.
        value: ``(batch, heads, n_k, d_v)``.
        bias: additive logits broadcastable to ``(batch, heads, 1, n_k)``, or None.
        group: slices per group, dividing ``batch * heads``; None uses
            `slice_group_for` (or one slice at a time where that does not apply).

    Returns:
        ``(batch, n_q, heads, d_v)`` (query-major, like `memory_efficient_attention`).

    Example:
    >>> from ddeq_keras.ops.attention import sliced_attention
    >>> q, k, v = (keras.random.normal(s, seed=i) for i, s in
    ...            enumerate([(2, 3, 10, 4), (2, 3, 4, 7), (2, 3, 7, 5)]))
    >>> full = ops.matmul(ops.softmax(ops.matmul(q, k), axis=-1), v)
    >>> out = sliced_attention(q, k, v, group=2)  # 3 groups of 2 (sample, head) slices
    >>> np.allclose(ops.convert_to_numpy(out),
    ...             ops.convert_to_numpy(ops.transpose(full, (0, 2, 1, 3))), atol=1e-6)
    True
    """
    batch, heads, n_q, _ = query.shape
    n_k, d_v = key_t.shape[-1], value.shape[-1]
    group = int(group or slice_group_for(batch, heads, n_q, n_k) or 1)
    if (batch * heads) % group:
        raise ValueError(f"group={group} does not divide batch * heads = {batch * heads}.")
    if bias is None:
        bias = ops.zeros((1, 1, 1, n_k), dtype=query.dtype)
    bias = ops.broadcast_to(ops.cast(bias, query.dtype), (batch, heads, 1, n_k))

    def to_groups(x):
        return ops.reshape(x, (batch * heads // group, group) + tuple(x.shape[2:]))

    out = _sliced(*map(to_groups, (query, key_t, value, bias)))
    return ops.transpose(ops.reshape(out, (batch, heads, n_q, d_v)), (0, 2, 1, 3))


@ops.custom_gradient
def _sliced(query, key_t, value, bias):
    """`sliced_attention` on ``(groups, group, ...)`` inputs, with its gradient."""

    # The backend's one softmax op, not `_block_forward`'s max, exp and sum, and
    # rowsum(dP * P) in the loop rather than rowsum(dO * O) passed in: every op of
    # a loop body runs once per group. Attention forward and backward at MNIST's
    # sizes on TensorFlow (one core shared with a training run): 2.17 s -> 1.91 s
    # with the softmax op, then 1.88 s -> 1.34 s with the in-loop row sums; the
    # plain path 2.35-2.65 s.
    def weights(q, k, b):
        return ops.softmax(ops.matmul(q, k) + b, axis=-1)

    def forward_group(carry, xs):
        q, k, v, b = xs
        return carry, ops.matmul(weights(q, k, b), v)

    _, out = scan(forward_group, ops.zeros(()), (query, key_t, value, bias))

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args

        def backward_group(carry, xs):
            q, k, v, b, d_out = xs
            return carry, _block_backward(q, d_out, weights(q, k, b), None, k, v)

        _, (d_query, d_key_t, d_value) = scan(
            backward_group, ops.zeros(()), (query, key_t, value, bias, upstream))
        # The bias comes from a mask: it gets no gradient.
        return d_query, d_key_t, d_value, ops.zeros_like(bias)

    return out, grad


def block_size_for(heads, n_q, n_k):
    """Queries per block: scores of at most `BLOCK_SCORES_ELEMENTS` (or the
    backend's `attention_policy` block size) per sample
    (at least one query), the blocks as even as possible so that little
    padding is computed (351 queries: 16 blocks of 22, not 15 of 23 and a
    padded 16th)."""
    elements = attention_policy().block_scores_elements or BLOCK_SCORES_ELEMENTS
    largest = max(1, elements // max(1, heads * n_k))
    blocks = math.ceil(n_q / largest)
    return math.ceil(n_q / blocks)


def blockwise_attention(query, key_t, value, bias=None, block_size=None):
    """Attention computed one block of queries at a time (head-major output).

    Args:
        query: ``(batch, heads, n_q, d)``, already scaled; ``heads``, ``n_q``
            and ``d`` must be known statically.
        key_t: ``(batch, heads, d, n_k)``.
        value: ``(batch, heads, n_k, d_v)``.
        bias: additive logits broadcastable to ``(batch, heads, 1, n_k)``, or
            None.
        block_size: queries per block; None uses `block_size_for`.

    Returns:
        ``(batch, heads, n_q, d_v)``.

    Example:
    >>> from ddeq_keras.ops.attention import blockwise_attention
    >>> q, k, v = (keras.random.normal(s, seed=i) for i, s in
    ...            enumerate([(2, 3, 10, 4), (2, 3, 4, 7), (2, 3, 7, 5)]))
    >>> full = ops.matmul(ops.softmax(ops.matmul(q, k), axis=-1), v)
    >>> out = blockwise_attention(q, k, v, block_size=4)  # 3 blocks, the last padded
    >>> np.allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(full), atol=1e-6)
    True
    """
    _, heads, n_q, _ = query.shape
    n_k = key_t.shape[-1]
    block = int(block_size or block_size_for(heads, n_q, n_k))
    blocks = math.ceil(n_q / block)
    pad = blocks * block - n_q
    if pad:  # zero queries: finite rows that are cut off again below
        query = ops.pad(query, ((0, 0), (0, 0), (0, pad), (0, 0)))
    if bias is None:
        bias = ops.zeros((1, 1, 1, n_k), dtype=query.dtype)
    out = _blockwise(block)(query, key_t, value, ops.cast(bias, query.dtype))
    return out[:, :, :n_q] if pad else out


def _split(x, block):
    """``(batch, heads, blocks * block, ...)`` -> ``(blocks, batch, heads, block, ...)``."""
    heads, length, rest = x.shape[1], x.shape[2], tuple(x.shape[3:])
    x = ops.reshape(x, (-1, heads, length // block, block) + rest)
    return ops.transpose(x, (2, 0, 1, 3) + tuple(range(4, 4 + len(rest))))


def _merge(x):
    """Inverse of `_split`."""
    blocks, heads, block, rest = x.shape[0], x.shape[2], x.shape[3], tuple(x.shape[4:])
    x = ops.transpose(x, (1, 2, 0, 3) + tuple(range(4, 4 + len(rest))))
    return ops.reshape(x, (-1, heads, blocks * block) + rest)


def _swap_last(x):
    rank = len(x.shape)
    return ops.transpose(x, tuple(range(rank - 2)) + (rank - 1, rank - 2))


def _block_forward(q, key_t, value, bias):
    """One block's attention output and the log-sum-exp of its logits' rows."""
    scores = ops.matmul(q, key_t) + bias
    top = ops.max(scores, axis=-1, keepdims=True)
    weights = ops.exp(scores - top)
    total = ops.sum(weights, axis=-1, keepdims=True)
    out = ops.matmul(weights, value) / total
    return out, ops.squeeze(top + ops.log(total), -1)


def _block_backward(q, d_out, weights, row_delta, key_t, value):
    """One block's ``(dQ, dK^T, dV)``, the flash-attention backward: with the
    attention weights P recomputed, dV = P^T dO, dP = dO V^T,
    dS = P * (dP - rowsum(dP * P)), dQ = dS K, dK^T = Q^T dS. ``row_delta``:
    rowsum(dP * P), which equals rowsum(dO * O), given; None computes it here
    (faster on TensorFlow when the block is small)."""
    d_value = ops.matmul(_swap_last(weights), d_out)
    d_weights = ops.matmul(d_out, _swap_last(value))
    if row_delta is None:
        row_delta = ops.sum(d_weights * weights, axis=-1)
    d_scores = weights * (d_weights - ops.expand_dims(row_delta, -1))
    d_key_t = ops.matmul(_swap_last(q), d_scores)
    return ops.matmul(d_scores, _swap_last(key_t)), d_key_t, d_value


def _blockwise(block):
    """The blockwise attention for a static block size, with its gradient.

    Both passes loop with `ddeq_keras.backend.loops.scan`: sequential on
    every backend, so only one block's scores exist at a time, and nothing
    inside is differentiated by the framework.
    """

    @ops.custom_gradient
    def attention(query, key_t, value, bias):
        q_blocks = _split(query, block)

        def forward_block(carry, q):
            return carry, _block_forward(q, key_t, value, bias)

        _, (out_blocks, lse_blocks) = scan(forward_block, ops.zeros(()), q_blocks)
        out = _merge(out_blocks)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            delta = _split(ops.sum(upstream * out, axis=-1), block)

            def backward_block(carry, xs):
                d_key_t, d_value = carry
                q, d_out, lse, row_delta = xs
                weights = ops.exp(ops.matmul(q, key_t) + bias - ops.expand_dims(lse, -1))
                d_q, d_k, d_v = _block_backward(q, d_out, weights, row_delta, key_t, value)
                return (d_key_t + d_k, d_value + d_v), d_q

            (d_key_t, d_value), d_q_blocks = scan(
                backward_block,
                (ops.zeros_like(key_t), ops.zeros_like(value)),
                (q_blocks, _split(upstream, block), lse_blocks, delta),
            )
            # The bias comes from a mask: it gets no gradient.
            return _merge(d_q_blocks), d_key_t, d_value, ops.zeros_like(bias)

        return out, grad

    return attention
