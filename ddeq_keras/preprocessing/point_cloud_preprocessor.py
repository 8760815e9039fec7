"""`PointCloudPreprocessor`: raw clouds in, the batches a model was trained on out."""

import keras
import numpy as np
from keras import ops

from ddeq_keras.preprocessing.normalization import check_normalization, normalize_points


@keras.saving.register_keras_serializable(package="ddeq_keras")
class PointCloudPreprocessor(keras.layers.Layer):
    """Turns point clouds into normalised, fixed-size, masked batches.

    Two steps, each usable alone:
    - `pack` (host side, NumPy): a list of ``(n_i, point_dim)`` arrays of
      different sizes becomes ``{"points": (batch, num_points, point_dim),
      "mask": (batch, num_points)}``; a cloud with more than ``num_points``
      points keeps ``num_points`` evenly spaced ones (deterministic), shorter
      ones are zero-padded. Every cloud is checked (rank, width, finite
      values, at least one point) with an error that names it.
    - `call` (`keras.ops`, every backend, jit-compatible): the normalisation
      the model was trained with, over each cloud's valid points (padding
      never enters the statistics and stays 0). It is the same function the
      training pipeline (`ddeq_keras.datasets.make_pipeline`) applies.

    Calling the layer on a list of arrays (or one ``(n, d)`` array) packs it
    first. A task (`DDEQClassifier`, `DDEQCompleter`) holds its preprocessor
    and applies it when `predict` / `evaluate` / `fit` get raw clouds.

    Args:
        point_dim: coordinates per point.
        num_points: the padded length; None pads to the longest cloud of
            each call (and subsamples nothing).
        normalize: ``"std"`` (the DDEQ authors': per-axis standardisation),
            ``"sphere"`` (centre, scale into the unit ball) or None.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:
    >>> import numpy as np
    >>> pre = PointCloudPreprocessor(point_dim=2, num_points=5)
    >>> batch = pre([np.random.rand(3, 2), np.random.rand(8, 2)])
    >>> tuple(batch["points"].shape), keras.ops.convert_to_numpy(batch["mask"]).sum(1).tolist()
    ((2, 5, 2), [3, 5])
    """

    def __init__(self, point_dim, num_points=None, normalize="std", **kwargs):
        super().__init__(**kwargs)
        check_normalization(normalize)
        if int(point_dim) != point_dim or point_dim < 1:
            raise ValueError(f"`point_dim` must be a positive integer; got {point_dim!r}.")
        if num_points is not None and (int(num_points) != num_points or num_points < 1):
            raise ValueError(f"`num_points` must be a positive integer or None; got {num_points!r}.")
        self.point_dim = int(point_dim)
        self.num_points = None if num_points is None else int(num_points)
        self.normalize = normalize
        # No state to create. (An unbuilt sub-layer would make Keras run the
        # task's `predict_on_batch` eagerly, rebuilding it at every call.)
        self.built = True

    @staticmethod
    def is_raw(inputs):
        """True for one ``(n, d)`` array or a list/tuple of them (not a batch dict)."""
        if isinstance(inputs, (list, tuple)):
            return len(inputs) > 0 and all(np.ndim(c) == 2 for c in inputs)
        return isinstance(inputs, np.ndarray) and inputs.ndim == 2

    def pack(self, clouds):
        """Subsamples / pads raw clouds into ``{"points", "mask"}`` NumPy arrays.

        Args:
            clouds: one ``(n, point_dim)`` array or a list of them.

        Returns:
            ``{"points": float32 (batch, N, point_dim), "mask": bool (batch, N)}``.

        Raises:
            ValueError: a cloud that is not ``(n, point_dim)`` numbers, is
                empty, or has NaN / infinite coordinates (named by index).
        """
        if isinstance(clouds, np.ndarray) and clouds.ndim == 2:
            clouds = [clouds]
        if not isinstance(clouds, (list, tuple)) or not clouds:
            raise ValueError(
                "Expected a non-empty list of (num_points, point_dim) arrays; "
                f"got {type(clouds).__name__}."
            )
        arrays = [self._check_cloud(i, c) for i, c in enumerate(clouds)]
        length = self.num_points or max(len(a) for a in arrays)
        points = np.zeros((len(arrays), length, self.point_dim), "float32")
        mask = np.zeros((len(arrays), length), bool)
        for i, a in enumerate(arrays):
            if len(a) > length:
                # Evenly spaced in the lexicographic order of the points, so the
                # subset is the same for any order of the same points.
                a = a[np.lexsort(a.T[::-1])]
                a = a[np.floor(np.arange(length) * (len(a) / length)).astype(int)]
            points[i, : len(a)] = a
            mask[i, : len(a)] = True
        return {"points": points, "mask": mask}

    def _check_cloud(self, index, cloud):
        try:
            a = np.asarray(cloud)
        except Exception as error:  # ragged nested lists and the like
            raise ValueError(f"Cloud {index} is not an array of numbers: {error}") from None
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            # Complex numbers too: casting them would silently drop a part.
            raise ValueError(f"Cloud {index} must hold numbers (real ones); got dtype {a.dtype}.")
        if a.ndim != 2 or a.shape[1] != self.point_dim:
            raise ValueError(
                f"Cloud {index} must have shape (num_points, {self.point_dim}); got {a.shape}."
            )
        if len(a) == 0:
            raise ValueError(f"Cloud {index} is empty: it has no points.")
        with np.errstate(over="ignore"):  # 1e300 becomes inf: reported just below
            a = a.astype("float32")
        if not np.all(np.isfinite(a)):
            bad = int(np.sum(~np.all(np.isfinite(a), axis=1)))
            raise ValueError(
                f"Cloud {index} has {bad} point(s) with NaN or infinite coordinates "
                "(after conversion to float32)."
            )
        return a

    def __call__(self, inputs, *args, **kwargs):
        # Any list is raw clouds: `pack` names the cloud that is not (n, d).
        if isinstance(inputs, (list, tuple)) or self.is_raw(inputs):
            inputs = self.pack(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs):
        points = ops.cast(inputs["points"], self.compute_dtype)
        mask = inputs.get("mask")
        if mask is None:
            mask = ops.ones(ops.shape(points)[:2], dtype="bool")
        weights = ops.expand_dims(ops.cast(mask, points.dtype), -1)
        return {"points": normalize_points(points, weights, self.normalize, ops),
                "mask": ops.cast(mask, "bool")}

    def compute_output_spec(self, inputs):
        points = inputs["points"]
        return {"points": keras.KerasTensor(points.shape, dtype=self.compute_dtype),
                "mask": keras.KerasTensor(points.shape[:2], dtype="bool")}

    def get_config(self):
        config = super().get_config()
        config.update({"point_dim": self.point_dim, "num_points": self.num_points,
                       "normalize": self.normalize})
        return config
