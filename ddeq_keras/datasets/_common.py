"""Helpers the builders share: manual_dir lookup, archives, features, file examples."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from ddeq_keras.datasets import _config, _folders, _report, readers
from ddeq_keras.datasets.readers.validate import check_file


class MissingDataError(FileNotFoundError):
    """The source files of a builder were not found where they were expected."""


def manual_dir_of(dl_manager):
    """Returns `(path, usable, explicit)` for the manual_dir of a download.

    TFDS raises a bare `AssertionError` from `dl_manager.manual_dir` when the
    folder is missing or empty; builders want to say which files they expected
    instead, and to fall back to downloading only when the user did not name a
    manual_dir (the default one is `<data_dir>/downloads/manual`).
    """
    # `_manual_dir` is the configured path; the public property only exists
    # once the folder is known to be usable.
    path = getattr(dl_manager, "_manual_dir", None)
    path = Path(os.fspath(path)) if path is not None else None
    default = Path(os.fspath(dl_manager.download_dir)) / "manual"
    explicit = path is not None and path != default
    usable = path is not None and path.is_dir() and any(path.iterdir())
    return path, usable, explicit


def missing_data_error(dataset, manual_dir, expected, sources):
    """Builds the error raised when a builder cannot find its source files.

    Args:
        dataset: builder name, for the message.
        manual_dir: the folder that was searched (or None).
        expected: lines describing the files or layout expected.
        sources: lines saying where to get them.
    """
    where = (
        f"manual_dir {manual_dir} does not exist"
        if manual_dir is not None and not Path(manual_dir).exists()
        else f"manual_dir {manual_dir} is empty"
        if manual_dir is not None and not any(Path(manual_dir).iterdir())
        else f"the source files were not found in manual_dir {manual_dir}"
    )
    lines = [f"{dataset}: {where}.", "Expected (directly there or in a sub-folder):"]
    lines += [f"  {e}" for e in expected]
    lines += ["Get them from:"] + [f"  {s}" for s in sources]
    lines += [
        "and pass the folder as "
        "download_config=tfds.download.DownloadConfig(manual_dir=...)."
    ]
    return MissingDataError("\n".join(lines))


def download(dl_manager, urls, dataset, expected):
    """`dl_manager.download(urls)`, failing with the manual_dir instructions.

    Used only when no manual_dir was given; without network access the TFDS
    error is a retry trace, so the message says how to work offline.
    """
    try:
        return dl_manager.download(urls)
    except Exception as e:  # network errors come in many types
        sources = list(urls.values()) if isinstance(urls, dict) else [urls]
        raise MissingDataError(
            f"{dataset}: downloading {sources} failed ({type(e).__name__}: {e}).\n"
            "To prepare offline, put these files in a folder and pass it as "
            "download_config=tfds.download.DownloadConfig(manual_dir=...):\n"
            + "\n".join(f"  {x}" for x in expected)
        ) from e


def find_file(root, names, max_depth=3):
    """Finds the shallowest file under `root` whose name is one of `names`.

    Args:
        root: folder to search.
        names: accepted file names, in order of preference.
        max_depth: how many folder levels below `root` to look.

    Returns:
        The `Path`, or None.
    """
    root = Path(root)
    best = None
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        if depth >= max_depth:
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for rank, name in enumerate(names):
            if name in filenames:
                candidate = (depth, rank, Path(dirpath) / name)
                if best is None or candidate[:2] < best[:2]:
                    best = candidate
    return best[2] if best else None


def extraction_dir(dl_manager, archive) -> Path:
    """Folder, under the download dir, where a manual archive is extracted.

    The manual_dir may be read-only (a shared copy), so archives found there
    are never extracted in place.
    """
    archive = Path(archive)
    stat = archive.stat()
    tag = f"{archive.stem}_{stat.st_size}"
    return Path(os.fspath(dl_manager.download_dir)) / "extracted" / f"ddeq_{tag}"


def extract_archive(dl_manager, archive) -> Path:
    """Safely extracts `archive` (see `readers.safe_extract_zip`)."""
    return readers.safe_extract_zip(archive, extraction_dir(dl_manager, archive))


def cloud_info(builder, *, description, num_dims, class_names=None, source=True,
               homepage=None, citation=""):
    """The `DatasetInfo` of a labelled point-cloud data set.

    Args:
        builder: the builder.
        description: its description.
        num_dims: coordinates per point (`points` is `(None, num_dims)` float32).
        class_names: the label names, or None when they are only known once
            the source folders have been read (set them in
            `_split_generators`; they are saved with the prepared data).
        source: add a `source` text feature (the example's file).
        homepage, citation: as in `tfds.core.DatasetInfo`.
    """
    features = {
        "points": tfds.features.Tensor(shape=(None, num_dims), dtype=np.float32),
        "label": tfds.features.ClassLabel(names=class_names)
        if class_names is not None
        else tfds.features.ClassLabel(),
    }
    if source:
        features["source"] = tfds.features.Text()
    return tfds.core.DatasetInfo(
        builder=builder,
        description=description,
        features=tfds.features.FeaturesDict(features),
        supervised_keys=("points", "label"),
        homepage=homepage,
        citation=citation,
        metadata=tfds.core.MetadataDict(),
    )


def file_examples(log, root, files, config, *, num_dims, drop_extra_columns=False,
                  nan_policy="skip"):
    """Yields `(key, example)` for each readable file of a class-folder tree.

    Each file is checked (`readers.validate.check_file`: inside `root`
    unless `config.allow_links_outside`, not empty), read (meshes sampled
    per `config`, seeded by the file's path) and validated; a file that fails
    is recorded in `log` under its path relative to `root` and skipped.

    Args:
        log: the split's `_report.SkipLog`; finished here.
        root: the folder holding the class folders.
        files: `[(relative_path, class_name), ...]`.
        config: a `_config.FileSourceConfig`.
        num_dims, drop_extra_columns, nan_policy: see `readers.validate_points`.
    """
    for rel, class_name in files:
        path = Path(root) / rel
        try:
            check_file(path, root, allow_outside=config.allow_links_outside)
            points = readers.read_point_file(
                path,
                mesh_mode=config.mesh_mode,
                num_samples=config.num_samples,
                min_points=config.min_points,
                max_points=config.max_points,
                seed=_folders.file_seed(rel, config.seed),
            )
            points = readers.validate_points(
                points, path, num_dims=num_dims,
                drop_extra_columns=drop_extra_columns, nan_policy=nan_policy,
            )
        except readers.PointFileError as e:
            log.skip_error(e, rel)
            continue
        log.kept += 1
        yield rel, {"points": points, "label": class_name, "source": rel}
    log.finish()


class BuilderBase(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of this package's builders.

    * Checks its config's options, and refuses prepared data whose recorded
      options differ (`_config.check_prepared_options`): TFDS would
      otherwise reuse it silently.
    * Records the options in the metadata and writes
      `preparation_report.json` (skipped and ignored files with their
      reasons) beside the prepared data. Both are written inside the
      temporary folder TFDS prepares into and renames only once everything
      is written, so a killed preparation leaves no prepared data behind.
    * TFDS locates a builder's source file (for an optional `checksums.tsv`
      beside it) through `importlib_resources`, a back-port that is not
      always installed; the standard library gives the same path, so it is
      computed here directly.

    Subclasses that change their data bump `VERSION` and add a release note.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _config.check_options(self.builder_config)
        _config.check_prepared_options(self)

    def _download_and_prepare(self, dl_manager, download_config=None):
        self.info.metadata["options"] = _config.config_options(self.builder_config)
        super()._download_and_prepare(dl_manager, download_config)
        name = f"{self.name}/{self.builder_config.name}" if self.builder_config else self.name
        _report.write_report(self.data_path, name, self.info.metadata)

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(inspect.getfile(cls))
