"""File-format readers of `ddeq_keras.datasets` (tiny files written here).

The `write_*` helpers are also used by the builder and pipeline tests.
"""

import gzip
import os
import struct

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")
trimesh = pytest.importorskip("trimesh")
pypcd4 = pytest.importorskip("pypcd4")

from ddeq_keras.datasets import readers  # noqa: E402
from ddeq_keras.datasets.readers import errors, validate  # noqa: E402

# ---------------------------------------------------------------------------
# writers
# ---------------------------------------------------------------------------


def write_idx(path, array, compress=False):
    """Writes an IDX file (uint8 data), gzip-compressed if asked."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    if compress:
        data = gzip.compress(data)
    with open(path, "wb") as f:
        f.write(data)
    return path


def write_pcd(path, points, encoding="ascii", extra_rgb=True):
    """Writes a PCD v0.7 file with pypcd4: x y (z), and an rgb field to be ignored.

    Args:
        encoding: "ascii", "binary" or "binary_compressed".
    """
    points = np.asarray(points, np.float32)
    names = ("x", "y", "z")[: points.shape[1]]
    columns = [points[:, j] for j in range(points.shape[1])]
    types = [np.float32] * len(columns)
    if extra_rgb:
        names += ("rgb",)
        columns.append(np.arange(len(points), dtype=np.uint32) * 1000)
        types.append(np.uint32)
    cloud = pypcd4.PointCloud.from_points(columns, names, types)
    cloud.save(str(path), encoding=pypcd4.Encoding(encoding))
    return path


def dyadic_points(rng, n, d=3):
    """Points k/8: exact in float32 and in the 10 decimals of pypcd4's ASCII."""
    return (rng.integers(-64, 64, size=(n, d)) / 8).astype(np.float32)


def write_ply(path, points, binary=False):
    data = trimesh.PointCloud(np.asarray(points, np.float64)).export(
        file_type="ply", encoding="binary" if binary else "ascii"
    )
    with open(path, "wb") as f:
        f.write(data)
    return path


def square_mesh():
    """The unit square in the z=0 plane, two triangles."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float64)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    return trimesh.Trimesh(vertices, faces, process=False)


def write_off(path, mesh=None, glued_header=False):
    """Writes an OFF mesh; `glued_header` mimics ModelNet40's "OFF8 12 0" lines."""
    mesh = mesh if mesh is not None else square_mesh()
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    counts = f"{len(v)} {len(f)} 0"
    lines = [f"OFF{counts}"] if glued_header else ["OFF", counts]
    lines += [" ".join(f"{c:.6f}" for c in row) for row in v]
    lines += ["3 " + " ".join(str(i) for i in row) for row in f]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def write_mesh(path, mesh=None):
    """Writes a mesh with trimesh, the format taken from the extension."""
    mesh = mesh if mesh is not None else square_mesh()
    mesh.export(str(path))
    return path


# ---------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "x-idx3-ubyte", array, compress)
    out = readers.read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_read_idx_rejects_truncated_and_corrupt_files(tmp_path):
    path = write_idx(tmp_path / "t-idx3-ubyte", np.ones((4, 5, 5)))
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-7])
    with pytest.raises(ValueError, match="t-idx3-ubyte.*truncated"):
        readers.read_idx(path)
    gz = tmp_path / "g-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(data)[:-20])
    with pytest.raises(ValueError, match="g-idx3-ubyte.gz"):
        readers.read_idx(gz)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01" + b"\0" * 8)
    with pytest.raises(ValueError, match="magic"):
        readers.read_idx(bad)


# ---------------------------------------------------------------------------
# PCD, PLY, meshes, text, NumPy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["ascii", "binary", "binary_compressed"])
def test_read_pcd_encodings(tmp_path, rng, encoding):
    points = dyadic_points(rng, 40)
    path = write_pcd(tmp_path / "c.pcd", points, encoding)
    # pypcd4 falls back to plain binary when LZF cannot shrink the data.
    assert f"DATA {encoding}\n".encode() in path.read_bytes()
    out = readers.read_point_file(path)
    assert out.shape == (40, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, points)  # exact: dyadic values


def test_read_pcd_pcl_style_2d(tmp_path):
    # As PCL writes it: a comment first, a padding field "_", no z (2-D).
    path = tmp_path / "p.pcd"
    path.write_text(
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x _ y\n"
        "SIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 3\nHEIGHT 1\n"
        "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\nDATA ascii\n"
        "0.5 9 1.5\n-2 9 3\nnan 9 4\n"
    )
    out = readers.read_pcd(path)
    np.testing.assert_array_equal(out, [[0.5, 1.5], [-2, 3], [np.nan, 4]])


def test_read_pcd_damaged_files(tmp_path, rng):
    points = dyadic_points(rng, 7)
    path = write_pcd(tmp_path / "c.pcd", points, "binary")  # 16 bytes per point
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # a partial last point
    with pytest.raises(readers.PointFileError, match=r"7 points of 16 bytes \(truncated\)") as info:
        readers.read_pcd(path)
    assert info.value.reason == readers.REASON_UNREADABLE and info.value.path == str(path)
    path.write_bytes(data[:-16])  # a whole point missing
    with pytest.raises(readers.PointFileError, match=r"6 of the 7 points .*\(truncated\)"):
        readers.read_pcd(path)
    packed = write_pcd(tmp_path / "z.pcd", dyadic_points(rng, 40), "binary_compressed")
    packed.write_bytes(packed.read_bytes()[:-10])
    with pytest.raises(readers.PointFileError, match="z.pcd.*bad PCD file") as info:
        readers.read_pcd(packed)
    assert info.value.reason == readers.REASON_UNREADABLE
    nameless = tmp_path / "n.pcd"
    cloud = pypcd4.PointCloud.from_points(points[:, :2], ("a", "b"), (np.float32, np.float32))
    cloud.save(str(nameless), encoding=pypcd4.Encoding.ASCII)
    with pytest.raises(readers.PointFileError, match=r"fields \['a', 'b'\] have no x") as info:
        readers.read_pcd(nameless)
    assert info.value.reason == readers.REASON_COLUMNS


@pytest.mark.parametrize(
    "name", ["e.npy", "e.npz", "e.txt", "e.csv", "e.xyz", "e.pts", "e.pcd", "e.ply", "e.off"]
)
def test_zero_byte_file_is_reported_as_empty(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(readers.PointFileError) as info:
        readers.read_point_file(path)
    assert info.value.reason == errors.REASON_EMPTY_FILE
    assert str(info.value) == f"{path}: empty file (0 bytes)"


def test_check_file_refuses_links_outside_the_folder(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    outside = tmp_path / "secret.txt"
    outside.write_text("1 2 3\n")
    inside = root / "a" / "real.txt"
    inside.write_text("4 5 6\n")
    (root / "a" / "in.txt").symlink_to(inside)
    (root / "a" / "out.txt").symlink_to(outside)
    (root / "a" / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    validate.check_file(root / "a" / "in.txt", root)  # a link within the folder is fine
    with pytest.raises(readers.PointFileError, match="out.txt.*outside") as info:
        validate.check_file(root / "a" / "out.txt", root)
    assert info.value.reason == errors.REASON_OUTSIDE
    validate.check_file(root / "a" / "out.txt", root, allow_outside=True)
    with pytest.raises(readers.PointFileError, match="dangling.txt") as info:
        validate.check_file(root / "a" / "dangling.txt", root, allow_outside=True)
    assert info.value.reason == readers.REASON_UNREADABLE


@pytest.mark.parametrize("binary", [False, True])
def test_read_ply_point_cloud(tmp_path, rng, binary):
    points = rng.normal(size=(9, 3)).astype(np.float32)
    path = write_ply(tmp_path / "c.ply", points, binary)
    out = readers.read_point_file(path)
    # ASCII PLY keeps 8 significant digits.
    np.testing.assert_allclose(out, points, rtol=1e-6, atol=1e-7)


def test_truncated_binary_ply_is_rejected(tmp_path, rng):
    path = write_ply(tmp_path / "c.ply", rng.normal(size=(9, 3)), binary=True)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-10])
    with pytest.raises(readers.PointFileError, match="c.ply"):
        readers.read_point_file(path)


@pytest.mark.parametrize("ext", [".off", ".obj", ".stl", ".ply"])
def test_mesh_surface_sampling(tmp_path, ext):
    path = tmp_path / f"m{ext}"
    write_off(path) if ext == ".off" else write_mesh(path)
    out = readers.read_point_file(path, num_samples=50, seed=3)
    assert out.shape == (50, 3)
    # Samples lie on the unit square z = 0 (float32 tolerance).
    np.testing.assert_allclose(out[:, 2], 0.0, atol=1e-6)
    assert out[:, :2].min() >= -1e-6 and out[:, :2].max() <= 1 + 1e-6
    again = readers.read_point_file(path, num_samples=50, seed=3)
    np.testing.assert_array_equal(out, again)
    other = readers.read_point_file(path, num_samples=50, seed=4)
    assert not np.array_equal(out, other)


def test_off_with_glued_header_reads_vertices(tmp_path):
    # ModelNet40's OFF files sometimes write "OFF<nv> <nf> 0" on one line.
    path = write_off(tmp_path / "g.off", glued_header=True)
    out = readers.read_point_file(path, mesh_mode="vertices")
    np.testing.assert_array_equal(out, square_mesh().vertices.astype(np.float32))


def test_voxel_modes(tmp_path, rng):
    sphere = trimesh.creation.icosphere(subdivisions=4)  # 2,562 vertices
    path = write_off(tmp_path / "s.off", sphere)
    out = readers.read_point_file(path, mesh_mode="vertices_voxel", seed=0)
    assert 500 <= len(out) <= 800
    # Voxel centroids of points on the unit sphere stay near it (tolerance
    # of a voxel: the grid is coarser than 0.2 at 500-800 voxels).
    radii = np.linalg.norm(out, axis=1)
    assert radii.max() <= 1.0 + 1e-5 and radii.min() > 0.8
    box = trimesh.creation.box()  # 8 vertices: topped up to 500 points
    path = write_off(tmp_path / "b.off", box)
    out = readers.read_point_file(path, mesh_mode="vertices_voxel", seed=0)
    assert len(out) == 500
    assert np.abs(out).max() <= 0.5 + 1e-6
    cloud = rng.uniform(size=(5000, 3))
    down = readers.voxel_downsample_to_range(cloud, 500, 800)
    assert 500 <= len(down) <= 800


def test_text_formats(tmp_path, rng):
    points = np.round(rng.normal(size=(6, 3)), 4).astype(np.float32)
    csv = tmp_path / "a.csv"
    csv.write_text("x,y,z\n" + "\n".join(",".join(str(v) for v in p) for p in points) + "\n")
    xyz = tmp_path / "a.xyz"
    xyz.write_text("# scan\n" + "\n".join(" ".join(str(v) for v in p) for p in points) + "\n")
    for path in (csv, xyz):
        np.testing.assert_array_equal(readers.read_point_file(path), points)
    normals = tmp_path / "n.txt"
    normals.write_text("\n".join(",".join(str(v) for v in np.r_[p, p]) for p in points))
    wide = readers.read_point_file(normals)
    assert wide.shape == (6, 6)
    with pytest.raises(readers.PointFileError, match="6 columns, expected 3"):
        readers.validate_points(wide, normals, num_dims=3)
    kept = readers.validate_points(wide, normals, num_dims=3, drop_extra_columns=True)
    np.testing.assert_array_equal(kept, points)
    ragged = tmp_path / "r.txt"
    ragged.write_text("1 2 3\n4 5\n")
    with pytest.raises(readers.PointFileError) as info:
        readers.read_point_file(ragged)
    assert info.value.reason == readers.REASON_COLUMNS


def test_text_with_a_point_count_line(tmp_path, rng):
    points = np.round(rng.normal(size=(4, 3)), 4).astype(np.float32)
    body = "\n".join(" ".join(str(v) for v in p) for p in points)
    counted = tmp_path / "counted.pts"
    counted.write_text(f"4\n{body}\n")
    np.testing.assert_array_equal(readers.read_point_file(counted), points)
    wrong = tmp_path / "wrong.pts"
    wrong.write_text(f"# scanner\n5\n{body}\n")
    with pytest.raises(readers.PointFileError,
                       match="line 2 declares 5 points, the file holds 4") as info:
        readers.read_point_file(wrong)
    assert info.value.reason == readers.REASON_COLUMNS
    # A one-column cloud is data, not a count line.
    column = tmp_path / "column.txt"
    column.write_text("3\n1\n2\n")
    np.testing.assert_array_equal(readers.read_point_file(column), [[3], [1], [2]])


def test_numpy_formats(tmp_path, rng):
    points = rng.normal(size=(5, 2)).astype(np.float32)
    np.save(tmp_path / "a.npy", points)
    np.savez(tmp_path / "b.npz", points=points, labels=np.zeros(5))
    np.savez(tmp_path / "c.npz", points)
    for name in ("a.npy", "b.npz", "c.npz"):
        np.testing.assert_array_equal(readers.read_point_file(tmp_path / name), points)
    np.savez(tmp_path / "d.npz", first=points, second=points)
    with pytest.raises(readers.PointFileError, match="d.npz"):
        readers.read_point_file(tmp_path / "d.npz")
    (tmp_path / "e.npy").write_bytes(b"not numpy")
    with pytest.raises(readers.PointFileError, match="e.npy"):
        readers.read_point_file(tmp_path / "e.npy")


@pytest.mark.parametrize("name, text, problem", [
    ("words.xyz", "left right up\nfront back down\n", r"no points \(no numeric rows\)"),
    ("mid.xyz", "# scan\n1 2 3\nfoo bar baz\n", r"line 3: 'foo' is not a number"),
    ("cell.csv", "x,y,z\n1,2,3\n4,abc,6\n", r"line 3: 'abc' is not a number"),
    ("last.pts", "1 2 3\n4 5 6\n7 8 six\n", r"line 3: 'six' is not a number"),
])
def test_text_with_non_numeric_values_is_refused(tmp_path, name, text, problem):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(readers.PointFileError, match=problem) as info:
        readers.read_point_file(path)
    assert str(info.value).startswith(f"{path}: ")
    expected = readers.REASON_EMPTY if name == "words.xyz" else readers.REASON_UNREADABLE
    assert info.value.reason == expected


class _Payload:
    """Unpickling it creates the folder `marker`: proof that the pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("name", ["p.npy", "p.npz"])
def test_pickled_numpy_is_refused_unexecuted(tmp_path, name):
    def write(path, marker):
        array = np.array([_Payload(marker), 1.0], dtype=object)
        if path.suffix == ".npy":
            np.save(path, array, allow_pickle=True)
        else:
            np.savez(path, points=array)  # savez pickles object arrays
        return path

    # The payload is live: NumPy with allow_pickle=True runs it.
    control = write(tmp_path / f"control{os.path.splitext(name)[1]}", tmp_path / "ran")
    loaded = np.load(control, allow_pickle=True)
    _ = loaded if name.endswith(".npy") else loaded["points"]
    assert (tmp_path / "ran").is_dir()

    marker = tmp_path / "pwned"
    path = write(tmp_path / name, marker)
    with pytest.raises(readers.PointFileError, match=r"unreadable or corrupt.*allow_pickle") as info:
        readers.read_point_file(path)
    assert str(info.value).startswith(f"{path}: ")
    assert not marker.exists()


def test_validate_points_non_finite():
    points = np.array([[0, 0], [np.nan, 1], [2, np.inf], [3, 3]], np.float32)
    with pytest.raises(readers.PointFileError, match="2 of 4 rows") as info:
        readers.validate_points(points, "p.npy", num_dims=2)
    assert info.value.reason == readers.REASON_NON_FINITE
    kept = readers.validate_points(points, "p.npy", num_dims=2, nan_policy="drop")
    np.testing.assert_array_equal(kept, [[0, 0], [3, 3]])
    with pytest.raises(readers.PointFileError):
        readers.validate_points(points[1:3], "p.npy", num_dims=2, nan_policy="drop")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("hello")
    with pytest.raises(readers.PointFileError) as info:
        readers.read_point_file(path)
    assert info.value.reason == readers.REASON_FORMAT
