"""`training/particle_spread.py`: the pieces of the collapse check.

The full check runs full-size DDEQs (a minute per solver on a CPU core); here its
parts run on small arrays: solver specs, the recipe-like cut, the 3-D test clouds,
and the spread of a model's generated points or equilibrium particles (stand-in
models return fixed outputs). Exact or float32 arithmetic on small numbers (1e-6).
"""

import numpy as np
import pytest

from training import particle_spread as cs


def test_solver_specs_parse_to_name_and_options():
    assert cs.parse_solver("anderson") == ("anderson", {})
    assert cs.parse_solver("euler:eta=1,max_steps=200,tol=0") == (
        "euler", {"eta": 1, "max_steps": 200, "tol": 0})
    for spec in cs.DEFAULT_SOLVERS:
        name, options = cs.parse_solver(spec)
        assert name in ("anderson", "euler") and "max_steps" in options
    with pytest.raises(SystemExit, match="not KEY=VALUE"):
        cs.parse_solver("euler:eta")


def test_cut_removes_the_points_near_the_centres_of_a_standardised_cloud():
    rng = np.random.default_rng(0)
    clouds = [rng.normal(size=(200, 2)) * [3.0, 0.5] + 7.0 for _ in range(3)]
    partial = cs.cut_clouds(clouds, radius=0.6, num_centers=2, seed=5)
    for cloud, part in zip(clouds, partial):
        standard = (cloud - cloud.mean(0)) / cloud.std(0)
        assert 0 < len(part) < len(cloud) and part.dtype == np.float32
        # Every kept point is a point of the standardised cloud...
        gaps = np.min(np.linalg.norm(part[:, None] - standard[None], axis=-1), axis=1)
        np.testing.assert_allclose(gaps, 0.0, atol=1e-6)
    # ... and the same seed cuts the same way.
    again = cs.cut_clouds(clouds, radius=0.6, num_centers=2, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(partial, again))


def test_generated_std_is_zero_for_coincident_points():
    class Stub:
        def predict(self, clouds, verbose=0):
            points = np.array([[[0, 0], [2, 4], [1, 1], [1, 1]],
                               [[0, 0], [0, 0], [0, 0], [4, 2]]], "float32")
            generated = np.array([[False, False, True, True], [False, True, False, True]])
            return {"points": points, "generated": generated}

    spread = cs.generated_std(Stub(), [None, None])
    assert spread[0] == 0.0  # both added points at (1, 1)
    assert spread[1] == pytest.approx((2.0 + 1.0) / 2, abs=1e-6)  # (0,0), (4,2): std 2, 1


def test_particle_std_is_zero_for_coincident_particles():
    class Stub:
        def preprocess(self, clouds):
            return clouds

        def backbone(self, batch, training=False):
            assert training is False
            together = np.ones((3, 4), "float32")
            apart = np.array([[0, 0], [2, 4]], "float32")
            return {"particles": np.stack([together[:2, :2], apart]),
                    "stats": {"mmd_initial": np.array([2.0, 0.0], "float32"),
                              "mmd_final": np.array([1e-4, 0.0], "float32")}}

    spread, rel, particles = cs.particle_std(Stub(), ["a", "b"])
    assert spread == [0.0, pytest.approx(1.5, abs=1e-6)] and particles.shape == (2, 2, 2)
    # Relative to the initial MMD^2; an initial 0 (already an equilibrium) gives 0, not NaN.
    assert rel == [pytest.approx(5e-5, rel=1e-6), 0.0]


def test_distance_to_centre_of_reference_particles():
    reference = np.array([[[0, 0], [2, 0]], [[1, 1], [1, 1]]], "float32")  # centres (1,0), (1,1)
    particles = np.array([[[1, 0], [1, 0]], [[4, 5], [1, 1]]], "float32")
    assert cs.distance_to_centre(particles, reference) == [0.0, pytest.approx(2.5)]
    assert cs.distance_to_centre(reference, reference) == [1.0, 0.0]


def test_ellipsoid_clouds():
    clouds = cs.ellipsoids(3, num_points=50, seed=2)
    assert [c.shape for c in clouds] == [(50, 3)] * 3 and clouds[0].dtype == np.float32
    assert all(np.all(np.abs(c) <= 1.0) for c in clouds)
    assert np.array_equal(clouds[1], cs.ellipsoids(3, num_points=50, seed=2)[1])


def test_model_options_only_change_an_untrained_configuration(capsys):
    with pytest.raises(SystemExit):
        cs.main(["--preset", "ddeq_mnist", "--model-option", 'residual="initial"'])
    assert "--untrained only" in capsys.readouterr().err
