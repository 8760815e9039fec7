"""Bad input raises a ValueError naming the argument, before any work is done."""

import numpy as np
import pytest

from ddeq_keras.layers import GradientFlowEquilibrium
from ddeq_keras.solvers import EulerFlow
from maps import SinMap


@pytest.fixture
def layer():
    layer = GradientFlowEquilibrium(SinMap(), max_steps=3)
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


def test_sample_without_valid_particle(layer):
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)
    with pytest.raises(ValueError, match=r"`mask` has no valid entry for sample\(s\) \[1\]"):
        layer(np.zeros((2, 4, 2), "float32"), THETA, mask=mask)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_particles(layer, bad):
    z0 = np.zeros((2, 4, 2), "float32")
    z0[1, 2, 0] = bad
    with pytest.raises(ValueError, match=r"`z0` has 1 point\(s\) with NaN or infinite"):
        layer(z0, THETA)


def test_non_finite_context(layer):
    theta = THETA.copy()
    theta[0, 0, 1] = np.nan
    with pytest.raises(ValueError, match=r"`context`.*NaN or infinite"):
        layer(np.zeros((2, 4, 2), "float32"), theta)


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
        GradientFlowEquilibrium(SinMap(), **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"backward": "adjoint"}, r"`backward` must be one of"),
        ({"phantom_steps": 0}, r"`phantom_steps` must be an integer >= 1"),
        ({"phantom_damping": 0.0}, r"`phantom_damping` must be in \(0, 1\]"),
        ({"backward": "implicit", "implicit_max_steps": 0}, r"`implicit_max_steps`"),
        ({"kernel": "laplace"}, r"`kernel` must be"),
        ({"solver": "rk4"}, r"`solver` must be one of"),
    ],
)
def test_bad_layer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientFlowEquilibrium(SinMap(), **kwargs)


def test_map_must_be_a_layer():
    with pytest.raises(ValueError, match=r"`map_layer` must be a keras.layers.Layer"):
        GradientFlowEquilibrium(lambda z, c: z)
