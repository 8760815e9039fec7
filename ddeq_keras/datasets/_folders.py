"""Scanning `root/<class>/[train|test/]<file>` trees into labelled splits."""

from __future__ import annotations

import dataclasses
import os
import zlib
from pathlib import Path

SPLIT_FOLDERS = ("train", "test")


@dataclasses.dataclass
class FolderScan:
    """Result of `scan_class_folders`.

    Attributes:
        root: the scanned folder.
        class_names: sorted names of the class folders.
        splits: `{split: [(relative_path, class_name), ...]}`, sorted by path.
        ignored: files that were not considered (outside class folders, or
            with an unsupported extension), relative to `root`.
    """

    root: Path
    class_names: list
    splits: dict
    ignored: list


def _visible(name):
    return not name.startswith((".", "__"))


def scan_class_folders(root, extensions, default_split="train") -> FolderScan:
    """Lists the files of a class-per-folder tree.

    A file's class is the first folder under `root`; its split is the next
    folder when that is named `train` or `test` (any case), otherwise
    `default_split`. Deeper folders are walked. Hidden files and folders
    (leading `.` or `__`, e.g. `__MACOSX`) are ignored.

    Args:
        root: the folder holding one sub-folder per class.
        extensions: lower-case extensions (with dot) to keep.
        default_split: split of files not below a train/test folder.

    Returns:
        A `FolderScan`.
    """
    root = Path(root)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and _visible(d.name))
    splits = {}
    ignored = sorted(f.name for f in root.iterdir() if f.is_file() and _visible(f.name))
    for name in classes:
        class_dir = root / name
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if _visible(d))
            rel_dir = Path(dirpath).relative_to(class_dir)
            first = rel_dir.parts[0].lower() if rel_dir.parts else ""
            split = first if first in SPLIT_FOLDERS else default_split
            for filename in sorted(filenames):
                if not _visible(filename):
                    continue
                rel = (Path(name) / rel_dir / filename).as_posix()
                if Path(filename).suffix.lower() in extensions:
                    splits.setdefault(split, []).append((rel, name))
                else:
                    ignored.append(rel)
    for files in splits.values():
        files.sort()
    return FolderScan(root=root, class_names=classes, splits=splits, ignored=ignored)


def file_seed(relative_path, seed=0) -> int:
    """A sampling seed fixed by the file's relative path (and a global seed).

    Sampling a mesh with it gives the same cloud on every preparation and
    every machine, while different files get different samples.
    """
    return (zlib.crc32(str(relative_path).encode("utf-8")) ^ (int(seed) * 2654435761)) % (2**32)


def find_class_root(folder, required_classes=None, max_depth=2):
    """Finds the folder, at or below `folder`, that holds the class folders.

    With `required_classes`, the first folder (breadth-first) containing at
    least one of them as a sub-folder; otherwise `folder` itself, descending
    through folders that hold exactly one visible sub-folder and no files
    (the usual result of extracting `name.zip` into `name/`).
    """
    folder = Path(folder)
    if required_classes is not None:
        frontier = [folder]
        for _ in range(max_depth + 1):
            next_frontier = []
            for f in frontier:
                subdirs = sorted(d for d in f.iterdir() if d.is_dir() and _visible(d.name))
                if any(d.name in required_classes for d in subdirs):
                    return f
                next_frontier += subdirs
            frontier = next_frontier
        return None
    while True:
        entries = [e for e in folder.iterdir() if _visible(e.name)]
        dirs = [e for e in entries if e.is_dir()]
        if len(entries) == 1 and len(dirs) == 1:
            subentries = [e for e in dirs[0].iterdir() if _visible(e.name)]
            # Descend only if the single folder is itself a container of
            # folders (not a class folder holding files).
            if subentries and all(e.is_dir() for e in subentries) and not any(
                e.name.lower() in SPLIT_FOLDERS for e in subentries
            ):
                folder = dirs[0]
                continue
        return folder
