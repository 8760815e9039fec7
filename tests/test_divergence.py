"""Failed solves stop early and say why: divergence (code 3) and NaN/inf (code 2).

A sample whose ``MMD^2`` keeps growing stops after ``divergence_patience``
rises in a row once it is ``divergence_factor`` times above its lowest value,
with result `DIVERGED`; one whose map produces NaN/inf stops with
`NON_FINITE`. Both return their best (lowest ``MMD^2``) finite iterate, and
the other samples of the batch are untouched. Maps: `maps.ScaleMap` (plain
iteration diverges geometrically) and `maps.QuadraticMap` (Euler with too
large a step diverges). That a healthy flow whose MMD^2 rises and falls is
not taken for diverging: `test_anderson` (the stalling Riesz Euler flow ends
out of budget) and the input properties (which count every result code).
"""

import functools

import keras
import numpy as np
import pytest
from keras import ops

from conftest import to_numpy
from ddeq_keras.layers import GradientFlowEquilibrium
from ddeq_keras.solvers import (
    CONVERGED,
    DIVERGED,
    MAX_STEPS,
    NON_FINITE,
    AndersonSolver,
    EulerFlow,
    FlowProblem,
    get_solver,
)
from maps import QuadraticMap, ScaleMap

# name -> (solver options, map, per-sample context: [healthy, diverging])
CASES = {
    "plain_iteration": (dict(solver="anderson", memory=1, max_steps=100), ScaleMap, [0.5, 3.0]),
    "euler_step_too_large": (dict(solver="euler", eta=30.0, max_steps=100), QuadraticMap,
                             [0.01, 0.3]),
}


def _problem(case):
    _, map_cls, factors = CASES[case]
    context = ops.convert_to_tensor(np.array(factors, "float32").reshape(-1, 1, 1))
    fn = map_cls()
    return FlowProblem(lambda z: fn(z, context))


def _start():
    return np.random.default_rng(0).normal(size=(2, 6, 2)).astype("float32")


@functools.lru_cache(maxsize=None)
def _solution(case, unroll=False, **options):
    """A solve as NumPy, once per module (JAX compiles every eager solve)."""
    kwargs = dict(CASES[case][0], **options)
    solver = get_solver(kwargs.pop("solver"), **kwargs)
    sol = solver.solve(_problem(case), ops.convert_to_tensor(_start()), unroll=unroll)
    return type(sol)(*(to_numpy(t) for t in sol))


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_diverging_sample_stops_early_at_its_best_iterate(case):
    sol = _solution(case)
    assert sol.result.tolist() == [CONVERGED, DIVERGED]
    # Stopped a few iterations after the 5 rises it needs, far from the budget.
    assert sol.num_steps[1] <= 12, sol.num_steps
    assert np.all(np.isfinite(sol.value))
    # The best iterate: its MMD^2 is the one reported, and no worse than the start.
    m_best = to_numpy(_problem(case).mmd(ops.convert_to_tensor(sol.value)))[1]
    np.testing.assert_allclose(m_best, sol.mmd_final[1], rtol=1e-5)
    assert sol.mmd_final[1] <= sol.mmd_initial[1]


@pytest.mark.parametrize("case", sorted(CASES))
def test_without_the_divergence_test_the_blow_up_ends_non_finite_not_nan(case):
    # The same blow-up, left to run, overflows: NON_FINITE, still a finite output
    # (the best iterate). The healthy sample is the same whether its neighbour
    # stopped for divergence or ran into inf/NaN (same arithmetic: 1e-6), so
    # neither poisons it.
    sol = _solution(case, divergence_patience=None)
    assert sol.result.tolist() == [CONVERGED, NON_FINITE]
    assert sol.num_steps[1] < 100
    assert np.all(np.isfinite(sol.value)) and np.all(np.isfinite(sol.mmd_final))
    watched = _solution(case)
    np.testing.assert_allclose(sol.value[0], watched.value[0], atol=1e-6)
    assert sol.num_steps[0] == watched.num_steps[0]


def test_a_nan_from_the_first_evaluation_keeps_the_start_and_spares_the_others():
    # Sample 1's map gives NaN everywhere: it stops at once with its start.
    z0 = _start()
    poison = ops.convert_to_tensor(np.array([0.0, np.nan], "float32").reshape(-1, 1, 1))
    for solver in (AndersonSolver(max_steps=30), EulerFlow(eta=1.0, max_steps=30)):
        sol = solver.solve(FlowProblem(lambda z: 0.5 * z + 1.0 + poison),
                           ops.convert_to_tensor(z0))
        result = to_numpy(sol.result)
        assert result[1] == NON_FINITE and result[0] in (CONVERGED, MAX_STEPS)
        assert int(to_numpy(sol.num_steps)[1]) == 0
        np.testing.assert_array_equal(to_numpy(sol.value)[1], z0[1])
        assert np.all(np.isfinite(to_numpy(sol.value)))


def test_the_layer_reports_divergence_and_its_training_output_is_finite(rng):
    layer = GradientFlowEquilibrium(ScaleMap(), solver=AndersonSolver(memory=1, max_steps=60),
                                    return_stats=True)
    z0 = rng.normal(size=(2, 6, 2)).astype("float32")
    context = np.array([0.5, 3.0], "float32").reshape(-1, 1, 1)
    for training in (False, True):
        z, stats = layer(z0, context, training=training)
        assert to_numpy(stats["result"]).tolist() == [CONVERGED, DIVERGED]
        assert np.all(np.isfinite(to_numpy(z)))


def test_unrolled_solves_stop_for_the_same_reason():
    compiled = _solution("euler_step_too_large")
    unrolled = _solution("euler_step_too_large", unroll=True)
    np.testing.assert_array_equal(unrolled.result, compiled.result)
    np.testing.assert_array_equal(unrolled.num_steps, compiled.num_steps)
    # The compiled loop and the Python loop round differently (XLA fuses ops),
    # and Riesz Euler steps near the equilibrium amplify that (see test_flow):
    # 1e-4 (stopping for another reason would move a sample by O(1)).
    np.testing.assert_allclose(unrolled.value, compiled.value, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"divergence_patience": 0}, r"`divergence_patience` must be an integer >= 1 or None"),
     ({"divergence_patience": 2.5}, r"`divergence_patience` must be an integer >= 1 or None"),
     ({"divergence_factor": 1.0}, r"`divergence_factor` must be > 1")],
)
def test_bad_divergence_options(kwargs, match):
    for cls in (EulerFlow, AndersonSolver):
        with pytest.raises(ValueError, match=match):
            cls(**kwargs)


def test_divergence_options_round_trip():
    for solver in (EulerFlow(divergence_patience=None), AndersonSolver(divergence_factor=10.0)):
        config = solver.get_config()
        clone = type(solver).from_config(config)
        assert clone.get_config() == config
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(solver))
        assert restored.get_config() == config
    # Configs saved before these options existed still load (with the defaults).
    old = AndersonSolver().get_config()
    old.pop("divergence_patience"), old.pop("divergence_factor")
    assert AndersonSolver.from_config(old).divergence_patience == 5
