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

Why JAX slices (``slice_group_elements``): a (sample, head)
slice of MNIST's 351 x 351 scores is 0.5 MB, which a core's cache holds, while
the plain path streams 1 GB score tensors (and as large temporaries) through
memory several times per forward and backward pass. Attention over a few
slices at a time, with the recomputing backward pass, took a ddeq_mnist
Anderson training step (batch 64, one core shared with training runs,
alternating steps in one process: `python -m training.attention_speed`,
`docs/bench/attention_speed_*.json`) from 5.92 s to 4.94 s on JAX (four
slices at a time; 0.83x), and on two cores with nothing else running from
2.36 s to 1.67 s (0.71x). TensorFlow does not slice: one slice at a time took
its step from 4.62 s to 4.05 s on one busy core (0.88x), but from 1.43 s to
2.54 s on two idle cores (1.78x), the cores it gets by default. At
1,024 points a slice (4 MB) no longer fits and the query blocks stay (the
attention's forward and backward took 1.3x as long in slices there on JAX).
"""

import collections
import contextlib

import keras

AttentionPolicy = collections.namedtuple(
    "AttentionPolicy",
    ["full_scores_max_elements", "block_scores_elements", "slice_group_elements"],
    defaults=(None,),
)
# None: the memory bounds of `ddeq_keras.ops.attention` decide; no slicing.
DEFAULT_POLICY = AttentionPolicy(None, None, None)
_POLICIES = {
    "jax": AttentionPolicy(full_scores_max_elements=2**20, block_scores_elements=2**20,
                           slice_group_elements=2**19),
    # TensorFlow does not slice: faster on one core (0.88x), 1.78x slower on two,
    # where its while loop hands thousands of small ops between threads.
    # PyTorch's memory-efficient path is its fused scaled_dot_product_attention.
    "torch": AttentionPolicy(full_scores_max_elements=2**20, block_scores_elements=None),
}


def attention_policy():
    """The `AttentionPolicy` of the current Keras backend."""
    return _POLICIES.get(keras.config.backend(), DEFAULT_POLICY)


@contextlib.contextmanager
def override_policy(**fields):
    """Within the block, the current backend's policy with ``fields`` replaced (for
    benchmarks comparing paths: the policy is read when a function is traced)."""
    backend = keras.config.backend()
    saved = _POLICIES.get(backend)
    _POLICIES[backend] = (saved or DEFAULT_POLICY)._replace(**fields)
    try:
        yield _POLICIES[backend]
    finally:
        if saved is None:
            del _POLICIES[backend]
        else:
            _POLICIES[backend] = saved
