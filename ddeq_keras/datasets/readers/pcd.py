"""PCD, the Point Cloud Library format, read with `pypcd4`.

`pypcd4` parses the v0.7 header and all three encodings (`ascii`, `binary`
and the LZF-compressed `binary_compressed`). It does not check that the body
holds as many points as the header declares (a truncated binary file can
come back short), so that check is done here.
"""

from __future__ import annotations

import io

import numpy as np

from ddeq_keras.datasets.readers.errors import (
    REASON_COLUMNS,
    REASON_UNREADABLE,
    PointFileError,
    short_error,
)


def read_pcd(path) -> np.ndarray:
    """Reads the x, y (and z) fields of a PCD file.

    Args:
        path: the `.pcd` file, encoded `ascii`, `binary` or
            `binary_compressed`.

    Returns:
        float32 array `(n, 3)`, or `(n, 2)` for a file without a `z` field.
        Other fields (rgb, intensity, ...) are ignored. Non-finite values (PCL
        marks missing returns with NaN) are kept; the caller decides whether
        that rejects the cloud.

    Raises:
        PointFileError: naming the file, for a malformed header, a corrupt
            or truncated body, or a missing x / y field.

    Example (a three-point ascii file):

    >>> from ddeq_keras.datasets.readers import read_pcd
    >>> header = ["VERSION 0.7", "FIELDS x y z", "SIZE 4 4 4", "TYPE F F F",
    ...           "COUNT 1 1 1", "WIDTH 3", "HEIGHT 1", "VIEWPOINT 0 0 0 1 0 0 0",
    ...           "POINTS 3", "DATA ascii"]
    >>> with open("scan_01.pcd", "w") as f:
    ...     print(*header, "0 0 0", "1 0 0", "0 1 0.5", sep=chr(10), file=f)
    >>> read_pcd("scan_01.pcd").tolist()
    [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.5]]
    """
    from pypcd4 import PointCloud

    with open(path, "rb") as f:
        raw = f.read()
    try:
        cloud = PointCloud.from_fileobj(io.BytesIO(raw))
    except Exception as e:  # pypcd4 raises many types (pydantic, lzf, numpy, struct)
        detail = _truncation(raw) or f"bad PCD file: {short_error(e)}"
        raise PointFileError(path, REASON_UNREADABLE, detail) from e
    fields = cloud.fields
    if "x" not in fields or "y" not in fields:
        raise PointFileError(path, REASON_COLUMNS, f"PCD fields {list(fields)} have no x and y")
    declared = cloud.metadata.points
    if len(cloud.pc_data) != declared:
        raise PointFileError(
            path,
            REASON_UNREADABLE,
            f"PCD body holds {len(cloud.pc_data)} of the {declared} points the header "
            "declares (truncated)",
        )
    wanted = [name for name in ("x", "y", "z") if name in fields]
    if declared == 0:
        return np.zeros((0, len(wanted)), np.float32)
    return np.stack([cloud.pc_data[name] for name in wanted], axis=1).astype(np.float32)


def _truncation(raw):
    """Says how short a truncated `binary` body is, or None.

    NumPy's complaint about a partial last point ("buffer size must be a
    multiple of element size") does not tell a user the file was cut off.
    """
    from pypcd4 import Encoding, MetaData

    try:
        end = raw.index(b"\n", raw.index(b"\nDATA") + 1)
        lines = raw[:end].decode("ascii").splitlines()
        header = MetaData.parse_header([line.strip() for line in lines])
    except (ValueError, UnicodeDecodeError):  # pydantic's error is a ValueError
        return None
    needed = header.points * header.build_dtype().itemsize
    body = len(raw) - end - 1
    if header.data == Encoding.BINARY and body < needed:
        return (
            f"PCD binary body is {body} bytes, the header declares {header.points} "
            f"points of {header.build_dtype().itemsize} bytes (truncated)"
        )
    return None
