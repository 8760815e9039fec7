"""Preprocessing: the normalisation and packing a model was trained with."""

from ddeq_keras.preprocessing.normalization import NORMALIZATIONS, normalize_points
from ddeq_keras.preprocessing.point_cloud_preprocessor import PointCloudPreprocessor

__all__ = ["NORMALIZATIONS", "PointCloudPreprocessor", "normalize_points"]
