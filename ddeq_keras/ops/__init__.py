"""Set operations used by DDEQs: masked reductions, kernels, MMD, distances."""

from ddeq_keras.ops.kernels import (
    chamfer_distance,
    energy_distance,
    gaussian_kernel,
    mmd2,
    pairwise_distances,
    riesz_kernel,
    safe_norm,
)
from ddeq_keras.ops.masked import (
    count_valid,
    masked_max,
    masked_mean,
    masked_std,
    masked_sum,
    zero_padded,
)

__all__ = [
    "chamfer_distance",
    "count_valid",
    "energy_distance",
    "gaussian_kernel",
    "masked_max",
    "masked_mean",
    "masked_std",
    "masked_sum",
    "mmd2",
    "pairwise_distances",
    "riesz_kernel",
    "safe_norm",
    "zero_padded",
]
