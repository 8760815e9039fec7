"""The per-backend autodiff helpers against central finite differences.

Finite differences in float64 NumPy of a float32 function: step 1e-3 gives a
truncation error ~1e-6 and a rounding error ~1e-7/1e-3 = 1e-4, so we compare
with atol 2e-3 (relative to gradients of size ~1).
"""

import numpy as np
from keras import ops

from conftest import to_numpy
from ddeq_keras import backend
from ddeq_keras import ops as dops

EPS, ATOL = 1e-3, 2e-3


def _fd_grad(fn, x):
    x = np.array(x, dtype="float64")
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = EPS
        hi = float(to_numpy(fn(ops.convert_to_tensor((x + e).astype("float32")))))
        lo = float(to_numpy(fn(ops.convert_to_tensor((x - e).astype("float32")))))
        g[idx] = (hi - lo) / (2 * EPS)
    return g


def _objective(z):
    # A scalar through a nonlinear map and the Riesz MMD, like the flow's F.
    t = ops.tanh(z) * 0.7 + 0.3 * ops.mean(z, axis=1, keepdims=True)
    return 0.5 * ops.sum(dops.mmd2(z, t))


def test_value_and_grad_matches_finite_differences(rng):
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    value, grad = backend.value_and_grad(_objective, ops.convert_to_tensor(x))
    np.testing.assert_allclose(to_numpy(value), to_numpy(_objective(x)), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(grad), _fd_grad(_objective, x), atol=ATOL)


def test_value_and_grad_with_aux(rng):
    x = ops.convert_to_tensor(rng.normal(size=(3,)).astype("float32"))
    (value, aux), grad = backend.value_and_grad(
        lambda v: (ops.sum(v**2), v * 2), x, has_aux=True
    )
    np.testing.assert_allclose(to_numpy(grad), 2 * to_numpy(x), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(aux), 2 * to_numpy(x), rtol=1e-6)


def test_vjp_matches_finite_differences(rng):
    a = rng.normal(size=(2, 3)).astype("float32")
    b = rng.normal(size=(3,)).astype("float32")
    cot = rng.normal(size=(2, 3)).astype("float32")

    def fn(u, v):
        return ops.sin(u) * v + ops.sum(u**2)

    out, (ga, gb) = backend.vjp(fn, [ops.convert_to_tensor(a), ops.convert_to_tensor(b)], cot)
    np.testing.assert_allclose(to_numpy(out), to_numpy(fn(a, b)), rtol=1e-6)
    ref_a = _fd_grad(lambda u: ops.sum(fn(u, b) * cot), a)
    ref_b = _fd_grad(lambda v: ops.sum(fn(a, v) * cot), b)
    np.testing.assert_allclose(to_numpy(ga), ref_a, atol=ATOL)
    np.testing.assert_allclose(to_numpy(gb), ref_b, atol=ATOL)


def test_vjp_gives_zeros_for_unused_and_integer_inputs(rng):
    a = ops.convert_to_tensor(rng.normal(size=(3,)).astype("float32"))
    unused = ops.convert_to_tensor(np.ones(3, "float32"))
    flag = ops.convert_to_tensor(np.array([True, False, True]))
    out, (ga, gu, gf) = backend.vjp(
        lambda x, u, m: ops.where(m, x * 2, x), [a, unused, flag], ops.ones((3,))
    )
    np.testing.assert_allclose(to_numpy(ga), [2, 1, 2])
    np.testing.assert_allclose(to_numpy(gu), 0)
    assert to_numpy(gf).shape == (3,)


def test_is_concrete_eager():
    assert backend.is_concrete(ops.ones((2,)))
