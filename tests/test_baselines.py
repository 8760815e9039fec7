"""Baseline models: PointNet, Set Transformer, PCN (2-D completion).

Tiny widths (constructor arguments) everywhere except the parameter counts.
"""

import inspect

import numpy as np
import pytest

import keras
from keras import ops

from ddeq_keras.models.baselines import (
    ChamferDistance,
    PCNCompleter2D,
    PointNetClassifier,
    SetTransformerClassifier,
)


@pytest.fixture(autouse=True, scope="module")
def _torch_single_thread():
    # On a shared 2-core machine PyTorch's intra-op thread pool spin-waits on a
    # busy core and tiny ops take milliseconds (fits 50x slower); one thread is
    # plenty for these tiny models. Restored after this module.
    if keras.config.backend() != "torch":
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------- helpers

TINY_POINTNET = dict(
    point_mlp_units=(16, 16),
    feature_mlp_units=(16, 32),
    head_units=(32, 16),
    transform_mlp_units=(8, 16),
    transform_head_units=(16,),
)
TINY_SET_TRANSFORMER = dict(hidden_dim=32, num_heads=4, num_inducing_points=4, ff_dim=32)
TINY_PCN = dict(encoder_units=((16, 32), (32, 64)), decoder_units=(64,))


def make_model(kind, point_dim=2, **overrides):
    if kind == "pointnet":
        kw = dict(TINY_POINTNET, dropout=0.0, bn_momentum=0.5)
        kw.update(overrides)
        return PointNetClassifier(num_classes=3, point_dim=point_dim, **kw)
    if kind == "set_transformer":
        kw = dict(TINY_SET_TRANSFORMER, dropout=0.0)
        kw.update(overrides)
        return SetTransformerClassifier(num_classes=3, point_dim=point_dim, **kw)
    kw = dict(TINY_PCN, num_output_points=16)
    kw.update(overrides)
    return PCNCompleter2D(point_dim=point_dim, **kw)


KINDS = ["pointnet", "set_transformer", "pcn"]


def padded_batch(rng, counts, length, point_dim=2, junk=5.0):
    """Random clouds with ``counts[i]`` valid points, padded with finite junk."""
    points = rng.normal(size=(len(counts), length, point_dim)).astype("float32")
    mask = np.arange(length)[None, :] < np.asarray(counts)[:, None]
    points[~mask] = junk * rng.normal(size=(int((~mask).sum()), point_dim))
    return {"points": points, "mask": mask}


def repad(batch, length, rng, junk=50.0):
    """The same valid points (first in each row), padded to ``length``."""
    points, mask = batch["points"], batch["mask"]
    out = junk * rng.normal(size=(points.shape[0], length, points.shape[2]))
    out = out.astype("float32")
    new_mask = np.zeros((points.shape[0], length), bool)
    for i in range(points.shape[0]):
        n = int(mask[i].sum())
        out[i, :n] = points[i][mask[i]]
        new_mask[i, :n] = True
    return {"points": out, "mask": new_mask}


def np_out(model, batch, training=False):
    return ops.convert_to_numpy(model(batch, training=training))


def shapes_dataset(rng, num_samples=64, length=24):
    """Class 0: points on a circle; class 1: points filling a square."""
    counts = rng.integers(length // 2, length + 1, size=num_samples)
    labels = (np.arange(num_samples) % 2).astype("int32")
    points = np.zeros((num_samples, length, 2), "float32")
    for i, (n, y) in enumerate(zip(counts, labels)):
        if y == 0:
            theta = rng.uniform(0, 2 * np.pi, n)
            points[i, :n] = np.stack([np.cos(theta), np.sin(theta)], -1)
        else:
            points[i, :n] = rng.uniform(-0.5, 0.5, size=(n, 2))
    mask = np.arange(length)[None, :] < counts[:, None]
    points[~mask] = 3.0 * rng.normal(size=(int((~mask).sum()), 2))  # junk padding
    return {"points": points, "mask": mask}, labels


def circles_dataset(rng, num_samples=64, length=32):
    """Complete: a circle of random radius and centre; partial: one half of it."""
    radius = rng.uniform(0.5, 1.5, num_samples)
    centre = rng.uniform(-0.5, 0.5, size=(num_samples, 2))
    phase = rng.uniform(0, 2 * np.pi, num_samples)
    theta = np.linspace(0, 2 * np.pi, length, endpoint=False)[None, :] + phase[:, None]
    full = centre[:, None, :] + radius[:, None, None] * np.stack(
        [np.cos(theta), np.sin(theta)], -1
    )
    full = full.astype("float32")
    full_mask = np.ones((num_samples, length), bool)
    full_mask[::2, -4:] = False  # some targets are padded: padding must be ignored
    full[~full_mask] = 100.0
    half = length // 2
    partial = np.full_like(full, -100.0)
    partial[:, :half] = full[:, :half]
    partial_mask = np.arange(length)[None, :] < half
    partial_mask = np.repeat(partial_mask, num_samples, 0)
    return (
        {"points": partial, "mask": partial_mask},
        {"points": full, "mask": full_mask},
    )


# ------------------------------------------------------- parameter counts


def test_parameter_counts():
    def build(model, point_dim):
        model.build({"points": (None, None, point_dim), "mask": (None, None)})
        trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        return model.count_params(), trainable

    # PointNet of Qi et al. with the input T-Net (the DDEQ authors' "about 1.6M");
    # the non-trainable weights are BatchNorm moving statistics.
    assert build(PointNetClassifier(40, point_dim=3), 3) == (1_630_897, 1_622_705)
    assert build(PointNetClassifier(10, point_dim=2), 2) == (1_621_774, 1_613_582)
    assert build(PointNetClassifier(40, input_transform=False), 3) == (823_848, 819_624)
    assert build(SetTransformerClassifier(40, point_dim=3), 3) == (507_816, 507_816)
    assert build(PCNCompleter2D(), 2) == (3_640_126, 3_640_126)


# ----------------------------------------------------------- invariances

# Tolerance 1e-5: float32 results may differ in the last bits when rows are
# reordered or the padded length changes (matmul blocking, softmax sums over
# a different number of exactly-zero weights); outputs are O(1).
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_permutation_invariance(kind, rng):
    model = make_model(kind)
    batch = padded_batch(rng, [20, 13, 5], 20)
    perm = np.stack([rng.permutation(20) for _ in range(3)])
    permuted = {
        "points": np.take_along_axis(batch["points"], perm[..., None], 1),
        "mask": np.take_along_axis(batch["mask"], perm, 1),
    }
    a, b = np_out(model, batch), np_out(model, permuted)
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_invariance(kind, rng):
    model = make_model(kind)
    batch = padded_batch(rng, [20, 13, 5], 20)
    longer = repad(batch, 33, rng)
    a, b = np_out(model, batch), np_out(model, longer)
    np.testing.assert_allclose(a, b, **TOL)
    # Sanity check that the test can fail: dropping the mask changes the output.
    c = np_out(model, {"points": longer["points"], "mask": np.ones((3, 33), bool)})
    assert np.max(np.abs(a - c)) > 1e-3


def test_pointnet_training_mode_ignores_padding(rng):
    # BatchNorm batch statistics are computed over valid points only, so even
    # in training mode the output does not depend on the padding (dropout 0).
    model = make_model("pointnet", feature_transform=True)
    batch = padded_batch(rng, [20, 13, 5], 20)
    a = np_out(model, batch, training=True)
    b = np_out(model, repad(batch, 31, rng), training=True)
    np.testing.assert_allclose(a, b, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_plain_tensor_means_all_valid(kind, rng):
    model = make_model(kind)
    points = rng.normal(size=(3, 20, 2)).astype("float32")
    a = np_out(model, points)
    b = np_out(model, {"points": points, "mask": np.ones((3, 20), bool)})
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)  # same computation


# --------------------------------------------------------- serialization


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trip(kind):
    model = make_model(kind, point_dim=3)
    config = model.get_config()
    clone = model.__class__.from_config(config)
    assert clone.get_config() == config
    assert clone.point_dim == 3


@pytest.mark.parametrize("kind", KINDS)
def test_config_holds_every_constructor_argument_and_output_shape(kind):
    model = make_model(kind)
    config = model.get_config()
    names = {
        name
        for name, p in inspect.signature(type(model).__init__).parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name != "self"
    }
    assert names <= set(config), names - set(config)
    # Width tuples are stored as JSON gives them back (lists).
    assert all(not isinstance(v, tuple) for v in config.values())
    expected = (None, 3) if kind != "pcn" else (None, 16, 2)
    assert model.compute_output_shape((None, 20, 2)) == expected
    assert model.compute_output_shape({"points": (None, 20, 2), "mask": (None, 20)}) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind, rng, tmp_path):
    model = make_model(kind)
    model.compile()
    batch = padded_batch(rng, [20, 13, 5], 20)
    model(batch)
    # Non-trivial values for every weight, BatchNorm moving statistics included.
    for v in model.weights:
        scale = rng.uniform(0.5, 1.5, size=v.shape).astype("float32")
        v.assign(scale * ops.convert_to_numpy(v) + 0.01)
    model.optimizer.build(model.trainable_variables)  # saved with its state
    model.optimizer.iterations.assign(7)
    expected = np_out(model, batch)
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    # Same weights and the same computation: identical up to float32 noise.
    np.testing.assert_allclose(np_out(loaded, batch), expected, rtol=0, atol=1e-6)
    # The custom compile() is restored on load, with its defaults.
    assert loaded.compiled
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)
    assert int(ops.convert_to_numpy(loaded.optimizer.iterations)) == 7
    if kind == "pcn":
        x, y = circles_dataset(rng, num_samples=4, length=12)
        a = model.evaluate(x, y, verbose=0, return_dict=True)
        b = loaded.evaluate(x, y, verbose=0, return_dict=True)
        assert set(a) == set(b) == {"loss", "chamfer_distance"}
        np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-6)  # same weights
    else:
        assert isinstance(loaded.loss, keras.losses.SparseCategoricalCrossentropy)


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("kind", ["pointnet", "set_transformer"])
def test_classifier_fit_reduces_loss(kind):
    x, y = shapes_dataset(np.random.default_rng(1))
    # PointNet with the feature T-Net: its regulariser (add_loss) joins the fit.
    extra = {"feature_transform": True} if kind == "pointnet" else {}
    model = make_model(kind, **extra)
    model.compile()  # the defaults: Adam(1e-3), sparse CE from logits, accuracy
    history = model.fit(x, y, batch_size=16, epochs=10, verbose=0).history
    # Training-mode epoch means; chance level is ln 3 = 1.1 (3 logits, 2 used).
    assert history["loss"][-1] < 0.5 * history["loss"][0], history
    assert history["accuracy"][-1] >= 0.8, history


def test_pcn_fit_reduces_chamfer():
    x, y = circles_dataset(np.random.default_rng(2))
    model = make_model("pcn", num_output_points=32)
    model.compile()  # the defaults: Adam(1e-3), masked Chamfer loss and metric
    history = model.fit(x, y, batch_size=16, epochs=15, verbose=0).history
    assert set(history) == {"loss", "chamfer_distance"}
    assert history["loss"][-1] < 0.5 * history["loss"][0], history
    # The metric is the loss (same masked Chamfer distance, no regulariser).
    np.testing.assert_allclose(history["chamfer_distance"], history["loss"], rtol=1e-5)


def test_pcn_loss_ignores_padded_target_points(rng):
    x, y = circles_dataset(rng, num_samples=4, length=12)
    model = make_model("pcn", num_output_points=8)
    model.compile(loss="chamfer_squared")
    pred = model(x)
    loss = float(ops.convert_to_numpy(model.compute_loss(x, y, pred)))
    pred = ops.convert_to_numpy(pred)

    def chamfer(p, t):  # squared distances, numpy reference on valid points only
        d = ((p[:, None, :] - t[None, :, :]) ** 2).sum(-1)
        return d.min(1).mean() + d.min(0).mean()

    ref = np.mean([chamfer(pred[i], y["points"][i][y["mask"][i]]) for i in range(4)])
    # float32 vs a float64 reference on O(1) distances.
    np.testing.assert_allclose(loss, ref, rtol=1e-4)
    # The padded target points sit at (100, 100): counting them would be huge.
    assert loss < 100.0


def test_compile_defaults():
    model = make_model("pointnet")
    model.compile()
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    np.testing.assert_allclose(float(model.optimizer.learning_rate), 1e-3)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert model.loss.get_config()["from_logits"] is True
    pcn = make_model("pcn")
    pcn.compile()
    assert isinstance(pcn.optimizer, keras.optimizers.Adam)
    with pytest.raises(ValueError, match="loss"):
        pcn.compile(loss="mse")
    pcn.compile(metrics=None)
    assert "chamfer_distance" not in [m.name for m in pcn.metrics]


def test_chamfer_metric_accepts_dict_and_tensor():
    t = np.array([[[0.0, 0.0], [1.0, 0.0], [9.0, 9.0]]], "float32")
    p = np.array([[[0.0, 0.0], [1.0, 0.0]]], "float32")
    m = ChamferDistance()
    m.update_state({"points": t, "mask": np.array([[True, True, False]])}, p)
    assert float(m.result()) == pytest.approx(0.0, abs=1e-6)  # padding ignored
    m.reset_state()
    m.update_state(t, p)
    assert float(m.result()) > 1.0  # the far point now counts


def test_pointnet_feature_transform_adds_regulariser(rng):
    model = make_model("pointnet", feature_transform=True, feature_transform_weight=0.5)
    batch = padded_batch(rng, [20, 13, 5], 20)
    model(batch)
    assert len(model.losses) == 1
    # The T-Net starts at the identity: an orthogonal transform, no penalty.
    assert float(ops.convert_to_numpy(model.losses[0])) == pytest.approx(0.0, abs=1e-6)
    # Kernel 0 and bias b: every sample's transform is A = I + b.
    dense = model.feature_tnet.transform_dense
    k = model.point_mlp_units[-1]
    b = rng.normal(scale=0.1, size=(k * k,)).astype("float32")
    dense.bias.assign(b)
    model(batch)
    a = np.eye(k) + b.reshape(k, k)
    expected = 0.5 * np.sum((a @ a.T - np.eye(k)) ** 2)
    # float32 sums of k*k = 256 O(0.1) terms vs a float64 reference.
    np.testing.assert_allclose(float(ops.convert_to_numpy(model.losses[0])), expected, rtol=1e-4)


# ---------------------------------------------------------------- bad input


def _bad_inputs(point_dim):
    rng = np.random.default_rng(0)
    good = padded_batch(rng, [20, 13, 5], 20, point_dim=point_dim)
    wrong_dims = padded_batch(rng, [20, 13, 5], 20, point_dim=point_dim + 1)
    empty = {
        "points": np.zeros((3, 0, point_dim), "float32"),
        "mask": np.zeros((3, 0), bool),
    }
    no_valid = {"points": good["points"], "mask": good["mask"].copy()}
    no_valid["mask"][1] = False
    nan = {"points": good["points"].copy(), "mask": good["mask"]}
    nan["points"][0, 2, 0] = np.nan
    return good, {
        "wrong_dims": (wrong_dims, "coordinates|features"),
        "empty": (empty, "empty"),
        "no_valid_point": (no_valid, "no valid"),
        "nan": (nan, "NaN"),
    }


@pytest.mark.parametrize("case", ["wrong_dims", "empty", "no_valid_point", "nan"])
@pytest.mark.parametrize("kind", KINDS)
def test_bad_inputs_raise(kind, case):
    good, cases = _bad_inputs(2)
    batch, match = cases[case]
    model = make_model(kind)
    model(good)  # built
    with pytest.raises(ValueError, match=match) as info:
        model(batch)
    assert "inputs" in str(info.value)  # the message names the input


@pytest.mark.parametrize("kind", KINDS)
def test_shape_errors_when_unbuilt_and_traced(kind):
    good, cases = _bad_inputs(2)
    with pytest.raises(ValueError, match="coordinates"):
        make_model(kind)(cases["wrong_dims"][0])  # raised while building
    model = make_model(kind)
    model(good)
    with pytest.raises(ValueError, match="coordinates|features"):
        model.predict(cases["wrong_dims"][0], verbose=0)  # traced / compiled call
