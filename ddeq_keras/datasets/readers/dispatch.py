"""Which reader a file goes to, by its extension."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddeq_keras.datasets.readers.errors import REASON_EMPTY, REASON_FORMAT, PointFileError
from ddeq_keras.datasets.readers.mesh import read_mesh_points
from ddeq_keras.datasets.readers.pcd import read_pcd
from ddeq_keras.datasets.readers.ply import read_ply
from ddeq_keras.datasets.readers.text import read_numpy_points, read_text_points
from ddeq_keras.datasets.readers.validate import check_file

POINT_EXTENSIONS = (".npy", ".npz", ".txt", ".xyz", ".csv", ".pts", ".ply", ".pcd")
MESH_EXTENSIONS = (".off", ".obj", ".stl")
SUPPORTED_EXTENSIONS = POINT_EXTENSIONS + MESH_EXTENSIONS
TEXT_EXTENSIONS = (".txt", ".xyz", ".csv", ".pts")


def read_point_file(path, *, mesh_mode="surface", num_samples=2048, min_points=500,
                    max_points=800, seed=0) -> np.ndarray:
    """Reads any supported point-cloud or mesh file into an `(n, d)` array.

    Dispatches on the extension: `.npy`, `.npz`, `.txt` / `.xyz` / `.csv` /
    `.pts`, `.ply`, `.pcd`, and the meshes `.off`, `.obj`, `.stl` (sampled, see
    `read_mesh_points`). Columns are returned as stored; check them with
    `validate_points`.

    Raises:
        PointFileError: the file is unsupported, unreadable, empty (0 bytes:
            reason `REASON_EMPTY_FILE`) or holds no points.

    Example:

    >>> import trimesh
    >>> from ddeq_keras.datasets.readers import read_point_file
    >>> _ = trimesh.creation.cylinder(radius=0.4, height=1.0).export("mug_0001.off")
    >>> cloud = read_point_file("mug_0001.off", num_samples=1024)  # surface samples
    >>> cloud.shape
    (1024, 3)
    >>> open("empty.ply", "w").close()
    >>> read_point_file("empty.ply")
    Traceback (most recent call last):
    ...
    ddeq_keras.datasets.readers.errors.PointFileError: empty.ply: empty file (0 bytes)
    """
    ext = Path(path).suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise PointFileError(path, REASON_FORMAT, f"extension {ext!r}")
    # A 0-byte file (an interrupted copy) would otherwise get each parser's
    # own complaint about a missing header.
    check_file(path)
    mesh_kwargs = dict(num_samples=num_samples, min_points=min_points,
                       max_points=max_points, seed=seed)
    if ext in (".npy", ".npz"):
        points = read_numpy_points(path)
    elif ext in TEXT_EXTENSIONS:
        points = read_text_points(path)
    elif ext == ".pcd":
        points = read_pcd(path)
    elif ext == ".ply":
        points = read_ply(path, mesh_mode=mesh_mode, **mesh_kwargs)
    else:
        points = read_mesh_points(path, mode=mesh_mode, **mesh_kwargs)
    if points.shape[0] == 0:
        raise PointFileError(path, REASON_EMPTY)
    return points
