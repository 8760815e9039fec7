"""File-format readers of `ddeq_keras.datasets` (tiny files written here).

The `write_*` helpers are also used by the builder and pipeline tests.
"""

import gzip
import struct
import zipfile

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")
trimesh = pytest.importorskip("trimesh")

from ddeq_keras.datasets import readers  # noqa: E402

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


def write_pcd(path, points, binary=False, extra_rgb=True):
    """Writes a PCD v0.7 file with x y z (and an rgb field, to be ignored)."""
    points = np.asarray(points, np.float32)
    n = len(points)
    fields = "x y z" + (" rgb" if extra_rgb else "")
    size = "4 4 4" + (" 4" if extra_rgb else "")
    types = "F F F" + (" U" if extra_rgb else "")
    count = "1 1 1" + (" 1" if extra_rgb else "")
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {fields}\nSIZE {size}\nTYPE {types}\nCOUNT {count}\n"
        f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\n"
        f"DATA {'binary' if binary else 'ascii'}\n"
    )
    rgb = np.arange(n, dtype=np.uint32) * 1000
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        if binary:
            dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + (
                [("rgb", "<u4")] if extra_rgb else []
            )
            table = np.zeros(n, dtype)
            table["x"], table["y"], table["z"] = points.T
            if extra_rgb:
                table["rgb"] = rgb
            f.write(table.tobytes())
        else:
            for i, p in enumerate(points):
                row = " ".join(repr(float(v)) for v in p) + (f" {rgb[i]}" if extra_rgb else "")
                f.write((row + "\n").encode("ascii"))
    return path


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


@pytest.mark.parametrize("binary", [False, True])
def test_read_pcd(tmp_path, rng, binary):
    points = rng.normal(size=(7, 3)).astype(np.float32)
    path = write_pcd(tmp_path / "c.pcd", points, binary=binary)
    out = readers.read_point_file(path)
    assert out.shape == (7, 3) and out.dtype == np.float32
    # ASCII goes through repr() of float32 values: exact after the cast back.
    np.testing.assert_array_equal(out, points)


def test_read_pcd_truncated_and_compressed(tmp_path, rng):
    path = write_pcd(tmp_path / "c.pcd", rng.normal(size=(7, 3)), binary=True)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-5])
    with pytest.raises(readers.PointFileError, match="truncated") as info:
        readers.read_pcd(path)
    assert info.value.reason == readers.REASON_UNREADABLE
    path.write_bytes(data.replace(b"DATA binary", b"DATA binary_compressed"))
    with pytest.raises(readers.PointFileError, match="binary_compressed"):
        readers.read_pcd(path)
    ascii_path = write_pcd(tmp_path / "a.pcd", rng.normal(size=(7, 3)))
    lines = open(ascii_path).read().splitlines()
    open(ascii_path, "w").write("\n".join(lines[:-2]) + "\n")
    with pytest.raises(readers.PointFileError, match="7 points"):
        readers.read_pcd(ascii_path)


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


# ---------------------------------------------------------------------------
# archives
# ---------------------------------------------------------------------------


def test_safe_extract_zip(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("data/a/x.txt", "1 2 3\n")
    dest = readers.safe_extract_zip(good, tmp_path / "out")
    assert (dest / "data" / "a" / "x.txt").read_text() == "1 2 3\n"


@pytest.mark.parametrize("entry", ["../evil.txt", "ok/../../evil.txt", "/tmp/evil.txt"])
def test_zip_slip_is_refused(tmp_path, entry):
    archive = tmp_path / "slip.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", "fine")
        zf.writestr(entry, "evil")
    dest = tmp_path / "sub" / "out"
    with pytest.raises(readers.UnsafeArchiveError, match="slip.zip"):
        readers.safe_extract_zip(archive, dest)
    # Nothing was written, not even the harmless entry.
    assert not dest.exists()
    assert not (tmp_path / "sub" / "evil.txt").exists()


def test_corrupt_zip(tmp_path):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="bad.zip"):
        readers.safe_extract_zip(archive, tmp_path / "out")
