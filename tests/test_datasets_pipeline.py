"""`ddeq_keras.datasets.make_pipeline`: masks, normalisation, seeds, completion, fit."""

import itertools
import math

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

import ddeq_keras.datasets as dd  # noqa: E402
from test_datasets_builders import make_digits  # noqa: E402
from test_datasets_readers import write_idx  # noqa: E402

SIZES = (3, 9, 12, 20, 7, 16, 5, 11)


def clouds(dims=2, sizes=SIZES, seed=0):
    """A tf.data source of clouds with varying sizes and offsets/scales."""
    rng = np.random.default_rng(seed)
    data = [
        (rng.normal(size=(n, dims)) * rng.uniform(0.5, 3, size=dims) + rng.normal(size=dims) * 5)
        .astype(np.float32)
        for n in sizes
    ]
    labels = np.arange(len(sizes)) % 3

    def gen():
        for points, label in zip(data, labels):
            yield {"points": points, "label": label}

    source = tf.data.Dataset.from_generator(
        gen,
        output_signature={
            "points": tf.TensorSpec((None, dims), tf.float32),
            "label": tf.TensorSpec((), tf.int64),
        },
    )
    return source, data, labels


def batches(dataset):
    return list(dataset.as_numpy_iterator())


def test_masks_padding_and_shapes():
    source, data, labels = clouds()
    ds = dd.make_pipeline(source, num_points=12, batch_size=3, seed=0, normalize=None)
    out = batches(ds)
    assert [b[0]["points"].shape for b in out] == [(3, 12, 2), (3, 12, 2), (2, 12, 2)]
    x = {k: np.concatenate([b[0][k] for b in out]) for k in ("points", "mask")}
    y = np.concatenate([b[1] for b in out])
    assert x["points"].dtype == np.float32 and x["mask"].dtype == bool and y.dtype == np.int32
    np.testing.assert_array_equal(y, labels)
    for i, cloud in enumerate(data):
        n = min(len(cloud), 12)
        np.testing.assert_array_equal(x["mask"][i], np.arange(12) < n)
        assert np.all(x["points"][i, n:] == 0)
        kept = x["points"][i, :n]
        if len(cloud) <= 12:
            np.testing.assert_array_equal(kept, cloud)
        else:
            # A random subset of distinct original points, in original order.
            index = [int(np.flatnonzero((cloud == p).all(1))[0]) for p in kept]
            assert index == sorted(set(index))
    ds = dd.make_pipeline(source, num_points=12, batch_size=3, drop_remainder=True)
    assert len(batches(ds)) == 2


@pytest.mark.parametrize("dims", [2, 3])
def test_normalisation_uses_only_valid_points(dims):
    source, data, _ = clouds(dims)
    (x, _), = batches(dd.make_pipeline(source, num_points=24, batch_size=8, normalize="std"))
    for i, cloud in enumerate(data):
        points = x["points"][i][x["mask"][i]]
        # float32 statistics of <= 20 points: 1e-5 absolute tolerance.
        np.testing.assert_allclose(points.mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(points.std(0), 1.0, atol=1e-5)
        expected = (cloud - cloud.mean(0)) / cloud.std(0)
        np.testing.assert_allclose(points, expected, rtol=1e-5, atol=1e-5)
        assert np.all(x["points"][i][~x["mask"][i]] == 0)
    (x, _), = batches(dd.make_pipeline(source, num_points=24, batch_size=8, normalize="sphere"))
    for i, cloud in enumerate(data):
        points = x["points"][i][x["mask"][i]]
        np.testing.assert_allclose(points.mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(points, axis=1).max(), 1.0, atol=1e-6)


def test_flat_axis_is_not_divided_by_zero():
    points = np.array([[2, 0], [2, 1], [2, 3]], np.float32)  # x is constant
    source = tf.data.Dataset.from_tensors({"points": points, "label": np.int64(1)})
    (x, _), = batches(dd.make_pipeline(source, num_points=4, batch_size=1))
    valid = x["points"][0][x["mask"][0]]
    assert np.isfinite(valid).all()
    np.testing.assert_array_equal(valid[:, 0], 0.0)
    np.testing.assert_allclose(valid[:, 1].std(), 1.0, atol=1e-6)


def test_same_seed_same_batches():
    source, _, _ = clouds(sizes=SIZES * 4)
    kwargs = dict(num_points=10, batch_size=4, shuffle=True, augment=dd.Augmentation(
        rotation=math.pi, scale=(0.8, 1.2), jitter_sigma=0.02, dropout=0.3))
    first = batches(dd.make_pipeline(source, seed=7, **kwargs))
    second = batches(dd.make_pipeline(source, seed=7, **kwargs))
    other = batches(dd.make_pipeline(source, seed=8, **kwargs))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a[0]["points"], b[0]["points"])
        np.testing.assert_array_equal(a[0]["mask"], b[0]["mask"])
        np.testing.assert_array_equal(a[1], b[1])
    assert not all(np.array_equal(a[1], c[1]) for a, c in zip(first, other))
    # Each pass (epoch) over one pipeline draws a new order.
    ds = dd.make_pipeline(source, seed=7, **kwargs)
    epoch1, epoch2 = batches(ds), batches(ds)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(epoch1, epoch2))


def test_augmentation():
    source, data, _ = clouds(dims=3, sizes=(30,) * 6)
    base = dict(num_points=32, batch_size=6, normalize=None, seed=1)
    (x, _), = batches(dd.make_pipeline(source, augment=dd.Augmentation(rotation=math.pi), **base))
    for i, cloud in enumerate(data):
        got = x["points"][i][:30]
        # Rotation about y: y unchanged, distances to the y axis preserved.
        np.testing.assert_allclose(got[:, 1], cloud[:, 1], atol=1e-6)
        np.testing.assert_allclose(np.hypot(got[:, 0], got[:, 2]),
                                   np.hypot(cloud[:, 0], cloud[:, 2]), rtol=1e-5, atol=1e-5)
    assert not np.allclose(x["points"][0][:30], data[0], atol=1e-3)
    aug = dd.Augmentation(jitter_sigma=0.5, jitter_clip=0.05)
    (x, _), = batches(dd.make_pipeline(source, augment=aug, **base))
    noise = np.stack([x["points"][i][:30] - data[i] for i in range(6)])
    assert np.abs(noise).max() <= 0.05 + 1e-6 and np.abs(noise).max() > 0.04
    (x, _), = batches(dd.make_pipeline(source, augment=dd.Augmentation(dropout=0.9), **base))
    counts = x["mask"].sum(1)
    assert counts.min() >= 1 and counts.max() <= 30 and counts.mean() < 25
    for i in range(6):  # dropped points are removed, not moved: masked rows zero
        assert np.all(x["points"][i][~x["mask"][i]] == 0)
    # Off by default: no augmentation changes anything.
    (x, _), = batches(dd.make_pipeline(source, **base))
    np.testing.assert_array_equal(x["points"][0][:30], data[0])


def _explained_by_two_centres(complete, partial, radius):
    """Whether the kept points are exactly those farther than `radius` from
    both of some two points of the complete cloud."""
    kept = np.array([(partial == p).all(1).any() for p in complete])
    for a, b in itertools.combinations_with_replacement(range(len(complete)), 2):
        dist = np.linalg.norm(complete[:, None] - complete[[a, b]][None], axis=-1).min(1)
        if np.array_equal(dist > radius, kept):
            return True
    return False


def test_completion_pairs():
    source, data, _ = clouds(sizes=(15, 25, 18, 30))
    ds = dd.make_pipeline(source, num_points=32, batch_size=4, task="completion", seed=3)
    (partial, complete), = batches(ds)
    assert partial["points"].shape == complete["points"].shape == (4, 32, 2)
    assert partial["mask"].dtype == complete["mask"].dtype == bool
    np.testing.assert_array_equal(complete["mask"].sum(1), [15, 25, 18, 30])
    assert np.all(partial["mask"].sum(1) < complete["mask"].sum(1))
    assert np.all(partial["mask"].sum(1) >= 1)
    for i in range(4):
        c = complete["points"][i][complete["mask"][i]]
        p = partial["points"][i][partial["mask"][i]]
        assert np.all(partial["points"][i][~partial["mask"][i]] == 0)
        # Partial points are complete points (same normalised frame) ...
        assert all((c == q).all(1).any() for q in p)
        # ... and what was removed is exactly a union of two 0.6-balls
        # around points of the cloud (distances compared in float32).
        assert _explained_by_two_centres(c, p, 0.6)
    big = dd.make_pipeline(source, num_points=32, batch_size=4, task="completion", seed=3,
                           completion=dd.Completion(radius=100.0, num_centers=1))
    (partial, _), = batches(big)
    np.testing.assert_array_equal(partial["mask"].sum(1), 1)  # never empty


def test_invalid_arguments():
    source, _, _ = clouds()
    with pytest.raises(ValueError, match="task"):
        dd.make_pipeline(source, num_points=8, task="segmentation")
    with pytest.raises(ValueError, match="normalize"):
        dd.make_pipeline(source, num_points=8, normalize="minmax")
    with pytest.raises(ValueError, match="num_points"):
        dd.make_pipeline(source, num_points=0)
    with pytest.raises(ValueError, match="completion"):
        dd.make_pipeline(source, num_points=8, completion=dd.Completion())


def masked_mean_model(num_points, dims, classes):
    points = keras.Input((num_points, dims), name="points")
    mask = keras.Input((num_points,), dtype="bool", name="mask")
    h = keras.layers.Dense(16, activation="relu")(points)
    weights = keras.ops.expand_dims(keras.ops.cast(mask, "float32"), -1)
    pooled = keras.ops.sum(h * weights, axis=1) / keras.ops.maximum(
        keras.ops.sum(weights, axis=1), 1.0)
    outputs = keras.layers.Dense(classes)(pooled)
    model = keras.Model({"points": points, "mask": mask}, outputs)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def test_fit_one_epoch_from_builder(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    for prefix, count in (("train", 40), ("t10k", 10)):
        images, labels = make_digits(count, 0)
        write_idx(manual / f"{prefix}-images-idx3-ubyte", images)
        write_idx(manual / f"{prefix}-labels-idx1-ubyte", labels)
    train = dd.make_pipeline("mnist_point_cloud", "train", num_points=16, batch_size=8,
                             shuffle=True, seed=0, data_dir=str(tmp_path / "tfds"),
                             manual_dir=str(manual), augment=dd.Augmentation(jitter_sigma=0.01))
    test = dd.make_pipeline("mnist_point_cloud", "test", num_points=16, batch_size=8,
                            data_dir=str(tmp_path / "tfds"))
    model = masked_mean_model(16, 2, 10)
    history = model.fit(train, validation_data=test, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert np.isfinite(history.history["val_loss"][0])
    # 40 training digits in batches of 8, the last one full: 5 steps.
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 5
