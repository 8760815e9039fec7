"""Gradients through the equilibrium: unrolled, implicit and phantom."""

import numpy as np
import pytest
from keras import ops

from conftest import to_numpy
from ddeq_keras import backend
from maps import SinMap, grads_wrt_weights_and_context, separated_particles, flow_layer


def _loss_weights(rng, shape):
    return ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))


def _fd(layer, z0, theta, lw, eps=1e-3):
    """Central finite differences of sum(out * lw) w.r.t. (s, w, theta), float32 forward."""
    weights = [to_numpy(v) for v in layer.trainable_variables]
    params = weights + [theta]

    def value(ps):
        out, _ = layer.stateless_call(
            [ops.convert_to_tensor(p) for p in ps[:-1]], [], z0, ops.convert_to_tensor(ps[-1]),
            training=True,
        )
        return float(np.sum(to_numpy(out).astype("float64") * to_numpy(lw)))

    grads = []
    for j, p in enumerate(params):
        g = np.zeros(p.shape)
        for idx in np.ndindex(p.shape):
            hi = [q.copy() for q in params]
            lo = [q.copy() for q in params]
            hi[j][idx] += eps
            lo[j][idx] -= eps
            g[idx] = (value(hi) - value(lo)) / (2 * eps)
        grads.append(g)
    return grads


def test_unrolled_matches_finite_differences(rng):
    z0, theta = separated_particles(rng, batch=2)
    layer = flow_layer(SinMap(), eta=0.5, max_steps=6, tol=0.0, backward="unrolled")
    lw = _loss_weights(rng, z0.shape)
    _, grads = grads_wrt_weights_and_context(layer, z0, theta, loss_weights=lw)
    ref = _fd(layer, z0, theta, lw)
    for g, r in zip(grads, ref):
        # float32 forward, eps 1e-3: FD rounding ~1e-7 * |loss| / eps ~ 1e-3.
        np.testing.assert_allclose(g, r, atol=5e-3, rtol=1e-2)


def test_implicit_matches_unrolled_to_convergence(rng, float64):
    # The Gaussian-kernel flow converges linearly to the particle-wise fixed point on
    # separated particles, so unrolled differentiation "to convergence" is well defined
    # (the Riesz Euler flow ends in an O(eta) oscillation instead). Both differentiate
    # the same equilibrium z* = f(z*), which does not depend on the kernel. float64:
    # in float32 MMD^2 rounds to 0 at |z - f(z)| ~ 2e-4 and the flow stops there.
    z0, theta = (a.astype(float64) for a in separated_particles(rng, batch=2))
    frozen = np.zeros((2, 3), bool)
    frozen[1, 2] = True
    lw = ops.convert_to_tensor(rng.normal(size=z0.shape).astype(float64))
    common = dict(eta=2.0, tol=0.0, kernel="gaussian", max_steps=100, dtype=float64)
    unrolled = flow_layer(SinMap(dtype=float64), backward="unrolled", **common)
    implicit = flow_layer(SinMap(dtype=float64), backward="implicit",
                                       implicit_tol=1e-10, **common)
    out_u, g_u = grads_wrt_weights_and_context(unrolled, z0, theta, loss_weights=lw, frozen_mask=frozen)
    out_i, g_i = grads_wrt_weights_and_context(implicit, z0, theta, loss_weights=lw, frozen_mask=frozen)
    np.testing.assert_allclose(to_numpy(out_i), to_numpy(out_u), atol=1e-8)
    for a, b in zip(g_i, g_u):
        # Measured agreement ~1e-5 after 100 steps (the unrolled derivative converges
        # linearly to the implicit one); tolerance 1e-4.
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
        assert np.abs(a).max() > 1e-2  # the gradients are not trivially zero


def test_phantom_one_step_is_gradient_of_f_at_stopped_equilibrium(rng):
    z0, theta = separated_particles(rng, batch=2)
    lw = _loss_weights(rng, z0.shape)
    layer = flow_layer(SinMap(), eta=1.0, max_steps=20, tol=1e-4)
    out, grads = grads_wrt_weights_and_context(layer, z0, theta, loss_weights=lw)
    z_star = layer(z0, theta, training=False)
    f = layer.map_layer
    weights = [ops.convert_to_tensor(v.value) for v in f.trainable_variables]

    def phantom(s, w, th):
        y, _ = f.stateless_call([s, w], [], ops.stop_gradient(z_star), th)
        return y * lw

    _, ref = backend.vjp(phantom, weights + [ops.convert_to_tensor(theta)], ops.ones(z0.shape))
    # The value is z* itself; only the gradient is phantom. (A traced and an eager
    # run of the same solve may round differently in float32: 1e-5.)
    np.testing.assert_allclose(to_numpy(out), to_numpy(z_star) * to_numpy(lw), atol=1e-5)
    for g, r in zip(grads, ref):
        np.testing.assert_allclose(g, to_numpy(r), atol=1e-6, rtol=1e-6)


def test_implicit_falls_back_to_phantom_when_the_adjoint_diverges(rng):
    # s = 2.5 makes f expansive at its fixed points (|J| = |1 - s cos| ~ 1.5), so
    # the adjoint iteration w = g + J^T w diverges; the guard returns the one-step
    # phantom gradient instead of inf/NaN. Same z* in both layers: equal to 1e-5.
    z0, theta = separated_particles(rng, batch=2)
    lw = _loss_weights(rng, z0.shape)
    grads = {}
    for backward in ("implicit", "phantom"):
        layer = flow_layer(SinMap(), eta=1.0, max_steps=10, tol=0.0, backward=backward)
        layer(z0, theta)
        layer.map_layer.s.assign(np.full((2,), 2.5, "float32"))
        out, grads[backward] = grads_wrt_weights_and_context(layer, z0, theta, loss_weights=lw)
    for a, b in zip(grads["implicit"], grads["phantom"]):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_damped_multistep_phantom_value_is_z_star_and_gradient_is_the_damped_steps(rng):
    z0, theta = separated_particles(rng, batch=2)
    frozen = np.zeros((2, 3), bool)
    frozen[:, 0] = True  # the first particle of each sample stays at z0
    lw = _loss_weights(rng, z0.shape)
    layer = flow_layer(SinMap(), eta=1.0, max_steps=20, tol=1e-4,
                       phantom_steps=2, phantom_damping=0.5)
    out, grads = grads_wrt_weights_and_context(layer, z0, theta, loss_weights=lw,
                                               frozen_mask=frozen)
    z_star = layer(z0, theta, frozen_mask=frozen, training=False)
    # The value is z* (here from a traced and an eager run of the same 20-step
    # solve, whose float32 rounding differs: 1e-5), and frozen rows are z0 bit for bit.
    np.testing.assert_allclose(to_numpy(out), to_numpy(z_star) * to_numpy(lw), atol=1e-5)
    np.testing.assert_array_equal(to_numpy(out)[:, 0], z0[:, 0] * to_numpy(lw)[:, 0])
    np.testing.assert_array_equal(to_numpy(z_star)[:, 0], z0[:, 0])
    f = layer.map_layer
    weights = [ops.convert_to_tensor(v.value) for v in f.trainable_variables]
    keep = ops.convert_to_tensor(frozen[..., None])

    def damped(s, w, th):
        z = ops.stop_gradient(z_star)
        for _ in range(2):
            fz, _ = f.stateless_call([s, w], [], z, th)
            z = ops.where(keep, z0, 0.5 * z + 0.5 * fz)
        return z * lw

    _, ref = backend.vjp(damped, weights + [ops.convert_to_tensor(theta)], ops.ones(z0.shape))
    # The same function at z* from the traced and from the eager solve (up to 1e-5
    # apart, above): 1e-5.
    for g, r in zip(grads, ref):
        np.testing.assert_allclose(g, to_numpy(r), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backward", ["phantom", "implicit", "unrolled"])
def test_duplicate_particles_give_finite_outputs_and_gradients(rng, backward):
    z0 = np.repeat(rng.normal(size=(2, 1, 2)).astype("float32"), 4, axis=1)  # all equal
    theta = np.zeros((2, 1, 2), "float32")
    layer = flow_layer(SinMap(), eta=1.0, max_steps=5, tol=0.0, backward=backward)
    out, grads = grads_wrt_weights_and_context(layer, z0, theta)
    assert np.all(np.isfinite(to_numpy(out)))
    assert all(np.all(np.isfinite(g)) for g in grads)


def _linear_adjoint_problem(scales, shape=(5, 2)):
    """``w = g + J^T w`` with ``J^T = diag(scale_b)`` per sample: solution ``g / (1 - s)``."""
    scales = np.asarray(scales, "float32")
    g = np.random.default_rng(1).normal(size=(len(scales),) + shape).astype("float32")
    s = ops.convert_to_tensor(scales.reshape((-1,) + (1,) * len(shape)))

    def jt(w):
        return s * w

    return jt, ops.convert_to_tensor(g), g, scales


@pytest.mark.parametrize("method", ["fixed_point", "anderson"])
def test_adjoint_solve_is_per_sample_with_per_sample_fallback(method):
    from ddeq_keras.solvers.linear import solve_adjoint

    # Sample 1's Jacobian is NaN (a broken equilibrium): it falls back to w = g.
    jt, g, g_np, scales = _linear_adjoint_problem([0.5, np.nan, 0.9])
    w, steps, fallback = solve_adjoint(jt, g, max_steps=200, tol=1e-6, method=method)
    w, steps, fallback = to_numpy(w), to_numpy(steps), to_numpy(fallback)
    # The contractive samples reach g / (1 - s) (to the relative tolerance, 1e-5)
    # whatever happens to the broken one.
    np.testing.assert_allclose(w[0], g_np[0] / 0.5, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w[2], g_np[2] / 0.1, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(w[1], g_np[1])
    assert fallback.tolist() == [False, True, False]
    # Each sample stops on its own, as if it were alone (fixed-point iteration:
    # the easy one long before the slow one).
    alone, steps_alone, _ = solve_adjoint(*_linear_adjoint_problem([0.5])[:2], max_steps=200,
                                          tol=1e-6, method=method)
    assert steps[0] == int(to_numpy(steps_alone)[0])
    if method == "fixed_point":
        assert steps[0] < steps[2]


def test_fixed_point_adjoint_falls_back_where_it_diverges():
    from ddeq_keras.solvers.linear import solve_adjoint

    jt, g, g_np, _ = _linear_adjoint_problem([0.5, 1.5])  # 1.5: iteration diverges
    w, steps, fallback = solve_adjoint(jt, g, max_steps=200, tol=1e-6)
    assert to_numpy(fallback).tolist() == [False, True]
    np.testing.assert_array_equal(to_numpy(w)[1], g_np[1])
    np.testing.assert_allclose(to_numpy(w)[0], g_np[0] / 0.5, rtol=1e-5, atol=1e-5)


def test_anderson_adjoint_needs_fewer_steps_for_the_same_solution():
    from ddeq_keras.solvers.linear import solve_adjoint

    jt, g, g_np, _ = _linear_adjoint_problem([0.95, 0.9])
    fixed = solve_adjoint(jt, g, max_steps=1000, tol=1e-7, method="fixed_point")
    anderson = solve_adjoint(jt, g, max_steps=1000, tol=1e-7, method="anderson")
    # Same solution to the tolerance (solution size ~20 g): 1e-3 absolute.
    np.testing.assert_allclose(to_numpy(anderson[0]), to_numpy(fixed[0]), atol=1e-3, rtol=1e-4)
    assert np.all(to_numpy(anderson[1]) * 4 < to_numpy(fixed[1]))


def test_implicit_gradient_with_anderson_adjoint_matches_fixed_point(rng):
    z0, theta = separated_particles(rng, batch=2)
    lw = _loss_weights(rng, z0.shape)
    grads = {}
    for method in ("fixed_point", "anderson"):
        layer = flow_layer(SinMap(), solver="anderson", max_steps=50, tol=1e-8,
                           backward="implicit", implicit_method=method, implicit_tol=1e-8,
                           kernel="gaussian")
        _, grads[method] = grads_wrt_weights_and_context(layer, z0, theta, loss_weights=lw)
    # Two solvers of the same linear system to 1e-8: float32 rounding, 1e-5.
    for a, b in zip(grads["anderson"], grads["fixed_point"]):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_values_are_checked_once_per_model_call_with_scalar_transfers(rng, monkeypatch):
    # The model's boundary checks its input values (finite points, non-empty masks)
    # with one scalar reduction each; the equilibrium layer and the map never copy
    # tensors to the host (dropout masks and context included).
    from ddeq_keras import validation
    from ddeq_keras.models import create_model

    model = create_model("ddeq_mnist", build=False, latent_dim=16, hidden_dim=4,
                         bilinear_dim=4, num_heads=2, ff_dim=16, max_steps=5)
    x = {"points": rng.normal(size=(2, 12, 2)).astype("float32"),
         "mask": np.ones((2, 12), bool)}
    model(x, training=True)  # build
    calls = []
    original = validation._all_true
    monkeypatch.setattr(validation, "_all_true", lambda c: calls.append(c.shape) or original(c))
    model(x, training=True)
    assert [tuple(s) for s in calls] == [(2, 12, 2), (2,)]
