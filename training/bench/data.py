"""Benchmark inputs: synthetic clouds, the packed ``.npz`` test-set format, TFDS.

Every loader returns ``({"points": (num, N, d) float32, "mask": (num, N) bool},
labels (num,) int32)`` with prefix masks (valid points first) and zero padding.
"""

import numpy as np


def synthetic_batch(batch_size, num_points, point_dim, seed=0, num_classes=10):
    """Random clouds with a random number of valid points each, padded (zeros) to
    ``num_points``; timing does not depend on the values."""
    rng = np.random.default_rng(seed)
    valid = rng.integers(max(num_points // 4, 1), num_points + 1, batch_size)
    mask = np.arange(num_points)[None, :] < valid[:, None]
    points = rng.normal(size=(batch_size, num_points, point_dim)).astype("float32")
    points = np.where(mask[..., None], points, 0).astype("float32")
    labels = rng.integers(0, num_classes, batch_size).astype("int32")
    return {"points": points, "mask": mask}, labels


def pack_npz(points, mask, labels, path, split="test"):
    """Writes padded clouds in the packed format that ``--data x.npz`` reads.

    Keys: ``{split}_points`` (sum of n_i, d): the valid points of every cloud,
    concatenated in order; ``{split}_counts`` (num,): valid points per cloud;
    ``{split}_labels`` (num,). Unpacking gives prefix masks, so padded arrays
    with prefix masks (valid points first) round-trip exactly.
    """
    points = np.asarray(points)
    mask = np.asarray(mask, dtype=bool)
    if points.ndim != 3 or mask.shape != points.shape[:2]:
        raise ValueError(f"points (num, N, d) and mask (num, N) expected; got "
                         f"{points.shape} and {mask.shape}.")
    np.savez(
        path,
        **{
            f"{split}_points": points[mask],
            f"{split}_counts": mask.sum(axis=1).astype("int64"),
            f"{split}_labels": np.asarray(labels).astype("int64"),
        },
    )


def unpack_npz(path, num_points, split="test", max_examples=None):
    """Reads the packed format into ``({"points": (num, N, d) float32, "mask": (num, N)
    bool}, labels (num,) int32)`` with prefix masks and zero padding."""
    with np.load(path) as data:
        counts = data[f"{split}_counts"].astype("int64")
        labels = data[f"{split}_labels"].astype("int32")
        if max_examples is not None:
            counts, labels = counts[:max_examples], labels[:max_examples]
        total = int(counts.sum())
        flat = data[f"{split}_points"][:total].astype("float32")
    if flat.shape[0] != total:
        raise ValueError(f"{path}: {split}_points has {flat.shape[0]} rows, counts say {total}.")
    if counts.size and counts.max() > num_points:
        raise ValueError(f"{path}: a cloud has {counts.max()} points, more than the padded "
                         f"length {num_points}.")
    mask = np.arange(num_points)[None, :] < counts[:, None]
    points = np.zeros(mask.shape + (flat.shape[1],), "float32")
    points[mask] = flat
    return {"points": points, "mask": mask}, labels


def load_tfds(name, num_points, batch_size, data_dir, max_examples=None):
    """The test split of a TFDS point-cloud data set, as padded numpy arrays."""
    from ddeq_keras.datasets import make_pipeline  # imports TensorFlow

    dataset = make_pipeline(name, "test", num_points=num_points, batch_size=batch_size,
                            data_dir=data_dir)
    points, masks, labels, seen = [], [], [], 0
    for x, y in dataset.as_numpy_iterator():
        points.append(x["points"])
        masks.append(x["mask"])
        labels.append(y)
        seen += len(y)
        if max_examples is not None and seen >= max_examples:
            break
    x = {"points": np.concatenate(points).astype("float32"),
         "mask": np.concatenate(masks).astype(bool)}
    y = np.concatenate(labels).astype("int32")
    if max_examples is not None:
        x = {k: v[:max_examples] for k, v in x.items()}
        y = y[:max_examples]
    return x, y


def batches(x, y, batch_size):
    """Fixed-size batches (the last one padded by repeating its last cloud, so compiled
    functions see one shape), with the number of real clouds in each."""
    num = len(y)
    for start in range(0, num, batch_size):
        stop = min(start + batch_size, num)
        idx = np.arange(start, start + batch_size).clip(max=stop - 1)
        yield {k: v[idx] for k, v in x.items()}, stop - start
