"""`ddeq_keras.ops` against straightforward NumPy references (masks and padding included).

Tolerance: float32 computations against float64 references, rtol 1e-5 / atol 1e-5
(a few float32 roundings of O(1) values).
"""

import ml_dtypes
import numpy as np
import pytest
from keras import ops

from conftest import to_numpy
from ddeq_keras import ops as dops

RTOL = ATOL = 1e-5


def _masked_cloud(rng, b=3, n=7, d=4):
    x = rng.normal(size=(b, n, d)).astype("float32")
    mask = rng.random((b, n)) < 0.7
    mask[:, 0] = True  # every sample has a valid point
    return x, mask


def _ref_mmd(a, b, kernel):
    def k(u, v):
        d = np.linalg.norm(u[:, None] - v[None], axis=-1)
        return -d if kernel == "riesz" else np.exp(-(d**2) / 2)

    return k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()


def test_masked_reductions_match_numpy(rng):
    x, mask = _masked_cloud(rng)
    for i in range(x.shape[0]):
        valid = x[i][mask[i]]
        np.testing.assert_allclose(to_numpy(dops.masked_sum(x, mask))[i], valid.sum(0), RTOL, ATOL)
        np.testing.assert_allclose(to_numpy(dops.masked_mean(x, mask))[i], valid.mean(0), RTOL, ATOL)
        np.testing.assert_allclose(to_numpy(dops.masked_max(x, mask))[i], valid.max(0), RTOL, ATOL)
        np.testing.assert_allclose(to_numpy(dops.masked_std(x, mask))[i], valid.std(0), RTOL, ATOL)
    np.testing.assert_allclose(to_numpy(dops.count_valid(mask)), mask.sum(1))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "int32"])
def test_masked_max_in_low_precision_and_integer_dtypes(dtype):
    # Small integers are exact in every dtype here, so the check is exact. A
    # sample without valid elements gives the dtype's lowest finite value
    # (never -inf, so later layers see no inf).
    x = np.array([[[1.0, -3.0], [-5.0, 2.0], [9.0, 9.0]],
                  [[-2.0, 4.0], [7.0, 7.0], [8.0, 8.0]]], "float32")
    mask = np.array([[True, True, False], [False, False, False]])
    got = dops.masked_max(ops.cast(x, dtype), mask)
    assert ops.dtype(got) == dtype
    got = to_numpy(ops.cast(got, "float64"))
    np.testing.assert_array_equal(got[0], [1.0, 2.0])
    lowest = float(ml_dtypes.finfo(dtype).min if "float" in dtype else np.iinfo(dtype).min)
    np.testing.assert_array_equal(got[1], [lowest, lowest])
    assert np.all(np.isfinite(got))


def test_masked_max_rejects_other_dtypes():
    with pytest.raises(ValueError, match="float or integer"):
        dops.masked_max(ops.ones((1, 2, 1), "bool"), np.array([[True, False]]))


def test_zero_padded_zeros_padded_rows_only(rng):
    x, mask = _masked_cloud(rng)
    got = to_numpy(dops.zero_padded(x, mask))
    np.testing.assert_array_equal(got, np.where(mask[..., None], x, 0.0))
    np.testing.assert_array_equal(to_numpy(dops.zero_padded(x, None)), x)


def test_reductions_ignore_padding_values(rng):
    x, mask = _masked_cloud(rng)
    garbage = np.where(mask[..., None], x, 1e6).astype("float32")
    for fn in (dops.masked_sum, dops.masked_mean, dops.masked_max):
        np.testing.assert_allclose(to_numpy(fn(garbage, mask)), to_numpy(fn(x, mask)), RTOL, ATOL)


@pytest.mark.parametrize("kernel", ["riesz", "gaussian"])
def test_mmd2_matches_numpy_with_masks(rng, kernel):
    a, am = _masked_cloud(rng, n=6)
    b, bm = _masked_cloud(rng, n=9)
    got = to_numpy(dops.mmd2(a, b, am, bm, kernel=kernel))
    assert got.shape == (3,)
    for i in range(3):
        ref = _ref_mmd(a[i][am[i]].astype("float64"), b[i][bm[i]].astype("float64"), kernel)
        np.testing.assert_allclose(got[i], ref, RTOL, ATOL)


def test_mmd2_is_zero_for_identical_sets_and_positive_otherwise(rng):
    a, am = _masked_cloud(rng)
    np.testing.assert_allclose(to_numpy(dops.mmd2(a, a, am, am)), 0.0, atol=ATOL)
    assert np.all(to_numpy(dops.mmd2(a, a + 1.0, am, am)) > 0.1)


def test_energy_distance_is_riesz_mmd_and_matches_definition(rng):
    a, am = _masked_cloud(rng)
    b, bm = _masked_cloud(rng)
    got = to_numpy(dops.energy_distance(a, b, am, bm))
    for i in range(3):
        u, v = a[i][am[i]].astype("float64"), b[i][bm[i]].astype("float64")
        dist = lambda p, q: np.linalg.norm(p[:, None] - q[None], axis=-1).mean()  # noqa: E731
        ref = 2 * dist(u, v) - dist(u, u) - dist(v, v)
        np.testing.assert_allclose(got[i], ref, RTOL, ATOL)


@pytest.mark.parametrize("squared", [True, False])
def test_chamfer_matches_numpy(rng, squared):
    a, am = _masked_cloud(rng, n=5)
    b, bm = _masked_cloud(rng, n=8)
    got = to_numpy(dops.chamfer_distance(a, b, am, bm, squared=squared))
    for i in range(3):
        u, v = a[i][am[i]], b[i][bm[i]]
        d = np.linalg.norm(u[:, None] - v[None], axis=-1).astype("float64")
        d = d**2 if squared else d
        np.testing.assert_allclose(got[i], d.min(1).mean() + d.min(0).mean(), RTOL, ATOL)


def test_safe_norm_value_and_zero_gradient_at_zero():
    from ddeq_keras import backend

    x = ops.convert_to_tensor(np.array([[0.0, 0.0], [3.0, 4.0]], "float32"))
    np.testing.assert_allclose(to_numpy(dops.safe_norm(x)), [0.0, 5.0], atol=1e-6)
    _, g = backend.value_and_grad(lambda v: ops.sum(dops.safe_norm(v)), x)
    np.testing.assert_allclose(to_numpy(g), [[0.0, 0.0], [0.6, 0.8]], atol=1e-6)


def test_duplicate_points_give_finite_mmd_gradient():
    from ddeq_keras import backend

    a = ops.convert_to_tensor(np.array([[[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]]], "float32"))
    b = ops.convert_to_tensor(np.array([[[1.0, 2.0], [0.5, 0.5], [1.0, 2.0]]], "float32"))
    for kernel in ("riesz", "gaussian"):
        v, g = backend.value_and_grad(lambda z: ops.sum(dops.mmd2(z, b, kernel=kernel)), a)
        assert np.isfinite(to_numpy(v)) and np.all(np.isfinite(to_numpy(g)))
