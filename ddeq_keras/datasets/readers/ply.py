"""PLY files (ASCII or binary): point clouds, or meshes to sample."""

from __future__ import annotations

import numpy as np

from ddeq_keras.datasets.readers.mesh import has_faces, load_trimesh, read_mesh_points


def read_ply(path, *, mesh_mode="surface", **mesh_kwargs) -> np.ndarray:
    """Reads a PLY file (ASCII or binary): its vertices, or mesh samples.

    A PLY with faces is a mesh and is sampled like OFF/OBJ/STL according to
    `mesh_mode` (see `read_mesh_points`, which takes `mesh_kwargs`); a PLY
    without faces is a point cloud and its vertex x, y, z are returned
    (colours and normals are ignored).

    Raises:
        PointFileError: naming the file, when trimesh cannot read it.
    """
    geometry = load_trimesh(path)
    if has_faces(geometry) and mesh_mode != "vertices":
        return read_mesh_points(path, mode=mesh_mode, **mesh_kwargs)
    return np.asarray(geometry.vertices, np.float32)
