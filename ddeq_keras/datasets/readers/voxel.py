"""Voxel-grid downsampling of clouds to a target number of points."""

from __future__ import annotations

import numpy as np


def voxel_downsample(points, voxel_size) -> np.ndarray:
    """Replaces the points in each occupied voxel of a grid by their centroid.

    Args:
        points: `(n, d)` array.
        voxel_size: edge length of the cubic voxels.

    Returns:
        `(m, d)` float32 centroids, one per occupied voxel, in voxel order.
    """
    points = np.asarray(points, np.float64)
    keys = np.floor((points - points.min(0)) / voxel_size).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((len(counts), points.shape[1]))
    np.add.at(sums, inverse, points)
    return (sums / counts[:, None]).astype(np.float32)


def _voxel_count(points, voxel_size) -> int:
    keys = np.floor((points - points.min(0)) / voxel_size).astype(np.int64)
    dims = keys.max(0) + 1
    # One int64 code per voxel: cheaper than np.unique(axis=0) in a search loop.
    codes = keys[:, 0]
    for j in range(1, keys.shape[1]):
        codes = codes * dims[j] + keys[:, j]
    return len(np.unique(codes))


def voxel_downsample_to_range(points, min_points=500, max_points=800, seed=0) -> np.ndarray:
    """Voxel-downsamples a cloud so that it keeps between min and max points.

    The voxel size is found by bisection (in log scale) between 1/4096 of the
    bounding box and the whole box. The number of occupied voxels is not
    strictly monotone in the voxel size, so if no size lands in the range the
    finest grid with more than `max_points` voxels is used and a seeded random
    subset of `max_points` centroids is kept. A cloud with at most
    `max_points` distinct points is returned unchanged (the caller decides
    what to do with fewer than `min_points`).

    Args:
        points: `(n, d)` array.
        min_points, max_points: the target range, inclusive.
        seed: for the fallback subset.

    Returns:
        float32 array with at most `max_points` rows.
    """
    points = np.asarray(points, np.float64)
    extent = float((points.max(0) - points.min(0)).max()) if len(points) else 0.0
    if len(points) <= max_points or extent <= 0.0:
        return points.astype(np.float32)[:max_points]
    lo, hi = extent / 4096.0, extent
    if _voxel_count(points, lo) <= max_points:
        return voxel_downsample(points, lo)
    chosen = None
    for _ in range(40):
        mid = float(np.sqrt(lo * hi))
        count = _voxel_count(points, mid)
        if count > max_points:
            lo = mid
        elif count < min_points:
            hi = mid
        else:
            chosen = mid
            break
    if chosen is not None:
        return voxel_downsample(points, chosen)
    down = voxel_downsample(points, lo)
    keep = np.sort(np.random.default_rng(seed).choice(len(down), max_points, replace=False))
    return down[keep]
