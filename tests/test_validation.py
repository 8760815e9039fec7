"""Bad input raises a ValueError naming the argument, before any work is done.

The equilibrium layer checks shapes (values are checked once, at a model's
boundary: see test_models.py); non-finite values inside the layer end the solve
of that sample with the result code NON_FINITE instead of spreading NaN.
"""

import numpy as np
import pytest

from ddeq_keras.layers import GradientFlowEquilibrium
from conftest import to_numpy
from ddeq_keras.solvers import CONVERGED, NON_FINITE, EulerFlow
from maps import SinMap, flow_layer


@pytest.fixture
def layer():
    layer = GradientFlowEquilibrium(SinMap(), return_stats=True)
    layer(np.zeros((2, 4, 2), "float32"), np.zeros((2, 1, 2), "float32"))  # build for dim 2
    return layer


THETA = np.zeros((2, 1, 2), "float32")


def test_wrong_rank(layer):
    with pytest.raises(ValueError, match=r"`z0` must have rank 3"):
        layer(np.zeros((2, 4), "float32"), THETA)


def test_wrong_feature_size(layer):
    with pytest.raises(ValueError, match=r"`z0` must have 2 features"):
        layer(np.zeros((2, 4, 3), "float32"), THETA)


def test_empty_set(layer):
    with pytest.raises(ValueError, match=r"`z0` is empty"):
        layer(np.zeros((2, 0, 2), "float32"), THETA)


@pytest.mark.parametrize("shape", [(2, 5), (3, 4), (2, 4, 1)])
def test_mask_of_wrong_shape(layer, shape):
    with pytest.raises(ValueError, match=r"`mask` must have shape \(batch, num_points\)"):
        layer(np.zeros((2, 4, 2), "float32"), THETA, mask=np.ones(shape, bool))


def test_frozen_mask_of_wrong_shape(layer):
    with pytest.raises(ValueError, match=r"`frozen_mask` must have shape"):
        layer(np.zeros((2, 4, 2), "float32"), THETA, frozen_mask=np.ones((2, 3), bool))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["z0", "context"])
def test_non_finite_values_stop_that_sample_with_a_result_code(layer, bad, where):
    z0 = np.random.default_rng(0).normal(size=(2, 4, 2)).astype("float32")
    theta = THETA.copy()
    if where == "z0":
        z0[1, 2, 0] = bad
    else:
        theta[1, 0, 1] = bad
    z, stats = layer(z0, theta)
    result = to_numpy(stats["result"])
    assert result[1] == NON_FINITE and result[0] == CONVERGED
    assert not to_numpy(stats["converged"])[1]
    assert np.all(np.isfinite(to_numpy(z)[0]))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"eta": 0.0}, r"`eta` must be a positive"),
        ({"eta": -1.0}, r"`eta` must be a positive"),
        ({"max_steps": 0}, r"`max_steps` must be an integer >= 1"),
        ({"max_steps": 2.5}, r"`max_steps` must be an integer >= 1"),
        ({"tol": -1.0}, r"`tol` must be >= 0"),
        ({"stopping": "median"}, r"`stopping` must be one of"),
        ({"check_every": 0}, r"`check_every` must be an integer >= 1"),
    ],
)
def test_bad_solver_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EulerFlow(**kwargs)
    with pytest.raises(ValueError, match=match):
        flow_layer(SinMap(), **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"backward": "adjoint"}, r"`backward` must be one of"),
        ({"phantom_steps": 0}, r"`steps` must be an integer >= 1"),
        ({"phantom_damping": 0.0}, r"`damping` must be in \(0, 1\]"),
        ({"backward": "implicit", "implicit_max_steps": 0}, r"`max_steps` must be"),
        ({"backward": "implicit", "implicit_method": "gmres"}, r"`method` must be one of"),
        ({"kernel": "laplace"}, r"`kernel` must be"),
        ({"solver": "rk4"}, r"`solver` must be one of"),
    ],
)
def test_bad_layer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        flow_layer(SinMap(), **kwargs)


def test_map_must_be_a_layer():
    with pytest.raises(ValueError, match=r"`map_layer` must be a keras.layers.Layer"):
        GradientFlowEquilibrium(lambda z, c: z)
