"""`point_set_folder`: a user's own point sets, one folder per class."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from ddeq_keras.datasets import _common, _folders, readers


@dataclasses.dataclass(eq=False)
class PointSetFolderConfig(tfds.core.BuilderConfig):
    """How the files of a point-set folder are read.

    Attributes:
        num_dims: coordinates per point, the same for every cloud (2 or 3).
            Mesh files always give 3.
        drop_extra_columns: keep the first `num_dims` columns of files with
            more (x y z nx ny nz, x y z r g b) instead of skipping them.
        nan_policy: `"skip"` skips a cloud with any NaN / inf coordinate;
            `"drop"` removes the non-finite rows.
        mesh_mode: how meshes (.off, .obj, .stl, .ply with faces) become
            clouds: `"surface"`, `"vertices"` or `"vertices_voxel"` (see
            `readers.read_mesh_points`).
        num_samples: surface samples per mesh.
        min_points, max_points: range of `"vertices_voxel"`.
        seed: mixed with each file's path to seed mesh sampling.
        default_split: split of files directly in a class folder (not under
            `train/` or `test/`).
    """

    num_dims: int = 3
    drop_extra_columns: bool = False
    nan_policy: str = "skip"
    mesh_mode: str = "surface"
    num_samples: int = 2048
    min_points: int = 500
    max_points: int = 800
    seed: int = 0
    default_split: str = "train"


class PointSetFolder(_common.BuilderBase):
    """Point clouds laid out as `root/<class>/[train|test/]<file>`.

    `root` is the `manual_dir` (or a single `.zip` archive in it, extracted
    safely). Class names are the folder names, sorted. A file under
    `<class>/train/` or `<class>/test/` goes to that split, any other file of
    a class folder to `default_split`. Formats: `.npy`, `.npz`, `.txt` /
    `.xyz` / `.csv` / `.pts` (delimited, header optional), `.ply` (ASCII or
    binary), `.pcd` (ASCII or binary), and the meshes `.off`, `.obj`, `.stl`
    (sampled). Files that cannot be used (corrupt, NaN, wrong number of
    columns, unsupported extension) are skipped, counted and logged; the
    counts are kept in `builder.info.metadata["skipped"]`.

    Features: `points` (n, num_dims) float32, `label` (folder names),
    `source` (the file, relative to root).

    Prepare each data set in its own `data_dir` (or give each its own config
    name): the prepared data is stored under `point_set_folder/<config>/`.

    Example:

    >>> import tensorflow_datasets as tfds
    >>> import ddeq_keras.datasets
    >>> builder = tfds.builder("point_set_folder", data_dir="/tmp/my_scans")  # doctest: +SKIP
    >>> builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
    ...     manual_dir="/data/my_scans"))  # doctest: +SKIP
    >>> builder.info.features["label"].names  # doctest: +SKIP
    ['chair', 'table']
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        PointSetFolderConfig(
            name="default", description="3-D clouds, meshes sampled on their surface."
        ),
        PointSetFolderConfig(name="2d", num_dims=2, description="2-D clouds."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Lay out your data as <manual_dir>/<class>/[train|test/]<file> "
        f"(formats: {', '.join(readers.SUPPORTED_EXTENSIONS)})."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "A user's own point sets, one folder per class. "
                + (config.description or "")
            ),
            features=tfds.features.FeaturesDict(
                {
                    "points": tfds.features.Tensor(
                        shape=(None, config.num_dims), dtype=np.float32
                    ),
                    # Names are read from the folders in `_split_generators`
                    # and saved with the prepared data.
                    "label": tfds.features.ClassLabel(),
                    "source": tfds.features.Text(),
                }
            ),
            supervised_keys=("points", "label"),
            citation="",
            metadata=tfds.core.MetadataDict(),
        )

    def _root(self, dl_manager) -> Path:
        manual_dir, usable, _ = _common.manual_dir_of(dl_manager)
        expected = [
            "<class>/[train|test/]<file>, one folder per class",
            f"file formats: {' '.join(readers.SUPPORTED_EXTENSIONS)}",
            "or a single .zip archive of that tree",
        ]
        if not usable:
            raise _common.missing_data_error(self.name, manual_dir, expected, ["your own data"])
        root = Path(manual_dir)
        has_dirs = any(d.is_dir() and not d.name.startswith(".") for d in root.iterdir())
        archives = sorted(root.glob("*.zip"))
        if not has_dirs and archives:
            if len(archives) > 1:
                raise ValueError(
                    f"{self.name}: manual_dir {root} holds several archives "
                    f"{[a.name for a in archives]}; extract them or keep one"
                )
            root = _folders.find_class_root(_common.extract_archive(dl_manager, archives[0]))
        if not any(d.is_dir() for d in root.iterdir()):
            raise _common.missing_data_error(self.name, manual_dir, expected, ["your own data"])
        return root

    def _split_generators(self, dl_manager):
        config = self.builder_config
        root = self._root(dl_manager)
        scan = _folders.scan_class_folders(root, readers.SUPPORTED_EXTENSIONS, config.default_split)
        if not scan.splits:
            raise ValueError(
                f"{self.name}: no supported files under {root} "
                f"(class folders {scan.class_names}; formats {readers.SUPPORTED_EXTENSIONS})"
            )
        if scan.ignored:
            _common.logger.warning(
                "%s: ignored %d files outside class folders or with unsupported "
                "extensions, e.g. %s",
                self.name, len(scan.ignored), scan.ignored[:5],
            )
        self.info.metadata["ignored_files"] = len(scan.ignored)
        self.info.features["label"].names = scan.class_names
        return {
            split: self._generate_examples(root, files, split)
            for split, files in sorted(scan.splits.items())
        }

    def _generate_examples(self, root, files, split):
        config = self.builder_config
        log = _common.SkipLog(self.name, split, self.info.metadata)
        for rel, class_name in files:
            path = root / rel
            try:
                points = readers.read_point_file(
                    path,
                    mesh_mode=config.mesh_mode,
                    num_samples=config.num_samples,
                    min_points=config.min_points,
                    max_points=config.max_points,
                    seed=_folders.file_seed(rel, config.seed),
                )
                points = readers.validate_points(
                    points,
                    path,
                    num_dims=config.num_dims,
                    drop_extra_columns=config.drop_extra_columns,
                    nan_policy=config.nan_policy,
                )
            except readers.PointFileError as e:
                log.skip_error(e)
                continue
            log.kept += 1
            yield rel, {"points": points, "label": class_name, "source": rel}
        log.finish()
