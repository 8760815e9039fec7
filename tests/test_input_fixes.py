"""Regression tests for what the input properties (`test_input_properties.py`) found.

Each test pins one fix with a plain example: padding values never leak,
compiled `predict` checks values on the host, dtypes are named before Keras
converts them, the completer survives coordinates ~100, the preprocessor is
scale-free, order-free and names every bad cloud.
"""

import keras
import numpy as np
import pytest
from keras import ops

from conftest import to_numpy
from ddeq_keras.layers import AffineCouplingEmbedding
from ddeq_keras.preprocessing import PointCloudPreprocessor, normalize_points
from ddeq_keras.solvers import CONVERGED
from property_models import profile, property_model, raw_length

NAMES = ["ddeq_mnist_completion", "pointnet_mnist"]


@pytest.fixture(scope="module")
def models():
    # The property tests' models (built once per process, their predict step
    # compiled for one shape): no extra compilation here.
    return {name: property_model(name) for name in NAMES}


def _batch(scale=1.0, garbage=0.0):
    """A batch of the property tests' compiled shape (rows x length)."""
    rows, length = profile().rows[0], raw_length()
    rng = np.random.default_rng(0)
    mask = np.arange(length)[None, :] < rng.integers(1, length + 1, size=(rows, 1))
    points = np.where(mask[..., None], scale * rng.normal(size=(rows, length, 2)), garbage)
    return {"points": points.astype("float32"), "mask": mask}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("garbage", [np.nan, np.inf, 1e30])
def test_padding_may_hold_anything(models, name, garbage):
    # Padding rows are ignored (zeroed at the model boundary); NaN there used to
    # be an error, and 0 * NaN would have leaked into sums over the set.
    model = models[name]
    clean = keras.tree.map_structure(np.asarray, model.predict(_batch(), verbose=0))
    dirty = keras.tree.map_structure(np.asarray, model.predict(_batch(garbage=garbage), verbose=0))
    keras.tree.map_structure(np.testing.assert_array_equal, dirty, clean)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "value,match",
    [(np.nan, r"`inputs\['points'\]` has 1 point\(s\) with NaN"),
     (1e20, r"beyond \+-1e\+15 \(up to 1e\+20; sample\(s\) \[1\]\)")],
)
def test_predict_checks_values_before_compiling(models, name, value, match):
    # Compiled steps cannot look at values: NaN used to pass silently there.
    x = _batch()
    x["points"][1, np.flatnonzero(x["mask"][1])[0], 0] = value
    for call in (lambda: models[name].predict(x, verbose=0),
                 lambda: models[name].predict_on_batch(x),
                 lambda: models[name](x)):
        with pytest.raises(ValueError, match=match):
            call()


def test_dtypes_are_named_before_keras_converts_them(models):
    x = _batch()
    model = models["pointnet_mnist"]
    for bad in (x["points"].astype(str), x["points"] + 1j, x["points"] > 0):
        with pytest.raises(ValueError, match=r"`inputs\['points'\]` must hold real numbers"):
            model({"points": bad, "mask": x["mask"]})
    with pytest.raises(ValueError, match=r"`inputs\['mask'\]` must hold booleans or numbers"):
        model({"points": x["points"], "mask": x["mask"].astype(str)})
    # Integer coordinates and 0/1 masks are fine: the same as floats and booleans.
    grid = {"points": np.round(x["points"] * 3).astype("int32"), "mask": x["mask"].astype("int32")}
    as_float = {"points": grid["points"].astype("float32"), "mask": x["mask"]}
    np.testing.assert_allclose(to_numpy(model(grid)), to_numpy(model(as_float)), atol=1e-6)


def test_completer_takes_clouds_far_from_the_origin(models):
    # The coupling's exp(s(z1)) overflowed for points ~100 from the origin and
    # 0 * inf made every embedded point NaN (result code 2 for every sample).
    model = models["ddeq_mnist_completion"]
    for scale in (1e2, 1e4):
        out, stats = keras.Model.predict(model, _batch(scale), verbose=0)
        assert np.all(np.isfinite(out["points"]))
        assert np.all(np.asarray(stats["result"]) == CONVERGED)


def test_coupling_gradient_stays_finite_where_exp_overflows():
    layer = AffineCouplingEmbedding(latent_dim=8)
    points = ops.convert_to_tensor(np.full((1, 3, 2), 1e3, "float32"))
    layer(points)
    layer.scale_output.bias.assign(np.full(4, 200.0, "float32"))  # exp(200) = inf
    out = to_numpy(layer(points))
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[..., :2], 1e3)


@pytest.mark.parametrize("method", ["std", "sphere"])
@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e20, 1e30])
def test_normalisation_is_scale_free(method, scale):
    # Sums of squares underflowed (clouds ~1e-20 stayed ~0) or overflowed (clouds
    # ~1e20 collapsed to 0); now any finite float32 cloud normalises the same.
    x = np.random.default_rng(0).normal(size=(1, 50, 2)).astype("float32")
    w = ops.ones((1, 50, 1))
    unit = to_numpy(normalize_points(ops.convert_to_tensor(x), w, method, ops))
    scaled = to_numpy(normalize_points(ops.convert_to_tensor(x * scale), w, method, ops))
    np.testing.assert_allclose(scaled, unit, atol=1e-5)


def test_a_constant_axis_normalises_to_zero_not_to_one():
    # A "1" drawn in one column at x = 13.37: the mean's rounding left every
    # point at the same tiny offset, which "std" scaled up to +-1.
    rng = np.random.default_rng(0)
    x = np.stack([np.full(351, 13.37), rng.uniform(0, 27, 351)], -1).astype("float32")[None]
    out = to_numpy(normalize_points(ops.convert_to_tensor(x), ops.ones((1, 351, 1)),
                                    "std", ops))
    np.testing.assert_allclose(out[0, :, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[0, :, 1].std(), 1.0, atol=1e-5)


def test_subsampling_does_not_depend_on_the_order_of_the_points():
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(100, 2)).astype("float32")
    pre = PointCloudPreprocessor(2, num_points=16)
    first = pre.pack([cloud])
    again = pre.pack([cloud[rng.permutation(100)]])
    np.testing.assert_array_equal(again["points"], first["points"])


@pytest.mark.parametrize(
    "clouds,match",
    [([np.zeros((2, 2), complex)], r"Cloud 0 must hold numbers \(real ones\); got dtype complex"),
     ([np.zeros((3, 2)), np.zeros(2)], r"Cloud 1 must have shape \(num_points, 2\); got \(2,\)"),
     ([np.zeros((3, 2)), np.zeros((2, 3, 2))], r"Cloud 1 must have shape"),
     ([np.full((2, 2), 1e300)], r"Cloud 0 has 2 point\(s\) with NaN or infinite coordinates "
                                r"\(after conversion to float32\)")],
)
def test_every_bad_raw_cloud_is_named(models, clouds, match):
    # Complex clouds lost their imaginary part silently; a list holding a non-2-D
    # array went to Keras as a batch and failed with an unrelated message.
    with pytest.raises(ValueError, match=match):
        PointCloudPreprocessor(2, num_points=8)(clouds)
    with pytest.raises(ValueError, match=match):  # the task's raw-cloud path
        models["ddeq_mnist_completion"].predict(clouds, verbose=0)


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_batch_in_predict_leaves_the_model_usable(models, name):
    # On JAX, Keras's predict takes the variables out of the model while its step
    # runs; a dict without "points" used to fail inside it and leave them out, so
    # that every later call failed with "'NoneType' object is not callable".
    model, x = models[name], _batch()
    expected = keras.tree.map_structure(np.asarray, model.predict(x, verbose=0))
    ragged = [p.tolist() for p in x["points"]]
    ragged[-1] = ragged[-1][:-1]
    for bad, match in (({"mask": x["mask"]}, r"must have a 'points' entry"),
                       ({"points": ragged, "mask": x["mask"]},
                        r"`inputs\['points'\]` is not an array of numbers")):
        with pytest.raises(ValueError, match=match):
            model.predict(bad, verbose=0)
    again = keras.tree.map_structure(np.asarray, model.predict(x, verbose=0))
    keras.tree.map_structure(np.testing.assert_array_equal, again, expected)


def test_padded_keys_get_no_weight_when_real_scores_are_huge():
    # Found by the large property profile: a Set Transformer on one cloud of
    # duplicated points ~1e10 from the origin gave other logits when padded.
    # Real scores can be far below -1e9 (the old fill value), so padded keys
    # (score 0 + fill) took all the weight; the fill is now the lowest finite
    # value. Exact equality: the padded keys' weights must be exactly 0.
    from ddeq_keras.layers import MaskedMultiHeadAttention

    layer = MaskedMultiHeadAttention(num_heads=2, key_dim=4)
    rng = np.random.default_rng(0)
    big = 1e10  # scores ~1e19, of either sign
    x = (big * np.array([1.0, -1.0]) + rng.normal(size=(1, 5, 2))).astype("float32")
    padded = np.concatenate([x, np.zeros((1, 3, 2), "float32")], axis=1)
    mask = np.arange(8)[None, :] < 5
    query = rng.normal(size=(1, 3, 2)) * big
    # q and -q: whatever the weights, some rows have all real scores ~-1e19.
    query = np.concatenate([query, -query], axis=1).astype("float32")
    layer(query, x)  # build
    _, weights = layer(query, padded, key_mask=mask, return_attention_scores=True)
    weights = to_numpy(weights)
    assert np.all(np.isfinite(weights))
    np.testing.assert_array_equal(weights[..., 5:], 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)  # float32 rounding
    out = to_numpy(layer(query, padded, key_mask=mask))
    assert np.all(np.isfinite(out))
