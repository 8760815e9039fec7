"""Small 2-D point sets of outlined shapes: the main job's fine-tuning folder.

`write_shape_folder` writes one sub-folder per class (``circle``, ``cross``,
``triangle``) of ``.npy`` point sets (each ``(n, 2)`` float32, 60-160 points), in
random orientations, sizes and positions, with jitter: what a user's own folder of
point sets looks like to the ``point_set_folder`` builder. The bundled copy
(``ddeq_keras/examples/data/shapes``) was written by
``python -m ddeq_keras.examples.shapes ddeq_keras/examples/data/shapes``.
"""

import sys
from pathlib import Path

import numpy as np

CLASSES = ("circle", "cross", "triangle")


def _outline(kind, t):
    """Points on a unit outline at parameters ``t`` in [0, 1)."""
    if kind == "circle":
        angle = 2 * np.pi * t
        return np.stack([np.cos(angle), np.sin(angle)], -1)
    if kind == "triangle":
        corners = np.array([[0.0, 1.0], [-0.87, -0.5], [0.87, -0.5], [0.0, 1.0]])
    else:  # cross: two strokes
        corners = np.array([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])
    side = np.minimum((t * 3).astype(int), 2)
    frac = t * 3 - side
    if kind == "cross":  # strokes 0 and 2 only (1 is the jump between them)
        side = np.where(side == 1, 2, side)
    return corners[side] + frac[:, None] * (corners[side + 1] - corners[side])


def make_shape(kind, rng):
    """One point set of ``kind``: ``(n, 2)`` float32."""
    n = int(rng.integers(60, 161))
    points = _outline(kind, rng.uniform(0, 1, n))
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = points @ rotation.T * rng.uniform(5, 12) + rng.uniform(8, 20, size=2)
    return (points + rng.normal(scale=0.3, size=points.shape)).astype("float32")


def write_shape_folder(folder, per_class=10, seed=0):
    """Writes ``folder/<class>/<class>_<i>.npy`` for every class; returns the folder."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    for kind in CLASSES:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            np.save(folder / kind / f"{kind}_{i:02d}.npy", make_shape(kind, rng))
    return folder


if __name__ == "__main__":
    write_shape_folder(sys.argv[1] if len(sys.argv) > 1 else "shapes")
