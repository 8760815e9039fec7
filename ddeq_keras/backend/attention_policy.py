"""Per-backend choice of the attention path for long inputs (speed, not memory).

`ddeq_keras.ops.attention` bounds memory with `FULL_SCORES_MAX_ELEMENTS` and
`BLOCK_SCORES_ELEMENTS` on every backend; a backend listed here may switch to
the blockwise path *earlier* (a lower threshold, never a higher one) and use
its own block size, because that is faster there. Results are the same to
float32 rounding either way.

Why JAX differs (CPU, ddeq_mnist, batch 64, 351 points, 1 core): XLA's CPU
runtime allocates every execution's buffers afresh with malloc, and buffers
this large are mmapped, so each step page-faults all of them in again (1.36 M
minor faults, 5.2 GB, per plain-path training step; TensorFlow's allocator
reuses its memory: ~600 faults per call). The plain (64, 32, 351, 351)
attention forward took 2.7 s there against 0.34 s blockwise in blocks of ~1 M
scores per sample (88 queries); a training step took 0.62x as long with the
blockwise path in blocks of 2**20 scores (0.73x with 2**18: each scan step
has a fixed cost, 16 blocks of 22 queries instead of 4 of 88). TensorFlow
keeps the plain path for MNIST: blockwise made its step 1.5x slower.

Why PyTorch differs: its memory-efficient path is its own fused kernel
(``scaled_dot_product_attention``, flash attention on CPU), faster than the
plain path already at MNIST's 351 points: (64, 32, 351, 4) attention forward
and backward 1.56 s fused vs 4.70 s plain, and a ddeq_mnist Anderson training
step 3.19 s vs 5.83 s (batch 64, 1 core, alternating steps in one process).
The fused kernel has no second derivative, which only the unrolled Euler
adjoint takes, through the map's attention: a classifier's map (10 particles,
at most 32 x 10 x 1,024 scores) stays below 2**20 and keeps the plain path.
"""

import collections

import keras

AttentionPolicy = collections.namedtuple(
    "AttentionPolicy", ["full_scores_max_elements", "block_scores_elements"]
)
# None: the memory bounds of `ddeq_keras.ops.attention` decide.
DEFAULT_POLICY = AttentionPolicy(None, None)
_POLICIES = {
    "jax": AttentionPolicy(full_scores_max_elements=2**20, block_scores_elements=2**20),
    # PyTorch's memory-efficient path is its fused scaled_dot_product_attention.
    "torch": AttentionPolicy(full_scores_max_elements=2**20, block_scores_elements=None),
}


def attention_policy():
    """The `AttentionPolicy` of the current Keras backend."""
    return _POLICIES.get(keras.config.backend(), DEFAULT_POLICY)
