"""PNG plots of a training run (matplotlib, no display needed).

- ``curves.png``: training and monitoring loss / accuracy (or Chamfer) per epoch,
  from the run's ``metrics.csv``;
- ``confusion.png``: the confusion matrix of the final evaluation (classifiers);
- ``particles.png`` (DDEQ models): for a few clouds, the cloud, and its particles
  at the start of the flow and at the equilibrium (a classifier's particles live in
  the 128-D latent space: shown in the 2-D PCA plane of the equilibrium particles);
- ``completions.png`` (completers): input, completion and ground truth.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(csv_path, out):
    """Loss and the task metric per epoch, training vs monitoring split."""
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return None
    epochs = [int(r["epoch"]) + 1 for r in rows]
    metric = "accuracy" if "train_accuracy" in rows[0] else "chamfer_distance"
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, name in zip(axes, ("loss", metric)):
        for prefix in ("train", "monitor"):
            key = f"{prefix}_{name}"
            if key in rows[0]:
                ax.plot(epochs, [float(r[key]) for r in rows], marker="o", label=prefix)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    return _save(fig, out)


def plot_confusion(matrix, class_names, out):
    matrix = np.asarray(matrix, dtype=float)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.22 * len(class_names))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90, fontsize=7)
    ax.set_yticks(ticks, class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, out)


def plot_particles(model, x, out, count=3):
    """Clouds and their particles at the start and at the equilibrium (the library's
    figure, `ddeq_keras.examples.figures.plot_particles`)."""
    from ddeq_keras.examples.figures import plot_particles as draw

    batch = {"points": np.asarray(x["points"]), "mask": np.asarray(x["mask"]).astype(bool)}
    return draw(model.backbone, batch, out, count=count)


def _as_cloud(cloud):
    """``{"points", "mask"}`` from a padded cloud dict or a bare ``(B, N, D)`` array (the
    PCN-2D baseline's output: every point valid)."""
    if isinstance(cloud, dict):
        return np.asarray(cloud["points"]), np.asarray(cloud["mask"]).astype(bool)
    points = np.asarray(cloud)
    if points.ndim != 3:
        raise ValueError(
            "A completion must be a dict with 'points' and 'mask' or an array of shape "
            f"(batch, points, dims); got an array of shape {points.shape}.")
    return points, np.ones(points.shape[:2], dtype=bool)


def plot_completions(model, x, y, out, count=3):
    """Input (partial cloud), the model's completion and the ground truth."""
    pred = model.predict_on_batch({k: np.asarray(v)[:count] for k, v in x.items()})
    pred = keras.tree.map_structure(keras.ops.convert_to_numpy, pred)
    fig, axes = plt.subplots(count, 3, figsize=(8, 2.8 * count), squeeze=False)
    panels = [(title, _as_cloud(cloud))
              for title, cloud in (("input", x), ("completion", pred), ("ground truth", y))]
    for i in range(count):
        for j, (title, (points, mask)) in enumerate(panels):
            pts = points[i][mask[i]]
            axes[i, j].scatter(pts[:, 0], -pts[:, 1], s=4, c="k")
            axes[i, j].set_title(f"{title} ({len(pts)})")
            axes[i, j].set_aspect("equal")
    return _save(fig, out)


def write_run_plots(run_dir, model, data, report):
    """Every plot that applies to this model and run; returns the paths written."""
    run_dir = Path(run_dir)
    written = []
    if (run_dir / "metrics.csv").exists():
        written.append(plot_curves(run_dir / "metrics.csv", run_dir / "curves.png"))
    if "confusion_matrix" in report:
        written.append(plot_confusion(report["confusion_matrix"], report["class_names"],
                                      run_dir / "confusion.png"))
    x, y = next(iter(data))
    count = min(3, len(np.asarray(x["points"])))
    if hasattr(model, "backbone") and hasattr(model.backbone, "initial_particles") \
            and model.backbone.num_particles is not None:
        written.append(plot_particles(model, x, run_dir / "particles.png", count))
    if isinstance(y, dict):
        written.append(plot_completions(model, x, y, run_dir / "completions.png", count))
    return [p for p in written if p is not None]
