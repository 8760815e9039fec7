"""Meshes (.off, .obj, .stl, and .ply with faces) read with trimesh."""

from __future__ import annotations

import numpy as np

from ddeq_keras.datasets.readers.errors import (
    REASON_EMPTY,
    REASON_NON_FINITE,
    REASON_UNREADABLE,
    PointFileError,
    short_error,
)
from ddeq_keras.datasets.readers.voxel import voxel_downsample_to_range

MESH_MODES = ("surface", "vertices", "vertices_voxel")


def load_trimesh(path):
    """Loads a PLY / OFF / OBJ / STL file with trimesh, without processing.

    `process=False` keeps vertices exactly as stored (no merging), which is
    what the vertex-based ModelNet40 variant needs.

    Returns:
        A `trimesh.Trimesh` or `trimesh.PointCloud`.

    Raises:
        PointFileError: naming the file, when trimesh cannot read it.
    """
    import trimesh

    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as e:  # trimesh raises many types for bad input
        raise PointFileError(path, REASON_UNREADABLE, short_error(e)) from e
    if isinstance(loaded, trimesh.Scene):
        # OBJ files with several groups load as a scene: merge its geometry.
        geometries = [g for g in loaded.geometry.values() if hasattr(g, "vertices")]
        if not geometries:
            raise PointFileError(path, REASON_EMPTY, "scene without geometry")
        meshes = [g for g in geometries if isinstance(g, trimesh.Trimesh)]
        if meshes:
            loaded = trimesh.util.concatenate(meshes)
        else:
            loaded = trimesh.PointCloud(np.concatenate([g.vertices for g in geometries]))
    if not hasattr(loaded, "vertices"):
        raise PointFileError(path, REASON_UNREADABLE, f"unexpected {type(loaded).__name__}")
    return loaded


def has_faces(geometry) -> bool:
    """Whether a loaded trimesh geometry is a mesh (has faces), not a cloud."""
    faces = getattr(geometry, "faces", None)
    return faces is not None and len(faces) > 0


def sample_surface(mesh, count, seed, path="<mesh>") -> np.ndarray:
    """Samples `count` points uniformly (area-weighted) on a mesh surface."""
    import trimesh

    if float(mesh.area) <= 0.0 or not np.isfinite(mesh.area):
        raise PointFileError(path, REASON_EMPTY, "mesh has no surface area to sample")
    points, _ = trimesh.sample.sample_surface(mesh, int(count), seed=seed)
    return np.asarray(points, np.float32)


def read_mesh_points(path, *, mode="surface", num_samples=2048, min_points=500,
                     max_points=800, seed=0) -> np.ndarray:
    """Turns a mesh file (OFF / OBJ / STL / PLY with faces) into a point cloud.

    Args:
        path: the mesh file.
        mode: `"surface"`: `num_samples` area-weighted surface samples;
            `"vertices"`: the mesh vertices as stored; `"vertices_voxel"`: the
            vertices voxel-downsampled to `[min_points, max_points]` points
            (the DDEQ authors' ModelNet40 variant); meshes with fewer than
            `min_points` vertices are topped up with surface samples to reach
            `min_points`, so that sparse CAD models (a box has 8 vertices)
            still describe their shape.
        num_samples: points for `"surface"`.
        min_points, max_points: range for `"vertices_voxel"`.
        seed: sampling seed (builders derive it from the file name, so the
            same file always gives the same cloud).

    Returns:
        float32 `(n, 3)` array. A file without faces yields its vertices.

    Raises:
        PointFileError: the file is unreadable, empty or has non-finite
            vertices.
        ValueError: `mode` is not one of `MESH_MODES`.
    """
    if mode not in MESH_MODES:
        raise ValueError(f"unknown mesh mode {mode!r}; expected one of {MESH_MODES}")
    geometry = load_trimesh(path)
    vertices = np.asarray(geometry.vertices, np.float32)
    if len(vertices) == 0:
        raise PointFileError(path, REASON_EMPTY, "no vertices")
    if not np.isfinite(vertices).all():
        raise PointFileError(path, REASON_NON_FINITE)
    if not has_faces(geometry) or mode == "vertices":
        return vertices
    if mode == "surface":
        return sample_surface(geometry, num_samples, seed, path)
    down = voxel_downsample_to_range(vertices, min_points, max_points, seed)
    if len(down) < min_points and float(geometry.area) > 0.0:
        extra = sample_surface(geometry, min_points - len(down), seed, path)
        down = np.concatenate([down, extra])
    return down.astype(np.float32)
