"""Checks on a source file before it is read, and on the cloud read from it."""

from __future__ import annotations

import os

import numpy as np

from ddeq_keras.datasets.readers.errors import (
    REASON_COLUMNS,
    REASON_EMPTY,
    REASON_EMPTY_FILE,
    REASON_NON_FINITE,
    REASON_OUTSIDE,
    REASON_UNREADABLE,
    PointFileError,
)

NAN_POLICIES = ("skip", "drop")


def check_file(path, root=None, *, allow_outside=False) -> None:
    """Refuses a source file that is empty, missing, or (through a link) outside `root`.

    Args:
        path: the file about to be read.
        root: the folder the data set lives in; `None` skips the check.
        allow_outside: read files that symbolic links lead outside `root` to.

    Raises:
        PointFileError: with reason `REASON_OUTSIDE` (the resolved target is
            not below `root`), `REASON_UNREADABLE` (it cannot be opened or is
            not a regular file, e.g. a dangling link) or `REASON_EMPTY_FILE`
            (0 bytes, e.g. an interrupted copy).
    """
    if root is not None and not allow_outside:
        target = os.path.realpath(path)
        base = os.path.realpath(root)
        if os.path.commonpath([target, base]) != base:
            raise PointFileError(
                path,
                REASON_OUTSIDE,
                f"resolves to {target}, outside {base}; set allow_links_outside=True "
                "to read it",
            )
    try:
        size = os.stat(path).st_size
    except OSError as e:
        raise PointFileError(path, REASON_UNREADABLE, f"{type(e).__name__}: {e}") from e
    if not os.path.isfile(path):
        raise PointFileError(path, REASON_UNREADABLE, "not a regular file")
    if size == 0:
        raise PointFileError(path, REASON_EMPTY_FILE, "0 bytes")


def validate_points(points, path, *, num_dims, drop_extra_columns=False,
                    nan_policy="skip") -> np.ndarray:
    """Checks a cloud's columns and values; returns the cleaned float32 cloud.

    Args:
        points: `(n, c)` array from a reader.
        path: the source file, for messages.
        num_dims: the dimension `d` every cloud of the data set must have.
        drop_extra_columns: keep the first `num_dims` columns of wider files
            (e.g. x y z nx ny nz) instead of rejecting them.
        nan_policy: `"skip"` rejects a cloud with any NaN / inf coordinate;
            `"drop"` removes those rows (organised PCD scans mark missing
            returns with NaN) and rejects the cloud only if nothing is left.

    Raises:
        PointFileError: wrong number of columns, non-finite values (policy
            `"skip"`) or no points left.
        ValueError: `nan_policy` is not one of `NAN_POLICIES`.
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be 'skip' or 'drop', got {nan_policy!r}")
    points = np.asarray(points)
    if points.ndim != 2:
        raise PointFileError(path, REASON_COLUMNS, f"array of shape {points.shape}")
    columns = points.shape[1]
    if columns != num_dims:
        if columns > num_dims and drop_extra_columns:
            points = points[:, :num_dims]
        else:
            raise PointFileError(path, REASON_COLUMNS, f"{columns} columns, expected {num_dims}")
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        if nan_policy == "skip":
            raise PointFileError(
                path, REASON_NON_FINITE, f"{int((~finite).sum())} of {len(points)} rows"
            )
        points = points[finite]
    if points.shape[0] == 0:
        raise PointFileError(path, REASON_EMPTY)
    return np.ascontiguousarray(points, np.float32)
