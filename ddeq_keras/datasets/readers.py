"""Readers for the file formats point-cloud data comes in.

Every reader returns a float32 NumPy array of shape `(n, d)` or raises
`PointFileError`, a `ValueError` that names the file and says why it was
rejected, so that builders can either stop with a clear message or count the
file as skipped. Established readers are used where one exists: `trimesh` for
PLY / OFF / OBJ / STL, `h5py` for HDF5 (in the ModelNet40 builder), NumPy for
`.npy`, `.npz` and delimited text. PCD (the Point Cloud Library format) has no
reader in those libraries, so a small parser for its uncompressed ASCII and
binary encodings lives here.

Example:

>>> points = read_point_file("chair/train/chair_0001.ply")  # doctest: +SKIP
>>> points.shape, points.dtype  # doctest: +SKIP
((2048, 3), dtype('float32'))
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

POINT_EXTENSIONS = (".npy", ".npz", ".txt", ".xyz", ".csv", ".pts", ".ply", ".pcd")
MESH_EXTENSIONS = (".off", ".obj", ".stl")
SUPPORTED_EXTENSIONS = POINT_EXTENSIONS + MESH_EXTENSIONS

# Skip reasons, shared by the builders so that their summaries read the same.
REASON_UNREADABLE = "unreadable or corrupt"
REASON_NON_FINITE = "NaN or inf coordinates"
REASON_COLUMNS = "wrong number of columns"
REASON_EMPTY = "no points"
REASON_FORMAT = "unsupported file format"


class PointFileError(ValueError):
    """A file that cannot be turned into a valid point cloud.

    Attributes:
        path: the offending file.
        reason: one of the `REASON_*` constants, used to count skips.
    """

    def __init__(self, path, reason, detail=""):
        self.path = str(path)
        self.reason = reason
        message = f"{self.path}: {reason}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class UnsafeArchiveError(ValueError):
    """An archive entry that would be written outside the extraction folder."""


# ---------------------------------------------------------------------------
# IDX (MNIST)
# ---------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_maybe_gzip(path) -> bytes:
    """Returns the bytes of `path`, gunzipped when it starts with the gzip magic.

    The magic number, not the file name, decides: people rename files.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({e})") from e
    return raw


def read_idx(path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzip-compressed or not.

    Args:
        path: path to e.g. `train-images-idx3-ubyte` or `...-ubyte.gz`.

    Returns:
        The array with the shape and dtype the header declares, e.g.
        `(60000, 28, 28)` uint8 for MNIST training images.

    Raises:
        ValueError: naming the file, when the header is invalid or the data is
            shorter or longer than the header declares.

    Example:

    >>> images = read_idx("mnist/train-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.shape  # doctest: +SKIP
    (60000, 28, 28)
    """
    data = _read_maybe_gzip(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type code 0x{code:02x}")
    header_len = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_len:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX file {what}: header declares shape {shape} "
            f"({expected} bytes of data) but the file holds {actual} bytes"
        )
    return np.frombuffer(data, dtype, offset=header_len).reshape(shape).astype(
        dtype.newbyteorder("=")
    )


# ---------------------------------------------------------------------------
# PCD (Point Cloud Library)
# ---------------------------------------------------------------------------

_PCD_TYPES = {
    ("F", 4): "f4",
    ("F", 8): "f8",
    ("I", 1): "i1",
    ("I", 2): "i2",
    ("I", 4): "i4",
    ("I", 8): "i8",
    ("U", 1): "u1",
    ("U", 2): "u2",
    ("U", 4): "u4",
    ("U", 8): "u8",
}


def read_pcd(path) -> np.ndarray:
    """Reads the x, y (and z) fields of a PCD file, ASCII or binary.

    Follows the PCD v0.7 header (FIELDS, SIZE, TYPE, COUNT, WIDTH, HEIGHT,
    POINTS, DATA). `binary_compressed` (LZF) is not supported and raises a
    clear error. Binary data is read as little-endian, which is what PCL
    writes on every platform it supports.

    Args:
        path: the `.pcd` file.

    Returns:
        float32 array `(n, 3)`, or `(n, 2)` for a file without a `z` field.
        Non-finite values (PCL marks missing returns with NaN) are kept; the
        caller decides whether that rejects the cloud.

    Raises:
        PointFileError: for a malformed header, a truncated body, an
            unsupported encoding or a missing x / y field.
    """
    with open(path, "rb") as f:
        raw = f.read()
    header = {}
    offset = 0
    while True:
        end = raw.find(b"\n", offset)
        if end < 0:
            raise PointFileError(path, REASON_UNREADABLE, "PCD header has no DATA line")
        line = raw[offset:end].decode("ascii", errors="replace").strip()
        offset = end + 1
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        header[key.upper()] = value.split()
        if key.upper() == "DATA":
            break

    try:
        fields = header["FIELDS"]
        sizes = [int(s) for s in header["SIZE"]]
        types = [t.upper() for t in header["TYPE"]]
        counts = [int(c) for c in header.get("COUNT", ["1"] * len(fields))]
        if "POINTS" in header:
            num_points = int(header["POINTS"][0])
        else:
            num_points = int(header["WIDTH"][0]) * int(header["HEIGHT"][0])
        encoding = header["DATA"][0].lower()
    except (KeyError, IndexError, ValueError) as e:
        raise PointFileError(path, REASON_UNREADABLE, f"malformed PCD header: {e}") from e
    if not len(fields) == len(sizes) == len(types) == len(counts):
        raise PointFileError(
            path, REASON_UNREADABLE, "PCD header FIELDS/SIZE/TYPE/COUNT lengths differ"
        )
    if "x" not in fields or "y" not in fields:
        raise PointFileError(path, REASON_COLUMNS, f"PCD fields {fields} have no x and y")
    wanted = [name for name in ("x", "y", "z") if name in fields]

    if encoding == "ascii":
        # One row per point; columns are the fields expanded by their COUNT.
        columns = {}
        col = 0
        for name, count in zip(fields, counts):
            columns[name] = col
            col += count
        text = raw[offset:].decode("ascii", errors="replace")
        try:
            table = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise PointFileError(path, REASON_UNREADABLE, f"bad PCD ASCII body: {e}") from e
        if num_points == 0:
            return np.zeros((0, len(wanted)), np.float32)
        if table.shape[0] != num_points or table.shape[1] != col:
            raise PointFileError(
                path,
                REASON_UNREADABLE,
                f"PCD ASCII body is {table.shape[0]}x{table.shape[1]}, header "
                f"declares {num_points} points of {col} values (truncated?)",
            )
        return table[:, [columns[n] for n in wanted]].astype(np.float32)

    if encoding == "binary":
        try:
            dtype = np.dtype(
                [
                    (name if name != "_" else f"_pad{i}", "<" + _PCD_TYPES[(t, s)], (c,))
                    for i, (name, t, s, c) in enumerate(zip(fields, types, sizes, counts))
                ]
            )
        except (KeyError, TypeError, ValueError) as e:
            raise PointFileError(path, REASON_UNREADABLE, f"bad PCD field types: {e}") from e
        needed = num_points * dtype.itemsize
        if len(raw) - offset < needed:
            raise PointFileError(
                path,
                REASON_UNREADABLE,
                f"PCD binary body is {len(raw) - offset} bytes, header declares "
                f"{num_points} points of {dtype.itemsize} bytes (truncated)",
            )
        table = np.frombuffer(raw, dtype, count=num_points, offset=offset)
        return np.stack([table[n][:, 0] for n in wanted], axis=1).astype(np.float32)

    raise PointFileError(
        path,
        REASON_FORMAT,
        f"PCD DATA encoding {encoding!r} is not supported (ascii and binary are); "
        "re-save the file uncompressed",
    )


# ---------------------------------------------------------------------------
# Text, NumPy
# ---------------------------------------------------------------------------


def _is_number_row(tokens) -> bool:
    try:
        [float(t) for t in tokens]
    except ValueError:
        return False
    return bool(tokens)


def read_text_points(path) -> np.ndarray:
    """Reads a delimited text cloud (.txt, .xyz, .csv, .pts), header or not.

    The delimiter is a comma, a semicolon or white space, whichever the first
    data row uses. Leading lines that are not all numbers are taken as a header
    and skipped; `#` starts a comment.

    Raises:
        PointFileError: when rows have different numbers of values or contain
            something that is not a number.
    """
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    delimiter = None
    start = None
    for i, line in enumerate(lines):
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        for delim in (",", ";", None):
            if delim is not None and delim not in stripped:
                continue
            tokens = [t for t in stripped.split(delim) if t.strip()] if delim else stripped.split()
            if _is_number_row([t.strip() for t in tokens]):
                delimiter, start = delim, i
                break
        if start is not None:
            break
    if start is None:
        raise PointFileError(path, REASON_EMPTY, "no numeric rows")
    try:
        table = np.loadtxt(
            lines[start:], delimiter=delimiter, comments="#", dtype=np.float64, ndmin=2
        )
    except ValueError as e:
        raise PointFileError(path, REASON_COLUMNS, f"inconsistent rows: {e}") from e
    return table.astype(np.float32)


_NPZ_KEYS = ("points", "xyz", "pos", "data", "arr_0")


def read_numpy_points(path) -> np.ndarray:
    """Reads a `.npy` array, or the point array of a `.npz` archive.

    In a `.npz`, the array is the one named `points`, `xyz`, `pos`, `data` or
    `arr_0`, or the only array. Pickled objects are refused.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise PointFileError(path, REASON_UNREADABLE, str(e)) from e
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            key = next((k for k in _NPZ_KEYS if k in keys), None)
            if key is None and len(keys) == 1:
                key = keys[0]
            if key is None:
                raise PointFileError(
                    path,
                    REASON_UNREADABLE,
                    f"npz holds {keys}; expected one array or one named {list(_NPZ_KEYS)}",
                )
            try:
                array = loaded[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise PointFileError(path, REASON_UNREADABLE, str(e)) from e
    else:
        array = loaded
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise PointFileError(
            path, REASON_COLUMNS, f"expected a 2-D numeric array, got {array.shape} {array.dtype}"
        )
    return array.astype(np.float32)


# ---------------------------------------------------------------------------
# Meshes and PLY (trimesh)
# ---------------------------------------------------------------------------


def load_trimesh(path):
    """Loads a PLY / OFF / OBJ / STL file with trimesh, without processing.

    `process=False` keeps vertices exactly as stored (no merging), which is
    what the vertex-based ModelNet40 variant needs.

    Returns:
        A `trimesh.Trimesh` or `trimesh.PointCloud`.
    """
    import trimesh

    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as e:  # trimesh raises many types for bad input
        raise PointFileError(path, REASON_UNREADABLE, f"{type(e).__name__}: {e}") from e
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


def _has_faces(geometry) -> bool:
    faces = getattr(geometry, "faces", None)
    return faces is not None and len(faces) > 0


def sample_surface(mesh, count, seed, path="<mesh>") -> np.ndarray:
    """Samples `count` points uniformly (area-weighted) on a mesh surface."""
    import trimesh

    if float(mesh.area) <= 0.0 or not np.isfinite(mesh.area):
        raise PointFileError(path, REASON_EMPTY, "mesh has no surface area to sample")
    points, _ = trimesh.sample.sample_surface(mesh, int(count), seed=seed)
    return np.asarray(points, np.float32)


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
    """
    geometry = load_trimesh(path)
    vertices = np.asarray(geometry.vertices, np.float32)
    if len(vertices) == 0:
        raise PointFileError(path, REASON_EMPTY, "no vertices")
    if not np.isfinite(vertices).all():
        raise PointFileError(path, REASON_NON_FINITE)
    if not _has_faces(geometry) or mode == "vertices":
        return vertices
    if mode == "surface":
        return sample_surface(geometry, num_samples, seed, path)
    if mode == "vertices_voxel":
        down = voxel_downsample_to_range(vertices, min_points, max_points, seed)
        if len(down) < min_points and float(geometry.area) > 0.0:
            extra = sample_surface(geometry, min_points - len(down), seed, path)
            down = np.concatenate([down, extra])
        return down.astype(np.float32)
    raise ValueError(f"unknown mesh mode {mode!r}")


def read_ply(path, *, mesh_mode="surface", **mesh_kwargs) -> np.ndarray:
    """Reads a PLY file (ASCII or binary): its vertices, or mesh samples.

    A PLY with faces is a mesh and is sampled like OFF/OBJ/STL according to
    `mesh_mode`; a PLY without faces is a point cloud and its vertex x, y, z
    are returned (colours and normals are ignored).
    """
    geometry = load_trimesh(path)
    if _has_faces(geometry) and mesh_mode != "vertices":
        return read_mesh_points(path, mode=mesh_mode, **mesh_kwargs)
    vertices = np.asarray(geometry.vertices, np.float32)
    return vertices


def read_point_file(path, *, mesh_mode="surface", num_samples=2048, min_points=500,
                    max_points=800, seed=0) -> np.ndarray:
    """Reads any supported point-cloud or mesh file into an `(n, d)` array.

    Dispatches on the extension: `.npy`, `.npz`, `.txt` / `.xyz` / `.csv` /
    `.pts`, `.ply`, `.pcd`, and the meshes `.off`, `.obj`, `.stl` (sampled, see
    `read_mesh_points`). Columns are returned as stored; check them with
    `validate_points`.

    Raises:
        PointFileError: the file is unsupported, unreadable or empty.

    Example:

    >>> cloud = read_point_file("mug/test/mug_0001.off", num_samples=1024)  # doctest: +SKIP
    >>> cloud.shape  # doctest: +SKIP
    (1024, 3)
    """
    ext = Path(path).suffix.lower()
    mesh_kwargs = dict(num_samples=num_samples, min_points=min_points,
                       max_points=max_points, seed=seed)
    if ext == ".npy" or ext == ".npz":
        points = read_numpy_points(path)
    elif ext in (".txt", ".xyz", ".csv", ".pts"):
        points = read_text_points(path)
    elif ext == ".pcd":
        points = read_pcd(path)
    elif ext == ".ply":
        points = read_ply(path, mesh_mode=mesh_mode, **mesh_kwargs)
    elif ext in MESH_EXTENSIONS:
        points = read_mesh_points(path, mode=mesh_mode, **mesh_kwargs)
    else:
        raise PointFileError(path, REASON_FORMAT, f"extension {ext!r}")
    if points.shape[0] == 0:
        raise PointFileError(path, REASON_EMPTY)
    return points


def validate_points(points, path, *, num_dims, drop_extra_columns=False,
                    nan_policy="skip") -> np.ndarray:
    """Checks a cloud's columns and values; returns the cleaned float32 cloud.

    Args:
        points: `(n, c)` array from a reader.
        path: the source file, for messages.
        num_dims: the dimension `d` every cloud of the data set must have.
        drop_extra_columns: keep the first `num_dims` columns of wider files
            (e.g. x y z nx ny nz) instead of rejecting them.
        nan_policy: `"skip"` rejects a cloud with any NaN / inf coordinate;
            `"drop"` removes those rows (organised PCD scans mark missing
            returns with NaN) and rejects the cloud only if nothing is left.

    Raises:
        PointFileError: wrong number of columns, non-finite values (policy
            `"skip"`) or no points left.
    """
    points = np.asarray(points)
    if points.ndim != 2:
        raise PointFileError(path, REASON_COLUMNS, f"array of shape {points.shape}")
    columns = points.shape[1]
    if columns != num_dims:
        if columns > num_dims and drop_extra_columns:
            points = points[:, :num_dims]
        else:
            raise PointFileError(path, REASON_COLUMNS, f"{columns} columns, expected {num_dims}")
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        if nan_policy == "skip":
            raise PointFileError(
                path, REASON_NON_FINITE, f"{int((~finite).sum())} of {len(points)} rows"
            )
        if nan_policy != "drop":
            raise ValueError(f"nan_policy must be 'skip' or 'drop', got {nan_policy!r}")
        points = points[finite]
    if points.shape[0] == 0:
        raise PointFileError(path, REASON_EMPTY)
    return np.ascontiguousarray(points, np.float32)


# ---------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------


def _entry_is_unsafe(name: str, dest: Path) -> bool:
    if not name or "\x00" in name:
        return True
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        return True
    if ".." in posix.parts or ".." in windows.parts:
        return True
    target = os.path.realpath(os.path.join(dest, name))
    return os.path.commonpath([target, str(dest)]) != str(dest)


def safe_extract_zip(archive, dest) -> Path:
    """Extracts a zip archive, refusing entries that would land outside `dest`.

    Every entry is checked before anything is written ("zip-slip": absolute
    paths, drive letters, `..` components, symbolic links), so a hostile or
    damaged archive leaves nothing half-extracted. A marker file makes a
    second call with a complete extraction a no-op.

    Args:
        archive: the `.zip` file.
        dest: the folder to extract into (created if needed).

    Returns:
        `dest` as a `Path`.

    Raises:
        UnsafeArchiveError: naming the archive and the offending entry.
        ValueError: the archive is not a readable zip file.
    """
    dest = Path(os.path.realpath(dest))
    marker = dest / ".ddeq_extracted"
    if marker.exists():
        return dest
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UnsafeArchiveError(
                        f"{archive}: entry {info.filename!r} is a symbolic link; "
                        "refusing to extract"
                    )
                if _entry_is_unsafe(info.filename, dest):
                    raise UnsafeArchiveError(
                        f"{archive}: entry {info.filename!r} would extract outside {dest}; "
                        "refusing to extract this archive"
                    )
            dest.mkdir(parents=True, exist_ok=True)
            zf.extractall(dest)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{archive}: not a valid zip archive ({e})") from e
    marker.touch()
    return dest
