"""A picture of clouds and their particles at the start and at the equilibrium.

A DDEQ classifier's particles live in its latent space (128-D for the zoo's
models): each is drawn in the 2-D PCA plane of its start and equilibrium
particles together, with an arrow from where the flow started (``z0``) to where
it ended (``z*``). Needs
matplotlib (the ``all`` extra); draws off-screen.

Example (a tiny untrained model; a pretrained one draws the same way):
>>> from ddeq_keras.examples.figures import plot_particles
>>> from ddeq_keras.models import create_model
>>> model = create_model("ddeq_mnist", latent_dim=16, hidden_dim=4, bilinear_dim=4,
...                      num_heads=2, ff_dim=16)
>>> batch = model.preprocess([np.random.default_rng(0).random((30, 2))])
>>> plot_particles(model.backbone, batch, "particles.png").name
'particles.png'
"""

from pathlib import Path

import numpy as np


def _pca_plane(z):
    """The two leading principal directions of the rows of ``z``: ``(d, 2)``."""
    centred = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[:2].T


def _cloud_axes(cloud):
    """The cloud's first two axes, image-like for 2-D clouds (y pointing down)."""
    if cloud.shape[1] == 2:
        return cloud[:, 0], -cloud[:, 1]
    return cloud[:, 0], cloud[:, 2]


def plot_particles(backbone, batch, out, count=3, titles=None, solution=None):
    """Draws ``count`` clouds of ``batch`` over their particles' flow; returns ``out``.

    Args:
        backbone: a `DDEQBackbone` (``model.backbone``).
        batch: ``{"points", "mask"}`` (NumPy), e.g. ``model.preprocess(clouds)``.
        out: the PNG path to write.
        count: how many of the batch's clouds to draw.
        titles: optional title per cloud (default: its number of points).
        solution: the backbone's output on ``batch`` if already computed
            (``{"particles", "stats"}``); None solves here.

    Returns:
        ``out`` as a `pathlib.Path`.
    """
    import keras
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = np.asarray(batch["points"])
    mask = np.asarray(batch["mask"]).astype(bool)
    count = min(count, len(points))
    z0 = keras.ops.convert_to_numpy(backbone.initial_particles(count, training=False))
    # One compiled solve of the whole batch (an eager solve is slow on JAX).
    result = solution or backbone.predict_on_batch({"points": points, "mask": mask})
    z = np.asarray(result["particles"])[:count]
    evaluations = np.asarray(result["stats"]["num_evaluations"])[:count]
    fig, axes = plt.subplots(2, count, figsize=(3.2 * count, 6.2), squeeze=False)
    for i in range(count):
        cloud = points[i][mask[i]]
        axes[0, i].scatter(*_cloud_axes(cloud), s=4, c="k")
        axes[0, i].set_title(titles[i] if titles else f"cloud {i} ({mask[i].sum()} points)",
                             fontsize=9)
        axes[0, i].set_aspect("equal")
        # The plane of start and end together: a classifier's equilibrium
        # particles can nearly coincide, leaving their own plane arbitrary.
        plane = _pca_plane(np.concatenate([z0[i], z[i]]))
        start, end = z0[i] @ plane, z[i] @ plane
        for a, b in zip(start, end):
            axes[1, i].annotate("", xy=b, xytext=a,
                                arrowprops=dict(arrowstyle="->", color="0.6", lw=0.6))
        axes[1, i].scatter(*start.T, s=14, c="tab:blue", label="start z0")
        axes[1, i].scatter(*end.T, s=14, c="tab:red", label="equilibrium z*")
        axes[1, i].set_title(f"particles, PCA plane ({int(evaluations[i])} map evals)",
                             fontsize=9)
        axes[1, i].legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
