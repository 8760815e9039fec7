"""Delimited text (.txt, .xyz, .csv, .pts) and NumPy (.npy, .npz) clouds."""

from __future__ import annotations

import zipfile

import numpy as np

from ddeq_keras.datasets.readers.errors import (
    REASON_COLUMNS,
    REASON_EMPTY,
    REASON_UNREADABLE,
    PointFileError,
)

_NPZ_KEYS = ("points", "xyz", "pos", "data", "arr_0")


def _is_number_row(tokens) -> bool:
    try:
        [float(t) for t in tokens]
    except ValueError:
        return False
    return bool(tokens)


def read_text_points(path) -> np.ndarray:
    """Reads a delimited text cloud (.txt, .xyz, .csv, .pts), header or not.

    The delimiter is a comma, a semicolon or white space, whichever the first
    data row uses. Leading lines that are not all numbers are taken as a header
    and skipped, as is a first line holding only the number of points (checked
    against the rows); `#` starts a comment.

    Raises:
        PointFileError: when rows have different numbers of values, or not the
            number of rows a count line declares (reason `REASON_COLUMNS`) or contain something that is not a number
            (`REASON_UNREADABLE`, naming the line).
    """
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    delimiter = None
    start = None
    for i, line in enumerate(lines):
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        for delim in (",", ";", None):
            if delim is not None and delim not in stripped:
                continue
            tokens = [t for t in stripped.split(delim) if t.strip()] if delim else stripped.split()
            if _is_number_row([t.strip() for t in tokens]):
                delimiter, start = delim, i
                break
        if start is not None:
            break
    if start is None:
        raise PointFileError(path, REASON_EMPTY, "no numeric rows")
    declared = _point_count_line(lines, start, delimiter)
    if declared is not None:
        start = declared[0] + 1
    try:
        table = np.loadtxt(
            lines[start:], delimiter=delimiter, comments="#", dtype=np.float64, ndmin=2
        )
    except ValueError as e:
        bad = _first_non_number(lines, start, delimiter)
        if bad is not None:  # text in the data: say where (NumPy counts from `start`)
            raise PointFileError(path, REASON_UNREADABLE, f"line {bad[0]}: {bad[1]!r} is not "
                                 "a number") from e
        raise PointFileError(path, REASON_COLUMNS, f"inconsistent rows: {e}") from e
    if declared is not None and declared[1] != len(table):
        raise PointFileError(path, REASON_COLUMNS, f"line {declared[0] + 1} declares "
                             f"{declared[1]} points, the file holds {len(table)}")
    return table.astype(np.float32)


def _data_rows(lines, start):
    """(index, comment-free text) of the non-empty lines from `start` on."""
    for i in range(start, len(lines)):
        stripped = lines[i].split("#", 1)[0].strip()
        if stripped:
            yield i, stripped


def _point_count_line(lines, start, delimiter):
    """(index, count) when the first data row is a lone point count, else None.

    Many `.pts` / `.xyz` writers start with the number of points on a line of its
    own; a row of one integer followed by rows of several values is that count.
    """
    rows = _data_rows(lines, start)
    index, first = next(rows)
    following = next(rows, None)
    if following is None or not first.isdigit():
        return None
    tokens = following[1].split(delimiter) if delimiter else following[1].split()
    return (index, int(first)) if len([t for t in tokens if t.strip()]) > 1 else None


def _first_non_number(lines, start, delimiter):
    """(1-based line, token) of the first value after `start` that is not a number."""
    for i in range(start, len(lines)):
        stripped = lines[i].split("#", 1)[0].strip()
        tokens = stripped.split(delimiter) if delimiter else stripped.split()
        for token in (t.strip() for t in tokens):
            if token and not _is_number_row([token]):
                return i + 1, token
    return None


def read_numpy_points(path) -> np.ndarray:
    """Reads a `.npy` array, or the point array of a `.npz` archive.

    In a `.npz`, the array is the one named `points`, `xyz`, `pos`, `data` or
    `arr_0`, or the only array. Pickled objects are refused.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise PointFileError(path, REASON_UNREADABLE, str(e)) from e
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            key = next((k for k in _NPZ_KEYS if k in keys), None)
            if key is None and len(keys) == 1:
                key = keys[0]
            if key is None:
                raise PointFileError(
                    path,
                    REASON_UNREADABLE,
                    f"npz holds {keys}; expected one array or one named {list(_NPZ_KEYS)}",
                )
            try:
                array = loaded[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise PointFileError(path, REASON_UNREADABLE, str(e)) from e
    else:
        array = loaded
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise PointFileError(
            path, REASON_COLUMNS, f"expected a 2-D numeric array, got {array.shape} {array.dtype}"
        )
    return array.astype(np.float32)
