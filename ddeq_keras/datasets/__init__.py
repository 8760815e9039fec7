"""Point-cloud data sets as TFDS builders, and the pipeline that batches them.

Importing this package registers three `tfds.core.GeneratorBasedBuilder`s:

* `mnist_point_cloud`: MNIST digits as 2-D point clouds,
* `modelnet40` (configs `hdf5`, `mesh_surface`, `mesh_vertices_voxel`),
* `point_set_folder`: a user's own `root/<class>/[train|test/]<file>` tree.

Each reads its files from a `manual_dir`, so prepared copies work offline.
`make_pipeline` turns a split into masked, fixed-shape batches for
`model.fit` on any Keras backend. It needs TensorFlow and
tensorflow-datasets (the `data` extra); nothing here sets Keras state.

Example:

>>> import tensorflow_datasets as tfds
>>> import ddeq_keras.datasets as dd
>>> builder = tfds.builder("mnist_point_cloud", data_dir="/tmp/tfds")  # doctest: +SKIP
>>> builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
...     manual_dir="../shared/data"))  # doctest: +SKIP
>>> train = dd.make_pipeline(builder, "train", num_points=351, batch_size=64,
...     shuffle=True, seed=42)  # doctest: +SKIP
"""

from ddeq_keras.datasets._common import MissingDataError
from ddeq_keras.datasets.mnist_point_cloud import MnistPointCloud, MnistPointCloudConfig
from ddeq_keras.datasets.modelnet40 import MODELNET40_CLASSES, ModelNet40Config, Modelnet40
from ddeq_keras.datasets.pipeline import Augmentation, Completion, make_pipeline
from ddeq_keras.datasets.point_set_folder import PointSetFolder, PointSetFolderConfig
from ddeq_keras.datasets.readers import (
    PointFileError,
    UnsafeArchiveError,
    read_idx,
    read_pcd,
    read_point_file,
    safe_extract_zip,
    validate_points,
)
from ddeq_keras.datasets.summary import summarize


def prepare(name, *, data_dir=None, manual_dir=None, config=None):
    """Returns a prepared builder, preparing it from `manual_dir` if needed.

    Args:
        name: `"mnist_point_cloud"`, `"modelnet40/hdf5"`, `"point_set_folder"`...
            (a `name/config` string selects a config).
        data_dir: TFDS data_dir (default `~/tensorflow_datasets`).
        manual_dir: folder holding the source files.
        config: a `BuilderConfig` instance, to override a config's options,
            e.g. `PointSetFolderConfig(name="scans", num_dims=3, nan_policy="drop")`.

    Returns:
        The `tfds.core.DatasetBuilder`.

    Example:

    >>> builder = prepare("modelnet40/hdf5", data_dir="/tmp/tfds",
    ...                   manual_dir="../shared/data")  # doctest: +SKIP
    """
    import tensorflow_datasets as tfds

    kwargs = {"data_dir": data_dir}
    if config is not None:
        kwargs["config"] = config
    builder = tfds.builder(name, **kwargs)
    if not builder.is_prepared():
        download_config = tfds.download.DownloadConfig(
            manual_dir=None if manual_dir is None else str(manual_dir)
        )
        builder.download_and_prepare(download_config=download_config)
    return builder


__all__ = [
    "Augmentation",
    "Completion",
    "MODELNET40_CLASSES",
    "MissingDataError",
    "MnistPointCloud",
    "MnistPointCloudConfig",
    "ModelNet40Config",
    "Modelnet40",
    "PointFileError",
    "PointSetFolder",
    "PointSetFolderConfig",
    "UnsafeArchiveError",
    "make_pipeline",
    "prepare",
    "read_idx",
    "read_pcd",
    "read_point_file",
    "safe_extract_zip",
    "summarize",
    "validate_points",
]
