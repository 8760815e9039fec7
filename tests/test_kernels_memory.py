"""Memory-bounded kernels and attention against their full-size references.

The Gram form of the distances (`ddeq_keras.ops.kernels`, ``method="gram"``)
and the memory-efficient attention (`ddeq_keras.ops.attention`) must give what
the explicit computations give: values and first derivatives, masks
respected, finite gradients at zero distance. The explicit references (the
``(batch, n, m, d)`` differences, the full ``(batch, heads, n_q, n_k)``
softmax) are re-implemented here as they were before.

Tolerances: float32 computations of O(1) values, compared with rtol = atol =
1e-5 (a few roundings of float32; the measured differences are ~1e-6).

That the large cases never build their full intermediate is checked through
the process's peak resident memory (Linux, ``/proc/self/clear_refs``) on
cases where the full tensors would take 128 MiB (distances) and 64 MiB
(attention scores, kept for the backward pass) but the bounded paths need a
few MiB: cheap, and failing if the full tensor is ever built. The full-size
models are measured by the benchmark's memory section
(``training/benchmark.py``).
"""

import gc

import keras
import numpy as np
import pytest
from keras import ops

from conftest import BACKEND, to_numpy
from ddeq_keras import backend
from ddeq_keras.backend.attention_policy import DEFAULT_POLICY
from ddeq_keras.ops import kernels
from ddeq_keras.ops.attention import (
    attention_path,
    blockwise_attention,
    block_size_for,
    memory_efficient_attention,
    scores_are_large,
    slice_group_for,
    sliced_attention,
)

RTOL = ATOL = 1e-5


# -- the explicit references (the implementation before the Gram form) ------


def _ref_distances(a, b):
    diff = ops.expand_dims(a, 2) - ops.expand_dims(b, 1)
    return kernels.safe_norm(diff, axis=-1)


def _ref_weights(mask, x):
    return kernels._weights(mask, x)


def _ref_mean(k, wa, wb):
    return ops.sum(k * ops.expand_dims(wa, 2) * ops.expand_dims(wb, 1), axis=(1, 2))


def _ref_mmd2(a, b, a_mask, b_mask, kernel="riesz", r=1.0):
    def k(u, v):
        d = _ref_distances(u, v)
        if kernel == "gaussian":
            return ops.exp(-ops.square(d) / 2.0)
        return -d if r == 1.0 else -ops.power(d, r)

    wa, wb = _ref_weights(a_mask, a), _ref_weights(b_mask, b)
    return _ref_mean(k(a, a), wa, wa) + _ref_mean(k(b, b), wb, wb) - 2.0 * _ref_mean(
        k(a, b), wa, wb)


def _ref_chamfer(a, b, a_mask, b_mask, squared):
    d = _ref_distances(a, b)
    d = ops.square(d) if squared else d
    big = ops.full_like(d, 1e30)
    d_ab = ops.where(ops.expand_dims(ops.cast(b_mask, "bool"), 1), d, big)
    d_ba = ops.where(ops.expand_dims(ops.cast(a_mask, "bool"), 2), d, big)
    return ops.sum(ops.min(d_ab, axis=2) * _ref_weights(a_mask, a), axis=1) + ops.sum(
        ops.min(d_ba, axis=1) * _ref_weights(b_mask, b), axis=1)


def _cloud(rng, b=3, n=7, d=4, offset=3.0):
    # Away from the origin, where the textbook Gram expansion loses digits.
    x = (rng.normal(size=(b, n, d)) + offset).astype("float32")
    mask = rng.random((b, n)) < 0.7
    mask[:, 0] = True
    return x, mask


def _compiled(fn):
    """One compiled function instead of hundreds of eager ops (JAX compiles each
    eager op on first use): ``jax.jit``, ``tf.function``; eager on PyTorch."""
    if BACKEND == "jax":
        import jax

        # Tiny inputs: compile fast rather than well.
        return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0,
                                             "xla_llvm_disable_expensive_passes": True})
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    return fn


def _numpy(t):
    return to_numpy(ops.stop_gradient(t))  # PyTorch: values computed next to a tape


def _values_and_grads(fns, a, b, *extra):
    """For each ``fn(a, b, *extra) -> (batch,)``: its value and the gradients
    of ``sum(fn * w)`` w.r.t. ``a`` and ``b``, all from one compiled function
    (``extra``: constants such as masks)."""
    w = ops.convert_to_tensor(np.linspace(0.5, 1.5, a.shape[0]).astype("float32"))

    def run(a, b):
        out = []
        for fn in fns:
            def f(x, y, fn=fn):
                return fn(x, y, *extra) * w

            _, ga = backend.value_and_grad(lambda x: ops.sum(f(x, b)), a)
            _, gb = backend.value_and_grad(lambda y: ops.sum(f(a, y)), b)
            out += [fn(a, b, *extra), ga, gb]
        return out

    return [_numpy(t) for t in _compiled(run)(*map(ops.convert_to_tensor, (a, b)))]


# -- kernels ---------------------------------------------------------------------

# name -> (ours(a, b, a_mask, b_mask, method), reference(a, b, a_mask, b_mask)).
# `energy_distance` is `mmd2` with the Riesz kernel (tests/test_ops.py).
CASES = {
    "riesz": (lambda a, b, am, bm, m: kernels.mmd2(a, b, am, bm, method=m),
              lambda a, b, am, bm: _ref_mmd2(a, b, am, bm)),
    "riesz_r1.5": (lambda a, b, am, bm, m: kernels.mmd2(a, b, am, bm, r=1.5, method=m),
                   lambda a, b, am, bm: _ref_mmd2(a, b, am, bm, r=1.5)),
    "gaussian": (lambda a, b, am, bm, m: kernels.mmd2(a, b, am, bm, "gaussian", method=m),
                 lambda a, b, am, bm: _ref_mmd2(a, b, am, bm, "gaussian")),
    "chamfer_squared": (
        lambda a, b, am, bm, m: kernels.chamfer_distance(a, b, am, bm, method=m),
        lambda a, b, am, bm: _ref_chamfer(a, b, am, bm, True)),
    "chamfer": (
        lambda a, b, am, bm, m: kernels.chamfer_distance(a, b, am, bm, squared=False, method=m),
        lambda a, b, am, bm: _ref_chamfer(a, b, am, bm, False)),
}


@pytest.mark.parametrize("shapes,names", [
    ((7, 9), ("riesz", "chamfer")),
    ((8, 8), ("riesz", "riesz_r1.5", "gaussian", "chamfer_squared")),  # exact (i, i) entries
])
def test_gram_form_matches_explicit_values_and_gradients(rng, shapes, names):
    a, am = _cloud(rng, n=shapes[0])
    b, bm = _cloud(rng, n=shapes[1])
    got = _values_and_grads([CASES[c][0] for c in names], a, b, am, bm, "gram")
    want = _values_and_grads([CASES[c][1] for c in names], a, b, am, bm)
    labels = [f"{c} {what}" for c in names for what in ("value", "grad a", "grad b")]
    for g, w, label in zip(got, want, labels):
        np.testing.assert_allclose(g, w, RTOL, ATOL, err_msg=label)


def test_auto_method_by_static_size():
    small = ops.zeros((2, 10, 128))
    assert kernels._resolve_method("auto", small, small) == "explicit"
    big = ops.zeros((1, 351, 128))  # the completer's particles: 15.8 M per sample
    assert kernels._resolve_method("auto", big, big) == "gram"
    cloud = ops.zeros((1, 351, 2))  # its 2-D output against the complete cloud
    assert kernels._resolve_method("auto", cloud, cloud) == "explicit"
    with pytest.raises(ValueError, match="method"):
        kernels.mmd2(small, small, method="fast")


def test_gram_form_exact_at_zero_distance_with_finite_gradients():
    # Duplicated points, a set against itself and against a copy with shared
    # points: zero distances come out exactly 0, gradients finite.
    a = np.array([[[1.0, 2.0, 5.0], [1.0, 2.0, 5.0], [4.0, 0.5, 5.0], [4.0, 0.5, 5.0]]],
                 "float32")
    b = np.array([[[1.0, 2.0, 5.0], [3.0, 1.0, 5.0], [4.0, 0.5, 5.0], [1.0, 2.0, 5.0]]],
                 "float32")

    def aligned_distances(x, y, *_):  # the (i, i) entries only
        return ops.sum(kernels.pairwise_distances(x, y, "gram") * ops.eye(4), axis=(1, 2))

    def self_terms(x, y):  # a set against itself: distances and MMD^2
        return kernels.pairwise_distances(x, x, "gram"), kernels.mmd2(x, x, method="gram")

    results = _values_and_grads([CASES["riesz"][0], CASES["chamfer"][0], aligned_distances],
                                a, b, None, None, "gram")
    assert all(np.isfinite(r).all() for r in results)
    # b[0] and b[2] sit exactly on a[0] and a[2]: no gradient from those pairs.
    np.testing.assert_array_equal(results[-2][0, [0, 2]], 0.0)
    d, mmd = (to_numpy(t) for t in _compiled(self_terms)(ops.convert_to_tensor(a), None))
    np.testing.assert_array_equal(np.diag(d[0]), 0.0)
    np.testing.assert_allclose(d, to_numpy(_ref_distances(a, a)), RTOL, ATOL)
    assert mmd[0] == 0.0


# -- attention -------------------------------------------------------------------


def _attention_inputs(rng, batch=2, heads=3, n_q=10, n_k=7, dim=4):
    q = rng.normal(size=(batch, heads, n_q, dim)).astype("float32")
    k = rng.normal(size=(batch, heads, dim, n_k)).astype("float32")
    v = rng.normal(size=(batch, heads, n_k, dim)).astype("float32")
    mask = np.ones((batch, n_k), bool)
    mask[1, 4:] = False
    bias = np.where(mask, 0.0, -1e9).astype("float32")[:, None, None, :]
    return q, k, v, bias


def _full_attention(q, k, v, bias):
    return ops.matmul(ops.softmax(ops.matmul(q, k) + bias, axis=-1), v)


@pytest.mark.parametrize("path", ["blockwise", "memory_efficient", "sliced"])
def test_memory_efficient_attention_matches_full(rng, path):
    q, k, v, bias = _attention_inputs(rng)
    bias = ops.convert_to_tensor(bias)
    w = ops.convert_to_tensor(rng.normal(size=q.shape).astype("float32"))

    def ours(q, k, v):
        if path == "blockwise":  # 3 blocks of 4 queries, the last one padded
            return blockwise_attention(q, k, v, bias, block_size=4)
        if path == "sliced":  # 3 groups of 2 (sample, head) slices
            return ops.transpose(sliced_attention(q, k, v, bias, group=2), (0, 2, 1, 3))
        return ops.transpose(memory_efficient_attention(q, k, v, bias), (0, 2, 1, 3))

    def ref(q, k, v):
        return _full_attention(q, k, v, bias)

    def values_and_grads(fn):
        def run(*inputs):
            out = [fn(*inputs)]
            for i in range(3):
                def loss(x, i=i):
                    args = list(inputs)
                    args[i] = x
                    return ops.sum(fn(*args) * w)

                out.append(backend.value_and_grad(loss, inputs[i])[1])
            return out

        return [_numpy(t) for t in _compiled(run)(*map(ops.convert_to_tensor, (q, k, v)))]

    got, want = values_and_grads(ours), values_and_grads(ref)
    for g, r, what in zip(got, want, ("value", "grad q", "grad k", "grad v")):
        np.testing.assert_allclose(g, r, RTOL, ATOL, err_msg=what)
    # Padded keys (sample 1, keys 4-6) get no weight, hence no gradient.
    np.testing.assert_array_equal(got[2][1, :, :, 4:], 0.0)
    np.testing.assert_array_equal(got[3][1, :, 4:], 0.0)



@pytest.mark.skipif(BACKEND == "torch", reason=(
    "PyTorch takes its fused kernel, which has no second derivative (documented in "
    "ddeq_keras.ops.attention); the blockwise gradient is not differentiable there"))
def test_blockwise_attention_second_derivative_matches_full(rng):
    # The unrolled adjoint differentiates the Euler flow's velocity, itself a
    # gradient through the network: the custom gradient must be differentiable.
    q, k, v, bias = map(ops.convert_to_tensor, _attention_inputs(rng))
    w, u = (ops.convert_to_tensor(rng.normal(size=q.shape).astype("float32")) for _ in "wu")

    def second(fn):
        def outer(x):
            _, g = backend.value_and_grad(lambda y: ops.sum(fn(y) * w), x, higher_order=True)
            return ops.sum(g * u)

        return _numpy(_compiled(lambda x: backend.value_and_grad(outer, x)[1])(q))

    got = second(lambda x: blockwise_attention(x, k, v, bias, block_size=4))
    want = second(lambda x: _full_attention(x, k, v, bias))
    np.testing.assert_allclose(got, want, RTOL, ATOL)
    sliced = second(lambda x: ops.transpose(sliced_attention(x, k, v, bias, group=3),
                                            (0, 2, 1, 3)))
    np.testing.assert_allclose(sliced, want, RTOL, ATOL)


def test_sliced_path_choice_and_group_sizes():
    """JAX takes the sliced path for MNIST's 351-point attention when the batch size is
    known (groups of slices within its bound that divide batch x heads); TensorFlow
    (slower there on two cores) and PyTorch (its fused kernel) never; 1,024-point slices
    are too large."""
    backend = keras.config.backend()
    group = {"jax": 4}.get(backend)
    assert slice_group_for(64, 32, 351, 351) == group
    unsliced = "plain" if backend == "tensorflow" else "memory_efficient"
    assert attention_path(64, 32, 351, 351) == ("sliced" if group else unsliced)
    assert attention_path(64, 32, 351, 351, tight_memory=True) == (
        "sliced" if group else "memory_efficient")
    # Unknown batch: the path without slicing (plain on TensorFlow for MNIST).
    assert attention_path(None, 32, 351, 351) == unsliced
    assert attention_path(64, 32, 1024, 1024) == "memory_efficient"
    assert slice_group_for(64, 32, 1024, 1024) is None
    assert attention_path(64, 32, 10, 351) == "plain"  # a classifier's particles
    if backend == "jax":  # the largest divisor of 3 x 32 = 96 within 4 slices
        assert slice_group_for(3, 32, 351, 351) == 4
        assert slice_group_for(3, 5, 351, 351) == 3
    with pytest.raises(ValueError, match="does not divide"):
        q = ops.zeros((2, 3, 5, 4))
        sliced_attention(q, ops.zeros((2, 3, 4, 6)), ops.zeros((2, 3, 6, 4)), group=4)


def test_path_choice_and_block_sizes():
    backend = keras.config.backend()
    jax = backend == "jax"  # blockwise earlier, bigger blocks (faster there)
    assert not scores_are_large(32, 10, 10)      # a flow step's particles
    assert not scores_are_large(32, 10, 1024)    # particles across to a ModelNet cloud
    assert not scores_are_large(32, 10, 351)     # particles across to an MNIST cloud
    # MNIST's 351 points: plain on TensorFlow; blockwise on JAX and PyTorch's fused
    # kernel (both faster there).
    assert scores_are_large(32, 351, 351) == (backend != "tensorflow")
    assert scores_are_large(32, 1024, 351)       # above the threshold, whatever the axis
    assert scores_are_large(32, 1024, 1024)
    assert not scores_are_large(32, None, 1024)  # unknown: the plain path
    assert block_size_for(32, 1024, 1024) == (32 if jax else 8)
    assert block_size_for(32, 351, 351) == (88 if jax else 22)  # 4 / 16 even blocks
    # Inside the fixed-point map (differentiated at every backward pass): the
    # completer's 351 particles leave the plain path on every backend, a
    # classifier's 10 particles do not.
    assert scores_are_large(32, 351, 351, tight_memory=True)
    assert not scores_are_large(32, 10, 1024, tight_memory=True)


def test_network_marks_the_attention_of_its_map():
    from ddeq_keras.models.ddeq.network import DDEQNetwork

    f = DDEQNetwork(latent_dim=8, hidden_dim=4, bilinear_dim=4, num_heads=2, ff_dim=8,
                    num_cross_blocks=2)
    assert f.z_self_attention.attention.tight_memory
    assert all(b.attention.tight_memory for b in f.cross_attention)
    assert not f.x_self_attention.attention.tight_memory  # once per forward pass
    # A completer (as many particles as points): its encoder's attention too.
    tiny = dict(latent_dim=8, hidden_dim=4, bilinear_dim=4, num_heads=2, ff_dim=8)
    from ddeq_keras.models import create_model

    completer = create_model("ddeq_mnist_completion", build=False, **tiny)
    classifier = create_model("ddeq_mnist", build=False, **tiny)
    assert completer.backbone.network.x_self_attention.attention.tight_memory
    assert not classifier.backbone.network.x_self_attention.attention.tight_memory


def test_backend_policy_never_raises_the_memory_bound(monkeypatch):
    from ddeq_keras.backend import attention_policy as policy
    from ddeq_keras.ops import attention as attention_ops

    monkeypatch.setitem(policy._POLICIES, keras.config.backend(),
                        policy.AttentionPolicy(2**30, None))
    assert not scores_are_large(32, 351, 351)
    monkeypatch.setattr(attention_ops, "FULL_SCORES_MAX_ELEMENTS", 0)
    assert scores_are_large(32, 10, 10)


def test_attention_layer_long_path_matches_short_path(rng, monkeypatch):
    from ddeq_keras.layers import MaskedMultiHeadAttention
    from ddeq_keras.ops import attention as attention_ops

    mha = MaskedMultiHeadAttention(num_heads=4)
    x = rng.normal(size=(2, 40, 16)).astype("float32")
    mask = np.arange(40)[None, :] < np.array([[40], [25]])
    mha.build(x.shape, x.shape)
    short, scores = _compiled(lambda x: mha(x, x, key_mask=mask, return_attention_scores=True))(x)
    assert np.all(to_numpy(scores)[1, :, :, 25:] == 0.0)  # padded keys: exactly 0
    monkeypatch.setattr(attention_ops, "FULL_SCORES_MAX_ELEMENTS", 0)  # force the long path
    monkeypatch.setattr(attention_ops, "BLOCK_SCORES_ELEMENTS", 4 * 40 * 16)  # 3 blocks
    monkeypatch.setattr(attention_ops, "attention_policy", lambda: DEFAULT_POLICY)
    long = _compiled(lambda x: mha(x, x, key_mask=mask))(x)
    np.testing.assert_allclose(to_numpy(long), to_numpy(short), RTOL, ATOL)
    # The sliced path (2 groups of 4 of the 2 x 4 (sample, head) slices of 40 x 40).
    monkeypatch.setattr(attention_ops, "SLICED_MIN_ELEMENTS", 0)
    monkeypatch.setattr(attention_ops, "attention_policy",
                        lambda: DEFAULT_POLICY._replace(slice_group_elements=4 * 40 * 40))
    assert attention_ops.attention_path(2, 4, 40, 40) == "sliced"
    sliced = _compiled(lambda x: mha(x, x, key_mask=mask))(x)
    np.testing.assert_allclose(to_numpy(sliced), to_numpy(short), RTOL, ATOL)


# -- memory ----------------------------------------------------------------------


def _peak_growth_mib(fn):
    """Growth of the process's peak resident memory while ``fn()`` runs, after
    one untimed call (compilation allocates too), in MiB."""
    def status(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

    fn()
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to measure peak memory")
    before = status("VmRSS")
    fn()
    return (status("VmHWM") - before) / 1024.0


def _grad_of_sum(fn, x):
    compiled = _compiled(lambda x: backend.value_and_grad(lambda y: ops.sum(fn(y)), x)[1])
    return lambda: to_numpy(compiled(x))


def test_large_cases_stay_far_below_their_full_intermediates(rng):
    # mmd2 of 512 points of width 128 against as many: the explicit
    # differences would take 128 MiB (and their gradient as much again); the
    # Gram form works on (1, 512, 512) matrices of 1 MiB.
    a = ops.convert_to_tensor(rng.normal(size=(1, 512, 128)).astype("float32"))
    b = ops.convert_to_tensor(rng.normal(size=(1, 512, 128)).astype("float32"))
    grown = _peak_growth_mib(_grad_of_sum(lambda x: kernels.mmd2(x, b), a))
    assert grown < 48, grown
    # Attention of 1 head, 4096 queries, 4096 keys: 64 MiB of scores, which a
    # plain softmax keeps for the backward pass (with temporaries as large).
    q = ops.convert_to_tensor(rng.normal(size=(1, 1, 4096, 4)).astype("float32"))
    k = ops.convert_to_tensor(rng.normal(size=(1, 1, 4, 4096)).astype("float32"))
    v = ops.convert_to_tensor(rng.normal(size=(1, 1, 4096, 4)).astype("float32"))
    grown = _peak_growth_mib(_grad_of_sum(lambda x: memory_efficient_attention(x, k, v), q))
    assert grown < 32, grown
