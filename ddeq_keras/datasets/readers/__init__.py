"""Readers for the file formats point-cloud data comes in.

Every reader returns a float32 NumPy array of shape `(n, d)` or raises
`PointFileError`, a `ValueError` that names the file and says why it was
rejected, so that builders can either stop with a clear message or count the
file as skipped. Established readers are used: NumPy for `.npy`, `.npz` and
delimited text, `pypcd4` for PCD (ascii, binary and binary_compressed),
`trimesh` for PLY / OFF / OBJ / STL, `h5py` for HDF5 (in the ModelNet40
builder). One module per format family:

* `text`: .npy, .npz, .txt, .xyz, .csv, .pts;
* `pcd`, `ply`, `mesh` (with `voxel` downsampling), `idx` (MNIST);
* `dispatch`: `read_point_file`, by extension;
* `validate`: checks on files and clouds; `archives`: safe zip extraction;
* `errors`: `PointFileError`, `UnsafeArchiveError` and the skip reasons.

Example:

>>> from ddeq_keras.datasets.readers import read_point_file
>>> np.save("chair_0001.npy", np.random.rand(2048, 3))  # float64 on disk
>>> points = read_point_file("chair_0001.npy")
>>> points.shape, points.dtype
((2048, 3), dtype('float32'))
"""

from ddeq_keras.datasets.readers.archives import safe_extract_zip
from ddeq_keras.datasets.readers.dispatch import (
    MESH_EXTENSIONS,
    POINT_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    read_point_file,
)
from ddeq_keras.datasets.readers.errors import (
    REASON_COLUMNS,
    REASON_EMPTY,
    REASON_FORMAT,
    REASON_NON_FINITE,
    REASON_UNREADABLE,
    PointFileError,
    UnsafeArchiveError,
)
from ddeq_keras.datasets.readers.idx import read_idx
from ddeq_keras.datasets.readers.mesh import load_trimesh, read_mesh_points, sample_surface
from ddeq_keras.datasets.readers.pcd import read_pcd
from ddeq_keras.datasets.readers.ply import read_ply
from ddeq_keras.datasets.readers.text import read_numpy_points, read_text_points
from ddeq_keras.datasets.readers.validate import validate_points
from ddeq_keras.datasets.readers.voxel import voxel_downsample, voxel_downsample_to_range

__all__ = [
    "MESH_EXTENSIONS",
    "POINT_EXTENSIONS",
    "REASON_COLUMNS",
    "REASON_EMPTY",
    "REASON_FORMAT",
    "REASON_NON_FINITE",
    "REASON_UNREADABLE",
    "SUPPORTED_EXTENSIONS",
    "PointFileError",
    "UnsafeArchiveError",
    "load_trimesh",
    "read_idx",
    "read_mesh_points",
    "read_numpy_points",
    "read_pcd",
    "read_ply",
    "read_point_file",
    "read_text_points",
    "safe_extract_zip",
    "sample_surface",
    "validate_points",
    "voxel_downsample",
    "voxel_downsample_to_range",
]
