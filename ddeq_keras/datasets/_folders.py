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
            with an unsupported extension), and linked folders (not
            followed), relative to `root`.
        nested_split_dirs: folders named `train` / `test` found deeper than
            directly in a class folder (a sign that `root` is one level too
            high), relative to `root`.
    """

    root: Path
    class_names: list
    splits: dict
    ignored: list
    nested_split_dirs: list = dataclasses.field(default_factory=list)

    def num_files(self, class_name):
        """Number of supported files of a class, over all splits."""
        return sum(c == class_name for files in self.splits.values() for _, c in files)


def _visible(name):
    return not name.startswith((".", "__"))


def scan_class_folders(root, extensions, default_split="train") -> FolderScan:
    """Lists the files of a class-per-folder tree.

    A file's class is the first folder under `root`; its split is the next
    folder when that is named `train` or `test` (any case), otherwise
    `default_split`. Deeper folders are walked; links to folders inside a
    class folder are not followed (they could loop) and are listed as
    ignored. Hidden files and folders (leading `.` or `__`, e.g.
    `__MACOSX`) are ignored.

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
    nested = []
    for name in classes:
        class_dir = root / name
        for dirpath, dirnames, filenames in os.walk(class_dir):
            rel_dir = Path(dirpath).relative_to(class_dir)
            links = [
                d for d in dirnames if _visible(d) and os.path.islink(os.path.join(dirpath, d))
            ]
            ignored += [(Path(name) / rel_dir / d).as_posix() + "/" for d in links]
            dirnames[:] = sorted(d for d in dirnames if _visible(d) and d not in links)
            if rel_dir.parts:
                nested += [
                    (Path(name) / rel_dir / d).as_posix()
                    for d in dirnames if d.lower() in SPLIT_FOLDERS
                ]
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
    return FolderScan(root=root, class_names=classes, splits=splits, ignored=ignored,
                      nested_split_dirs=sorted(nested))


def check_layout(scan, dataset, *, allow_single_class=False, allow_nested_split_folders=False):
    """Refuses the layouts that a manual_dir one folder too high produces.

    Pointed at the parent of the class folders, a scan sees one "class" (the
    data set's folder) or finds `train` / `test` folders below the class
    level; either would quietly give a wrong data set.

    Args:
        scan: a `FolderScan`.
        dataset: builder name, for messages.
        allow_single_class: accept a single class folder.
        allow_nested_split_folders: accept `train` / `test` folders deeper
            than directly in a class folder (their files then go to the split
            of the folder directly in the class folder, or `default_split`).

    Raises:
        ValueError: naming the folder and what was found there.
    """
    root = scan.root
    if len(scan.class_names) == 1 and not allow_single_class:
        (only,) = scan.class_names
        below = sorted(d.name for d in (root / only).iterdir() if d.is_dir() and _visible(d.name))
        raise ValueError(
            f"{dataset}: manual_dir {root} holds a single class folder {only!r} "
            f"({scan.num_files(only)} supported file(s); sub-folders {below[:10]}). A class "
            f"set needs one folder per class: if {root / only} holds the class folders, "
            "pass that folder as manual_dir; to prepare a one-class data set on purpose, "
            "set the config option allow_single_class=True "
            "(prepare_data.py: --option allow_single_class=true)."
        )
    if scan.nested_split_dirs and not allow_nested_split_folders:
        raise ValueError(
            f"{dataset}: split folders below the class level in manual_dir {root}: "
            f"{scan.nested_split_dirs[:5]}. Expected <class>/train and <class>/test directly "
            f"under manual_dir (class folders found: {scan.class_names[:10]}); manual_dir "
            "may be one folder too high. To keep this layout, set the config option "
            "allow_nested_split_folders=True."
        )


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
