"""Helpers the builders share: manual_dir lookup, archives, skip accounting."""

from __future__ import annotations

import collections
import inspect
import logging
import os
from pathlib import Path

import tensorflow_datasets as tfds
from etils import epath

from ddeq_keras.datasets import readers

logger = logging.getLogger("ddeq_keras.datasets")


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


class SkipLog:
    """Counts the examples a builder skipped, by reason, and reports them.

    Builders call `skip` for every rejected file or row, then `finish` at the
    end of a split: it logs one warning with the counts and a few file names,
    records the counts in the builder's metadata (so they are kept beside the
    prepared data) and raises if nothing valid was produced.
    """

    def __init__(self, dataset, split, metadata=None):
        self.dataset = dataset
        self.split = split
        self.metadata = metadata
        self.reasons = collections.Counter()
        self.examples = collections.defaultdict(list)
        self.kept = 0

    def skip(self, source, reason, detail=""):
        self.reasons[reason] += 1
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(f"{source}" + (f" ({detail})" if detail else ""))
        logger.debug("%s/%s: skipped %s: %s %s", self.dataset, self.split, source, reason, detail)

    def skip_error(self, error: readers.PointFileError):
        self.skip(error.path, error.reason, str(error).split(": ", 1)[-1])

    @property
    def skipped(self):
        return sum(self.reasons.values())

    def summary(self):
        parts = []
        for reason, count in sorted(self.reasons.items()):
            parts.append(f"{count} {reason} (e.g. {'; '.join(self.examples[reason])})")
        return "; ".join(parts)

    def finish(self):
        if self.metadata is not None:
            self.metadata.setdefault("skipped", {})[self.split] = dict(self.reasons)
        if self.skipped:
            logger.warning(
                "%s: split %r: kept %d, skipped %d: %s",
                self.dataset, self.split, self.kept, self.skipped, self.summary(),
            )
        if self.kept == 0:
            raise ValueError(
                f"{self.dataset}: split {self.split!r} has no valid examples"
                + (f"; skipped {self.skipped}: {self.summary()}" if self.skipped else "")
            )


class BuilderBase(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of this package's builders.

    TFDS locates a builder's source file (for an optional `checksums.tsv`
    beside it) through `importlib_resources`, a back-port that is not always
    installed; the standard library gives the same path, so it is computed
    here directly.
    """

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(inspect.getfile(cls))
