"""Point-cloud data sets as TFDS builders, and the pipeline that batches them.

Importing this package registers three `tfds.core.GeneratorBasedBuilder`s:

* `mnist_point_cloud`: MNIST digits as 2-D point clouds,
* `modelnet40` (configs `hdf5`, `mesh_surface`, `mesh_vertices_voxel`),
* `point_set_folder`: a user's own `root/<class>/[train|test/]<file>` tree.

Each reads its files from a `manual_dir`, so prepared copies work offline.
`prepare(name, options={...})` derives a config named after its options (so
other options never reuse old data); every preparation records the files it
skipped, with their reasons, in `builder.info.metadata["skipped_files"]` and
in `preparation_report.json` beside the prepared data.
`make_pipeline` turns a split into masked, fixed-shape batches for
`model.fit` on any Keras backend. It needs TensorFlow and
tensorflow-datasets (the `data` extra); nothing here sets Keras state.

Example (a tiny folder of one's own 2-D clouds; MNIST works the same way with
`"mnist_point_cloud"` and its four IDX files in `manual_dir`):

>>> import os
>>> import ddeq_keras.datasets as dd
>>> rng = np.random.default_rng(0)
>>> for path in ["disc/train/a", "disc/train/b", "disc/test/c",
...              "ring/train/d", "ring/train/e", "ring/test/f"]:
...     os.makedirs(os.path.dirname(f"my_clouds/{path}"), exist_ok=True)
...     np.save(f"my_clouds/{path}.npy", rng.random((40, 2)))
>>> builder = dd.prepare("point_set_folder", data_dir="tfds", manual_dir="my_clouds",
...                      options={"num_dims": 2})
Downloading and preparing dataset ...
Dataset point_set_folder downloaded and prepared to ...
>>> train = dd.make_pipeline(builder, "train", num_points=32, batch_size=4,
...                          shuffle=True, seed=42)
>>> inputs, labels = next(iter(train))
>>> tuple(inputs["points"].shape), tuple(inputs["mask"].shape), tuple(labels.shape)
((4, 32, 2), (4, 32), (4,))
"""

from ddeq_keras.datasets import _config
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


def prepare(name, *, data_dir=None, manual_dir=None, config=None, options=None):
    """Returns a prepared builder, preparing it from `manual_dir` if needed.

    Args:
        name: `"mnist_point_cloud"`, `"modelnet40/hdf5"`, `"point_set_folder"`...
            (a `name/config` string selects a config).
        data_dir: TFDS data_dir (default `~/tensorflow_datasets`).
        manual_dir: folder holding the source files.
        config: a `BuilderConfig` instance, to override a config's options,
            e.g. `PointSetFolderConfig(name="scans", num_dims=3, nan_policy="drop")`.
            Data already prepared under its name with other options is refused.
        options: `{option: value}` overrides of the config `name` selects,
            e.g. `{"num_dims": 2}`; the derived config is named after a hash
            of all its options, so other options never reuse data prepared
            with these (not together with `config`).

    Returns:
        The `tfds.core.DatasetBuilder`.

    Raises:
        ValueError: an unknown option or config, a value of the wrong type,
            or prepared data whose options differ from the config's.

    Example (four 2-D clouds in class folders, without train/test folders):

    >>> import os
    >>> from ddeq_keras.datasets import prepare
    >>> for path in ["chair/a", "chair/b", "table/c", "table/d"]:
    ...     os.makedirs(os.path.dirname(f"scans/{path}"), exist_ok=True)
    ...     np.savetxt(f"scans/{path}.xyz", np.random.rand(30, 2))
    >>> builder = prepare("point_set_folder", data_dir="tfds_scans", manual_dir="scans",
    ...                   options={"num_dims": 2})
    Downloading and preparing dataset ...
    Dataset point_set_folder downloaded and prepared to ...
    >>> builder.builder_config.name  # "default" plus a hash of the options
    'default_...'
    >>> builder.info.splits["train"].num_examples  # the config's default_split
    4
    """
    import tensorflow_datasets as tfds

    if options:
        if config is not None:
            raise ValueError("pass either config or options, not both")
        name, config = _config.base_config(name)
        config = _config.with_options(config, options)
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
