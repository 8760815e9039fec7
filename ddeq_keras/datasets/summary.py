"""Counts and sizes of a prepared point-cloud builder, for reports."""

from __future__ import annotations

import numpy as np


def summarize(builder, splits=None, batch_size=1024):
    """Example counts per split and class, and points per example.

    Args:
        builder: a prepared `tfds.core.DatasetBuilder` of this package.
        splits: split names (default: all of the builder's splits).
        batch_size: read-ahead batch size (only affects speed).

    Returns:
        `{split: {"examples": int, "per_class": {name: int},
        "points": {"min": int, "mean": float, "max": int}, "dims": int}}`.

    Example (a tiny prepared folder of 2-D clouds):

    >>> import os
    >>> from ddeq_keras.datasets import prepare, summarize
    >>> for path, size in [("disc/train/a", 40), ("disc/test/b", 30),
    ...                    ("ring/train/c", 50), ("ring/test/d", 20)]:
    ...     os.makedirs(os.path.dirname(f"clouds/{path}"), exist_ok=True)
    ...     np.save(f"clouds/{path}.npy", np.random.rand(size, 2))
    >>> builder = prepare("point_set_folder", data_dir="tfds", manual_dir="clouds",
    ...                   options={"num_dims": 2})
    Downloading and preparing dataset ...
    Dataset point_set_folder downloaded and prepared to ...
    >>> summarize(builder)["test"]
    {'examples': 2, 'per_class': {'disc': 1, 'ring': 1},
     'points': {'min': 20, 'mean': 25.0, 'max': 30}, 'dims': [2]}
    """
    import tensorflow as tf

    names = builder.info.features["label"].names
    splits = splits or sorted(builder.info.splits.keys())
    report = {}
    for split in splits:
        ds = builder.as_dataset(split=split, shuffle_files=False)
        ds = ds.map(
            lambda ex: (tf.shape(ex["points"])[0], tf.shape(ex["points"])[1], ex["label"]),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).batch(batch_size)
        sizes, dims, labels = [], set(), []
        for n, d, label in ds.as_numpy_iterator():
            sizes.append(n)
            labels.append(label)
            dims.update(int(x) for x in np.unique(d))
        sizes = np.concatenate(sizes) if sizes else np.zeros(0, int)
        labels = np.concatenate(labels) if labels else np.zeros(0, int)
        counts = np.bincount(labels, minlength=len(names))
        report[split] = {
            "examples": int(len(sizes)),
            "per_class": {names[i]: int(c) for i, c in enumerate(counts)},
            "points": {
                "min": int(sizes.min()) if len(sizes) else 0,
                "mean": round(float(sizes.mean()), 2) if len(sizes) else 0.0,
                "max": int(sizes.max()) if len(sizes) else 0,
            },
            "dims": sorted(dims),
        }
    return report
