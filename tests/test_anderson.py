"""The Anderson-accelerated solver: the flow's equilibrium, its stopping rule, its masks,
in far fewer evaluations of the map."""

import keras
import numpy as np
import pytest
from keras import ops

from conftest import to_numpy
from ddeq_keras.layers import GradientFlowEquilibrium
from ddeq_keras.solvers import MAX_STEPS, AndersonSolver, EulerFlow, FlowProblem, get_solver
from maps import SinMap, grads_wrt_weights_and_context, separated_particles, flow_layer

S, W, THETA = 0.5, 0.1, 0.3


def sin_map(z):
    # `maps.SinMap` with theta = 0.3 and no coupling: particle-wise fixed points at
    # theta + arcsin(w / s) + 2 k pi in each coordinate.
    return z - S * ops.sin(z - THETA) + W


def analytic_fixed_point(z0):
    k = np.round((z0 - THETA - np.arcsin(W / S)) / (2 * np.pi))
    return THETA + np.arcsin(W / S) + 2 * np.pi * k


def test_reaches_the_equilibrium_where_riesz_euler_stalls(rng):
    z0, _ = separated_particles(rng, batch=3, noise=0.5)
    problem = FlowProblem(sin_map)  # the method's Riesz kernel
    tol = 1e-4
    anderson = AndersonSolver(max_steps=50, tol=tol).solve(problem, ops.convert_to_tensor(z0))
    euler = EulerFlow(eta=1.0, max_steps=200, tol=tol).solve(problem, ops.convert_to_tensor(z0))
    # The method's rule, per sample: MMD^2(z*, f(z*)) <= 1e-4 MMD^2(z0, f(z0)).
    assert np.all(to_numpy(anderson.converged))
    rel = to_numpy(anderson.mmd_final) / to_numpy(anderson.mmd_initial)
    assert np.all(rel <= tol)
    # Riesz MMD^2 is linear in small displacements, so rel 1e-4 of an O(1) start
    # leaves particles ~1e-3 from the exact fixed point (float32 is far finer).
    np.testing.assert_allclose(to_numpy(anderson.value), analytic_fixed_point(z0), atol=2e-3)
    # Fixed-step Riesz Euler plateaus at O(eta) (see test_flow): 200 steps do not get
    # there, while Anderson needs a handful of evaluations (no VJPs).
    assert not np.any(to_numpy(euler.converged))
    # Its MMD^2 rises and falls (up to ~8-fold) but does not grow: out of budget,
    # never taken for divergence (result code 3).
    np.testing.assert_array_equal(to_numpy(euler.result), MAX_STEPS)
    evaluations = to_numpy(anderson.num_evaluations)
    assert np.all(evaluations <= 201 / 4), evaluations
    np.testing.assert_array_equal(evaluations, to_numpy(anderson.num_steps) + 1)


def test_same_equilibrium_as_a_converging_flow(rng, float64):
    # With the Gaussian kernel fixed-step Euler converges linearly, so the two solvers
    # can be compared at a tight tolerance: both land on the same particles. float64:
    # in float32 MMD^2 rounds to 0 at |z - f(z)| ~ 2e-4.
    z0, _ = separated_particles(rng, batch=2, noise=0.5)
    problem = FlowProblem(sin_map, kernel="gaussian")
    z0 = ops.convert_to_tensor(z0.astype(float64))
    euler = EulerFlow(eta=2.0, max_steps=3000, tol=1e-12).solve(problem, z0)
    anderson = AndersonSolver(max_steps=100, tol=1e-12).solve(problem, z0)
    assert np.all(to_numpy(euler.converged)) and np.all(to_numpy(anderson.converged))
    # Gaussian MMD^2 is quadratic in displacements: rel 1e-12 leaves ~1e-6.
    np.testing.assert_allclose(to_numpy(anderson.value), to_numpy(euler.value), atol=1e-5)
    np.testing.assert_allclose(to_numpy(anderson.value), analytic_fixed_point(to_numpy(z0)),
                               atol=1e-5)
    assert to_numpy(anderson.num_evaluations).max() * 4 <= to_numpy(euler.num_evaluations).min()


def test_frozen_particles_stay_and_padding_is_ignored(rng):
    z0, theta = separated_particles(rng, batch=2)
    frozen = np.zeros((2, 3), bool)
    frozen[0, 1] = True
    layer = flow_layer(SinMap(), solver="anderson", max_steps=40, tol=1e-4,
                                    return_stats=True)
    z, _ = layer(z0, theta, frozen_mask=frozen)
    np.testing.assert_array_equal(to_numpy(z)[frozen], z0[frozen])
    assert np.abs(to_numpy(z)[~frozen] - z0[~frozen]).max() > 1e-2

    short = np.concatenate([z0, np.zeros((2, 1, 2), "float32")], axis=1)
    long = np.concatenate([z0, 50 * rng.normal(size=(2, 4, 2)).astype("float32")], axis=1)
    a, sa = layer(short, theta, mask=np.array([[1, 1, 1, 0]] * 2, bool))
    b, sb = layer(long, theta, mask=np.array([[1, 1, 1, 0, 0, 0, 0]] * 2, bool))
    # Same arithmetic up to sums over zeros (float32): 1e-5.
    np.testing.assert_allclose(to_numpy(a)[:, :3], to_numpy(b)[:, :3], atol=1e-5)
    np.testing.assert_array_equal(to_numpy(sa["num_evaluations"]), to_numpy(sb["num_evaluations"]))


def test_samples_are_independent_of_the_batch(rng):
    z0, theta = separated_particles(rng, batch=3, noise=1.0)
    layer = flow_layer(SinMap(), solver="anderson", max_steps=50, tol=1e-4,
                                    check_every=1, return_stats=True)
    full, stats = layer(z0, theta)
    alone, alone_stats = layer(z0[1:2], theta[1:2])
    # Each sample has its own Anderson weights; other batch shapes may round
    # differently (float32 Gram solves): 1e-4.
    np.testing.assert_allclose(to_numpy(full)[1], to_numpy(alone)[0], atol=1e-4)
    assert int(to_numpy(stats["num_evaluations"])[1]) == int(
        to_numpy(alone_stats["num_evaluations"])[0])


def test_never_returns_worse_than_its_best_iterate(rng):
    # An expanding map with no reachable fixed point in 3 steps: the solver runs out of
    # budget and must return its lowest-MMD iterate, whose MMD it reports.
    def expanding(z):
        return 2.5 * z + ops.sin(3.0 * z)

    z0 = ops.convert_to_tensor(rng.normal(size=(4, 5, 2)).astype("float32"))
    problem = FlowProblem(expanding)
    sol = AndersonSolver(max_steps=3, tol=0.0).solve(problem, z0)
    assert not np.any(to_numpy(sol.converged))
    np.testing.assert_array_equal(to_numpy(sol.num_steps), [3, 3, 3, 3])
    final = to_numpy(sol.mmd_final)
    assert np.all(final <= to_numpy(sol.mmd_initial) * (1 + 1e-6))
    # float32 MMD^2 of the same particles, recomputed: 1e-5 relative.
    np.testing.assert_allclose(to_numpy(problem.mmd(sol.value)), final, rtol=1e-5)


@pytest.mark.parametrize("backward", ["phantom", "implicit"])
def test_gradients_match_the_euler_equilibrium(rng, backward, float64):
    # Phantom and implicit gradients depend on the flow only through z*, so at the
    # same equilibrium the two solvers give the same gradients. Gaussian kernel, so
    # Euler converges tightly too; float64, both stop at rel 1e-12 (z* ~1e-6 apart).
    z0, theta = (a.astype(float64) for a in separated_particles(rng, batch=2))
    common = dict(max_steps=3000, tol=1e-12, kernel="gaussian", backward=backward,
                  dtype=float64, **({"implicit_tol": 1e-10} if backward == "implicit" else {}))
    euler = flow_layer(SinMap(dtype=float64), eta=2.0, **common)
    anderson = flow_layer(SinMap(dtype=float64), solver="anderson", **common)
    euler(z0, theta)
    anderson(z0, theta)
    anderson.set_weights(euler.get_weights())
    _, g_euler = grads_wrt_weights_and_context(euler, z0, theta)
    _, g_anderson = grads_wrt_weights_and_context(anderson, z0, theta)
    for a, b in zip(g_anderson, g_euler):
        assert np.all(np.isfinite(to_numpy(a)))
        # Gradients of size up to ~3 at equilibria ~1e-6 apart: 1e-5 abs + 1e-5 rel.
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-5, rtol=1e-5)


def test_serialises_and_validates(rng):
    z0, theta = separated_particles(rng)
    layer = flow_layer(SinMap(), solver="anderson", max_steps=20, tol=1e-4)
    out = to_numpy(layer(z0, theta))
    clone = GradientFlowEquilibrium.from_config(layer.get_config())
    clone(z0, theta)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == layer.get_config()
    assert isinstance(clone.solver, AndersonSolver)
    np.testing.assert_allclose(to_numpy(clone(z0, theta)), out, atol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored.solver, AndersonSolver) and restored.solver.max_steps == 20
    with pytest.raises(ValueError, match="memory"):
        AndersonSolver(memory=0)
    with pytest.raises(ValueError, match="regularization"):
        AndersonSolver(regularization=0.0)
    with pytest.raises(ValueError, match="solver"):
        get_solver("newton")
    # `eta` belongs to Euler only: an error for Anderson, never silently dropped.
    with pytest.raises(ValueError, match=r"does not take \['eta'\]"):
        get_solver("anderson", eta=5.0, max_steps=3)
    assert get_solver("anderson", memory=2, max_steps=3).memory == 2
