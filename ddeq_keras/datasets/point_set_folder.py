"""`point_set_folder`: a user's own point sets, one folder per class."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow_datasets as tfds

from ddeq_keras.datasets import _common, _config, _folders, _report, readers
from ddeq_keras.datasets.readers.validate import NAN_POLICIES


@dataclasses.dataclass(eq=False)
class PointSetFolderConfig(_config.FileSourceConfig):
    """How the files of a point-set folder are read.

    Besides the options of `FileSourceConfig` (mesh sampling, seed,
    `allow_links_outside`):

    Attributes:
        num_dims: coordinates per point, the same for every cloud (2 or 3).
            Mesh files always give 3.
        drop_extra_columns: keep the first `num_dims` columns of files with
            more (x y z nx ny nz, x y z r g b) instead of skipping them.
        nan_policy: `"skip"` skips a cloud with any NaN / inf coordinate;
            `"drop"` removes the non-finite rows.
        default_split: split of files directly in a class folder (not under
            `train/` or `test/`).
        allow_single_class: accept a folder with a single class folder
            (refused by default: it is what a manual_dir one folder too high
            gives).
        allow_nested_split_folders: accept `train` / `test` folders deeper
            than directly in a class folder (refused by default, same reason).
    """

    num_dims: int = 3
    drop_extra_columns: bool = False
    nan_policy: str = _config.choice("skip", NAN_POLICIES)
    default_split: str = "train"
    allow_single_class: bool = False
    allow_nested_split_folders: bool = False


class PointSetFolder(_common.BuilderBase):
    """Point clouds laid out as `root/<class>/[train|test/]<file>`.

    `root` is the `manual_dir` (or a single `.zip` archive in it, extracted
    safely). Class names are the folder names, sorted; a single class folder,
    or `train` / `test` folders below the class level, are refused unless
    the config allows them (both are what a manual_dir one folder too high
    gives). A file under `<class>/train/` or `<class>/test/` goes to that
    split, any other file of a class folder to `default_split`. Formats:
    `.npy`, `.npz`, `.txt` / `.xyz` / `.csv` / `.pts` (delimited, header
    optional), `.ply` (ASCII or binary), `.pcd` (ascii, binary or
    binary_compressed), and the meshes `.off`, `.obj`, `.stl` (sampled).

    Files that cannot be used (empty, corrupt, NaN, wrong number of columns,
    a link to outside the folder) are skipped and logged; each is recorded
    with its reason in `builder.info.metadata["skipped_files"]` (counts in
    `["skipped"]`) and in `preparation_report.json` beside the prepared data.

    Features: `points` (n, num_dims) float32, `label` (folder names),
    `source` (the file, relative to root).

    The prepared data is stored under `point_set_folder/<config>/`: derive
    configs with other options with `ddeq_keras.datasets.prepare(...,
    options=...)`, which names them after their options; data prepared
    under a config name with other options is refused.

    Example (four 3-D scans and an empty file, which is skipped):

    >>> import os
    >>> import ddeq_keras.datasets as dd
    >>> for path in ["chair/train/scan_01", "chair/test/scan_02",
    ...              "table/train/scan_03", "table/test/scan_04"]:
    ...     os.makedirs(os.path.dirname(f"my_scans/{path}"), exist_ok=True)
    ...     np.savetxt(f"my_scans/{path}.xyz", np.random.rand(50, 3))
    >>> open("my_scans/chair/train/scan_07.pcd", "w").close()  # an interrupted copy
    >>> builder = dd.prepare("point_set_folder", data_dir="tfds",
    ...     manual_dir="my_scans", options={"nan_policy": "drop"})
    Downloading and preparing dataset ...
    Dataset point_set_folder downloaded and prepared to ...
    >>> builder.info.features["label"].names
    ['chair', 'table']
    >>> builder.info.metadata["skipped_files"]["train"]
    [{'file': 'chair/train/scan_07.pcd', 'reason': 'empty file', 'detail': '0 bytes'}]
    """

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
        # No label names yet: `_split_generators` reads them from the folders.
        about = self.builder_config.description or ""
        return _common.cloud_info(
            self,
            description=f"A user's own point sets, one folder per class. {about}".strip(),
            num_dims=self.builder_config.num_dims,
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
        _folders.check_layout(
            scan,
            self.name,
            allow_single_class=config.allow_single_class,
            allow_nested_split_folders=config.allow_nested_split_folders,
        )
        if scan.ignored:
            _report.logger.warning(
                "%s: ignored %d files outside class folders or with unsupported "
                "extensions, e.g. %s",
                self.name, len(scan.ignored), scan.ignored[:5],
            )
        self.info.metadata["ignored_files"] = len(scan.ignored)
        self.info.metadata["ignored_file_names"] = list(scan.ignored)
        self.info.features["label"].names = scan.class_names
        return {
            split: self._generate_examples(root, files, split)
            for split, files in sorted(scan.splits.items())
        }

    def _generate_examples(self, root, files, split):
        config = self.builder_config
        return _common.file_examples(
            _report.SkipLog(self.name, split, self.info.metadata),
            root,
            files,
            config,
            num_dims=config.num_dims,
            drop_extra_columns=config.drop_extra_columns,
            nan_policy=config.nan_policy,
        )
