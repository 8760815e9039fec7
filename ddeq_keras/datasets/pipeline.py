"""From a builder's split to fixed-shape, masked batches every backend can fit.

`make_pipeline` is the one entry point. Each example goes through, in order:

1. random subsampling to at most `num_points` points (a cloud with more),
2. normalisation over its own points (padding is added later, so it can
   never enter the statistics),
3. optional augmentation (training only; off by default),
4. for `task="completion"`, the corruption of the DDEQ method note,
5. zero padding to `num_points` rows with a boolean mask.

Shapes are fixed (`(batch, num_points, d)`), so JAX compiles one step
function (plus one for a smaller last batch unless `drop_remainder=True`).
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf
import tensorflow.experimental.numpy as tnp

from ddeq_keras.preprocessing.normalization import NORMALIZATIONS, normalize_points
TASKS = ("classification", "completion")


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random transformations for training clouds (all off by default).

    Attributes:
        rotation: maximum rotation angle in radians, drawn uniformly in
            `[-rotation, rotation]`; about `up_axis` for 3-D clouds, in the
            plane for 2-D ones. `2 * math.pi` for any orientation.
        up_axis: the vertical axis of 3-D clouds (1 = y, as in ModelNet40).
        scale: `(low, high)` range of an isotropic random scale, or None.
        jitter_sigma: std of Gaussian noise added to every coordinate.
        jitter_clip: the noise is clipped to `[-jitter_clip, jitter_clip]`.
        dropout: maximum fraction of points removed; each cloud draws a ratio
            uniformly in `[0, dropout]` and drops each point with that
            probability, keeping at least one.

    Example:

    >>> import math
    >>> from ddeq_keras.datasets import Augmentation
    >>> aug = Augmentation(rotation=math.pi, jitter_sigma=0.01)
    >>> aug.scale is None and aug.dropout == 0.0
    True
    """

    rotation: float = 0.0
    up_axis: int = 1
    scale: tuple | None = None
    jitter_sigma: float = 0.0
    jitter_clip: float = 0.05
    dropout: float = 0.0

    @classmethod
    def standard(cls) -> "Augmentation":
        """The PointNet / PointNet++ ModelNet40 recipe.

        Any rotation about the up axis, scale in [0.8, 1.25], jitter
        sigma 0.01 clipped at 0.05, point dropout up to 87.5%.
        """
        return cls(rotation=2 * math.pi, scale=(0.8, 1.25), jitter_sigma=0.01,
                   jitter_clip=0.05, dropout=0.875)


@dataclasses.dataclass(frozen=True)
class Completion:
    """The completion corruption of the DDEQ method note (section 6).

    Every point within `radius` (in normalised units) of any of `num_centers`
    points drawn at random from the cloud is removed. If that would remove
    every point, the point farthest from the centres is kept, so the partial
    cloud is never empty.
    """

    radius: float = 0.6
    num_centers: int = 2


def _resolve_source(source, split, data_dir, manual_dir):
    """Returns `(tf.data.Dataset of examples, num_dims)`."""
    if isinstance(source, tf.data.Dataset):
        dataset = source
    else:
        import tensorflow_datasets as tfds

        import ddeq_keras.datasets  # noqa: F401  (registers the builders)

        builder = source
        if isinstance(source, str):
            builder = tfds.builder(source, data_dir=data_dir)
        if not builder.is_prepared():
            if manual_dir is None:
                raise ValueError(
                    f"{builder.name} is not prepared in {builder.data_dir}; pass "
                    "manual_dir=... (or call download_and_prepare first)"
                )
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
            )
        dataset = builder.as_dataset(split=split, shuffle_files=False)
    spec = dataset.element_spec
    if isinstance(spec, tuple):
        dataset = dataset.map(lambda points, label: {"points": points, "label": label})
        spec = dataset.element_spec
    if not isinstance(spec, dict) or "points" not in spec:
        raise ValueError(
            "source must yield dicts with 'points' (n, d) and 'label', or (points, label) "
            f"tuples; got {spec}"
        )
    num_dims = spec["points"].shape[-1]
    if spec["points"].shape.rank != 2 or num_dims is None:
        raise ValueError(
            f"'points' must have shape (n, d) with a known d, got {spec['points'].shape}"
        )
    return dataset, int(num_dims)


def _normalize(points, method):
    # The one definition the models' `PointCloudPreprocessor` uses too.
    return normalize_points(points, tf.ones_like(points[:, :1]), method, tnp)


def _subsample(points, num_points, seed):
    """A random subset of at most `num_points` rows, in their original order."""
    n = tf.shape(points)[0]

    def pick():
        keys = tf.random.stateless_uniform([n], seed)
        index = tf.sort(tf.math.top_k(keys, k=num_points).indices)
        return tf.gather(points, index)

    return tf.cond(n > num_points, pick, lambda: points)


def _augment(points, aug: Augmentation, seeds, num_dims):
    if aug.dropout > 0:
        n = tf.shape(points)[0]
        ratio = tf.random.stateless_uniform([], seeds[0], 0.0, aug.dropout)
        keep = tf.random.stateless_uniform([n], seeds[1]) >= ratio
        # Keep at least one point (the first) so the cloud is never empty.
        keep = tf.logical_or(keep, tf.range(n) == 0)
        points = tf.boolean_mask(points, keep)
    if aug.scale is not None:
        low, high = aug.scale
        points = points * tf.random.stateless_uniform([], seeds[2], low, high)
    if aug.rotation > 0:
        angle = tf.random.stateless_uniform([], seeds[3], -aug.rotation, aug.rotation)
        c, s = tf.cos(angle), tf.sin(angle)
        if num_dims == 2:
            rot = tf.stack([tf.stack([c, -s]), tf.stack([s, c])])
        else:
            # Rotate the two axes other than `up_axis` into each other.
            a, b = [i for i in range(num_dims) if i != aug.up_axis][:2]
            rot = tf.tensor_scatter_nd_update(
                tf.eye(num_dims), [[a, a], [a, b], [b, a], [b, b]], tf.stack([c, -s, s, c])
            )
        points = tf.matmul(points, rot, transpose_b=True)
    if aug.jitter_sigma > 0:
        noise = tf.random.stateless_normal(tf.shape(points), seeds[4], stddev=aug.jitter_sigma)
        points = points + tf.clip_by_value(noise, -aug.jitter_clip, aug.jitter_clip)
    return points


def _corrupt(points, completion: Completion, seed):
    """The partial cloud: points farther than `radius` from every centre."""
    n = tf.shape(points)[0]
    index = tf.random.stateless_uniform(
        [completion.num_centers], seed, minval=0, maxval=n, dtype=tf.int32
    )
    centres = tf.gather(points, index)
    dist = tf.norm(points[:, None, :] - centres[None, :, :], axis=-1)
    nearest = tf.reduce_min(dist, axis=1)
    keep = nearest > completion.radius
    keep = tf.cond(
        tf.reduce_any(keep),
        lambda: keep,
        lambda: tf.range(n) == tf.cast(tf.argmax(nearest), tf.int32),
    )
    return tf.boolean_mask(points, keep)


def _pad(points, num_points, num_dims):
    n = tf.shape(points)[0]
    padded = tf.pad(points, [[0, num_points - n], [0, 0]])
    padded = tf.ensure_shape(padded, [num_points, num_dims])
    mask = tf.ensure_shape(tf.range(num_points) < n, [num_points])
    return {"points": padded, "mask": mask}


def make_pipeline(
    source,
    split="train",
    *,
    num_points,
    batch_size=64,
    task="classification",
    normalize="std",
    augment=None,
    completion=None,
    shuffle=False,
    shuffle_buffer=10_000,
    seed=None,
    drop_remainder=False,
    repeat=False,
    data_dir=None,
    manual_dir=None,
):
    """Turns a point-cloud split into masked, fixed-shape batches.

    Args:
        source: a builder name (`"mnist_point_cloud"`, `"modelnet40/hdf5"`,
            `"point_set_folder"`), a `tfds.core.DatasetBuilder`, or a
            `tf.data.Dataset` of `{"points": (n, d), "label": ()}` dicts or
            `(points, label)` pairs.
        split: TFDS split, e.g. `"train"`, `"test"`, `"train[:90%]"`.
        num_points: the fixed padded length `N`. Clouds with more points are
            randomly subsampled to `N`.
        batch_size: examples per batch.
        task: `"classification"` or `"completion"`.
        normalize: `"std"` (centre by the mean, divide each axis by its std:
            the DDEQ authors' choice), `"sphere"` (centre, then scale into
            the unit ball), or None.
        augment: None/False (default), True for `Augmentation.standard()`,
            or an `Augmentation`. Use it for training splits only.
        completion: a `Completion` (default `Completion()`: radius 0.6 around
            2 random points); only for `task="completion"`.
        shuffle: shuffle examples (each epoch in a new order).
        shuffle_buffer: size of the shuffle buffer.
        seed: int for reproducible batches: the same seed gives the same
            sequence of batches (order, subsets, augmentations, corruptions)
            within a process with the same TensorFlow global seed (Keras'
            `set_random_seed` sets it; without it TF's default is used). Each
            new pass over the dataset (each epoch) draws new random choices.
            None: not reproducible.
        drop_remainder: drop a last, smaller batch (one compiled shape).
        repeat: repeat forever (then pass `steps_per_epoch` to `fit`).
        data_dir: TFDS data_dir when `source` is a name.
        manual_dir: where the source files are, to prepare the builder if it
            is not prepared yet.

    Returns:
        A `tf.data.Dataset`. Classification:
        `({"points": (B, N, d) float32, "mask": (B, N) bool}, label (B,) int32)`.
        Completion: `({"points", "mask"} of the partial cloud,
        {"points", "mask"} of the complete cloud)`, both padded to `N`, in
        the same normalised frame; the partial cloud's points are a subset
        of the complete cloud's. Padding rows are zeros.

    With the JAX or PyTorch backend on a GPU machine, hide the GPU from
    TensorFlow (`tf.config.set_visible_devices([], "GPU")`) before building
    the pipeline, so that tf.data does not reserve its memory; this function
    does not change that global setting itself.

    Example (six clouds from memory; a builder or its name works the same way):

    >>> import tensorflow as tf
    >>> import ddeq_keras.datasets as dd
    >>> from ddeq_keras.models import create_model
    >>> clouds = tf.data.Dataset.from_tensor_slices(
    ...     {"points": np.random.rand(6, 40, 2).astype("float32"), "label": np.arange(6) % 2})
    >>> train = dd.make_pipeline(clouds, num_points=32, batch_size=4, shuffle=True, seed=42)
    >>> inputs, labels = next(iter(train))
    >>> tuple(inputs["points"].shape), tuple(inputs["mask"].shape), labels.dtype.name
    ((4, 32, 2), (4, 32), 'int32')
    >>> model = create_model("ddeq_mnist")
    >>> model.compile()
    >>> model.fit(train, epochs=10)  # doctest: +SKIP
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_points must be a positive int, got {num_points!r}")
    if augment is True:
        augment = Augmentation.standard()
    elif augment is False:
        augment = None
    if augment is not None and not isinstance(augment, Augmentation):
        raise TypeError(f"augment must be None, a bool or an Augmentation, got {augment!r}")
    if task == "completion":
        completion = completion or Completion()
        if completion.num_centers < 1 or completion.radius < 0:
            raise ValueError(f"invalid {completion}")
    elif completion is not None:
        raise ValueError("completion is only used with task='completion'")

    dataset, num_dims = _resolve_source(source, split, data_dir, manual_dir)
    if task == "classification" and "label" not in dataset.element_spec:
        raise ValueError("task='classification' needs a 'label' in every example")
    rotates_3d = augment is not None and augment.rotation > 0 and num_dims == 3
    if rotates_3d and not 0 <= augment.up_axis < 3:
        raise ValueError(f"up_axis must be 0, 1 or 2, got {augment.up_axis}")

    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # One random int64 per example, new on each pass: the per-example ops use
    # stateless RNG seeded from it, so results do not depend on thread timing.
    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    dataset = tf.data.Dataset.zip(dataset, randoms)

    def process(example, rnd):
        points = tf.cast(example["points"], tf.float32)
        tf.debugging.assert_greater(
            tf.shape(points)[0], 0, message="make_pipeline: a cloud has no points"
        )
        seeds = tf.random.experimental.stateless_split(
            tf.stack([rnd, tf.constant(0x5EED, tf.int64)]), num=8
        )
        points = _subsample(points, num_points, seeds[0])
        points = _normalize(points, normalize)
        if augment is not None:
            points = _augment(points, augment, seeds[1:6], num_dims)
        if task == "completion":
            partial = _corrupt(points, completion, seeds[6])
            return _pad(partial, num_points, num_dims), _pad(points, num_points, num_dims)
        return _pad(points, num_points, num_dims), tf.cast(example["label"], tf.int32)

    dataset = dataset.map(process, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
