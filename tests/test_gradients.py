"""Gradients through the equilibrium: unrolled, implicit and phantom."""

import numpy as np
import pytest
from keras import ops

from conftest import to_numpy
from ddeq_keras import backend
from ddeq_keras.layers import GradientFlowEquilibrium
from maps import SinMap, grads_wrt_weights_and_context, separated_particles


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
    layer = GradientFlowEquilibrium(SinMap(), eta=0.5, max_steps=6, tol=0.0, backward="unrolled")
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
    unrolled = GradientFlowEquilibrium(SinMap(dtype=float64), backward="unrolled", **common)
    implicit = GradientFlowEquilibrium(SinMap(dtype=float64), backward="implicit",
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
    layer = GradientFlowEquilibrium(SinMap(), eta=1.0, max_steps=20, tol=1e-4)
    out, grads = grads_wrt_weights_and_context(layer, z0, theta, loss_weights=lw)
    z_star = layer(z0, theta, training=False)
    f = layer.map_layer
    weights = [ops.convert_to_tensor(v.value) for v in f.trainable_variables]

    def phantom(s, w, th):
        y, _ = f.stateless_call([s, w], [], ops.stop_gradient(z_star), th)
        return y * lw

    ref_out, ref = backend.vjp(phantom, weights + [ops.convert_to_tensor(theta)], ops.ones(z0.shape))
    np.testing.assert_allclose(to_numpy(out), to_numpy(ref_out), atol=1e-6)
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
        layer = GradientFlowEquilibrium(SinMap(), eta=1.0, max_steps=10, tol=0.0, backward=backward)
        layer(z0, theta)
        layer.map_layer.s.assign(np.full((2,), 2.5, "float32"))
        out, grads[backward] = grads_wrt_weights_and_context(layer, z0, theta, loss_weights=lw)
    for a, b in zip(grads["implicit"], grads["phantom"]):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_damped_multistep_phantom_output(rng):
    z0, theta = separated_particles(rng, batch=2)
    layer = GradientFlowEquilibrium(SinMap(), eta=1.0, max_steps=20, tol=1e-4,
                                    phantom_steps=2, phantom_damping=0.5)
    out = to_numpy(layer(z0, theta, training=True))
    z = layer(z0, theta, training=False)
    for _ in range(2):
        z = 0.5 * z + 0.5 * layer.map_layer(z, theta)
    np.testing.assert_allclose(out, to_numpy(z), atol=1e-6)


@pytest.mark.parametrize("backward", ["phantom", "implicit", "unrolled"])
def test_duplicate_particles_give_finite_outputs_and_gradients(rng, backward):
    z0 = np.repeat(rng.normal(size=(2, 1, 2)).astype("float32"), 4, axis=1)  # all equal
    theta = np.zeros((2, 1, 2), "float32")
    layer = GradientFlowEquilibrium(SinMap(), eta=1.0, max_steps=5, tol=0.0, backward=backward)
    out, grads = grads_wrt_weights_and_context(layer, z0, theta)
    assert np.all(np.isfinite(to_numpy(out)))
    assert all(np.all(np.isfinite(g)) for g in grads)
