"""Model inputs: a point cloud as ``{"points", "mask"}`` or a plain tensor.

Every model (DDEQ and baselines) takes a cloud as ``{"points": (batch, n, d),
"mask": (batch, n) bool}`` (the `ddeq_keras.datasets` convention) or as a plain
``(batch, n, d)`` tensor (every point valid), and checks it with
`ddeq_keras.validation` before any work is done.
"""

from keras import ops

from ddeq_keras import validation

INPUT_KEYS = ("points", "mask")


def split_cloud(inputs, name="inputs"):
    """Returns ``(points, mask)`` from a cloud dict or a plain tensor.

    Args:
        inputs: ``{"points": ..., "mask": ...}`` (``"mask"`` optional) or a
            ``(batch, n, d)`` tensor.
        name: how the input is named in error messages.

    Returns:
        ``(points, mask)``; ``mask`` is None when every point is valid.
    """
    if isinstance(inputs, dict):
        if "points" not in inputs:
            raise ValueError(
                f"`{name}` must have a 'points' entry; got keys {sorted(inputs)}."
            )
        extra = sorted(set(inputs) - set(INPUT_KEYS))
        if extra:
            raise ValueError(
                f"`{name}` has unexpected keys {extra}; expected {list(INPUT_KEYS)}."
            )
        return inputs["points"], inputs.get("mask")
    if isinstance(inputs, (list, tuple)):
        raise ValueError(
            f"`{name}` must be a dict {{'points', 'mask'}} or a (batch, n, d) "
            f"tensor; got a {type(inputs).__name__}."
        )
    return inputs, None


def points_shape(inputs_shape, point_dim, name="inputs"):
    """The points' shape from a build shape (a dict of shapes or one shape).

    Raises:
        ValueError: the points are not ``(batch, n, point_dim)`` with ``n > 0``.
    """
    if isinstance(inputs_shape, dict):
        if "points" not in inputs_shape:
            raise ValueError(
                f"`{name}` must have a 'points' entry; got keys {sorted(inputs_shape)}."
            )
        shape = inputs_shape["points"]
        label = f"{name}['points']"
    else:
        shape = inputs_shape
        label = name
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(
            f"`{label}` must have rank 3 (batch, num_points, dim); got shape {shape}."
        )
    if shape[-1] is not None and shape[-1] != point_dim:
        raise ValueError(
            f"`{label}` must have {point_dim} coordinates per point (the model's "
            f"`point_dim`); got shape {shape}."
        )
    if shape[1] == 0:
        raise ValueError(f"`{label}` is empty: it has no points (shape {shape}).")
    return shape


def prepare_cloud(inputs, point_dim, name="inputs", check_values=True):
    """Splits and checks a cloud; returns ``(points, mask or None)``.

    Shape problems always raise ``ValueError``; with ``check_values``, NaN /
    infinite coordinates and samples whose mask has no valid point raise it on
    eager calls (traced tensors have no values to inspect). Values are checked
    once per model call, at the model's boundary (see `ddeq_keras.validation`).
    """
    points, mask = split_cloud(inputs, name)
    if isinstance(inputs, dict):
        points_name, mask_name = f"{name}['points']", f"{name}['mask']"
    else:
        points_name, mask_name = name, f"{name} mask"
    points = ops.convert_to_tensor(points)
    validation.check_points(points_name, points, point_dim, check_values=check_values)
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
        validation.check_mask(mask_name, mask, points_name, points, check_values=check_values)
        mask = ops.cast(mask, "bool")
    return points, mask
