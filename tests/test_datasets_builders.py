"""TFDS builders of `ddeq_keras.datasets`, prepared from tiny files written here."""

import json
import logging
import zipfile

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
h5py = pytest.importorskip("h5py")
trimesh = pytest.importorskip("trimesh")

import ddeq_keras.datasets as dd  # noqa: E402
from test_datasets_readers import (  # noqa: E402
    square_mesh,
    write_idx,
    write_mesh,
    write_off,
    write_pcd,
    write_ply,
)


def prepare(name, data_dir, manual_dir, config=None):
    kwargs = {"data_dir": str(data_dir)}
    if config is not None:
        kwargs["config"] = config
    builder = tfds.builder(name, **kwargs)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    )
    return builder


def examples(builder, split):
    return list(builder.as_dataset(split=split, shuffle_files=False).as_numpy_iterator())


# ---------------------------------------------------------------------------
# mnist_point_cloud
# ---------------------------------------------------------------------------


def make_digits(count, seed):
    """Tiny 28x28 "digits": k random bright pixels (k = 1 + label), dim noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = np.zeros((count, 28, 28), np.uint8)
    for i, label in enumerate(labels):
        flat = rng.choice(28 * 28, size=label + 1, replace=False)
        images[i].flat[flat] = rng.integers(1, 256, size=label + 1)
    return images, labels.astype(np.uint8)


@pytest.fixture
def mnist_dir(tmp_path):
    root = tmp_path / "manual" / "mnist"  # one level down, like ../shared/data
    root.mkdir(parents=True)
    train = make_digits(12, 0)
    test = make_digits(5, 1)
    write_idx(root / "train-images-idx3-ubyte.gz", train[0], compress=True)
    write_idx(root / "train-labels-idx1-ubyte.gz", train[1], compress=True)
    write_idx(root / "t10k-images-idx3-ubyte", test[0])  # not compressed
    write_idx(root / "t10k-labels-idx1-ubyte", test[1])
    return root.parent, train, test


def test_mnist_point_cloud(tmp_path, mnist_dir):
    manual, train, test = mnist_dir
    builder = prepare("mnist_point_cloud", tmp_path / "tfds", manual)
    assert builder.info.splits["train"].num_examples == 12
    assert builder.info.splits["test"].num_examples == 5
    assert builder.info.features["label"].names == [str(i) for i in range(10)]
    for split, (images, labels) in (("train", train), ("test", test)):
        got = examples(builder, split)
        assert len(got) == len(images)
        # Examples are keyed by index; compare as sets of (label, points).
        expected = {}
        for image, label in zip(images, labels):
            rows, cols = np.nonzero(image > 0)
            expected[(int(label), tuple(map(tuple, np.stack([cols, rows], 1))))] = True
        for ex in got:
            assert ex["points"].dtype == np.float32 and ex["points"].shape[1] == 2
            key = (int(ex["label"]), tuple(map(tuple, ex["points"].astype(int))))
            assert key in expected


def test_mnist_cap_keeps_brightest(tmp_path, mnist_dir):
    manual, train, _ = mnist_dir
    config = dd.MnistPointCloudConfig(name="cap3", threshold=0, max_points=3)
    builder = prepare("mnist_point_cloud", tmp_path / "tfds", manual, config)
    for ex in examples(builder, "train"):
        assert len(ex["points"]) == min(3, int(ex["label"]) + 1)
    # Digit 9 (10 pixels): the 3 kept pixels are the brightest of its image.
    image = train[0][9]
    cols, rows = np.asarray(
        [ex for ex in examples(builder, "train") if ex["label"] == 9][0]["points"], int
    ).T
    kept = np.sort(image[rows, cols])
    assert np.array_equal(kept, np.sort(image[image > 0])[-3:])


def test_mnist_missing_or_empty_manual_dir(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for manual in (tmp_path / "missing", empty):
        with pytest.raises(dd.MissingDataError) as info:
            prepare("mnist_point_cloud", tmp_path / "tfds", manual)
        message = str(info.value)
        assert str(manual) in message
        assert "train-images-idx3-ubyte" in message
        assert "https://storage.googleapis.com/cvdf-datasets/mnist/" in message


def test_mnist_truncated_or_mismatched_files(tmp_path, mnist_dir):
    manual, _, _ = mnist_dir
    labels = manual / "mnist" / "t10k-labels-idx1-ubyte"
    write_idx(labels, np.zeros(4))  # 4 labels for 5 images
    with pytest.raises(ValueError, match="4 labels for 5 images"):
        prepare("mnist_point_cloud", tmp_path / "tfds1", manual)
    images = manual / "mnist" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*truncated"):
        prepare("mnist_point_cloud", tmp_path / "tfds2", manual)


# ---------------------------------------------------------------------------
# modelnet40
# ---------------------------------------------------------------------------


def write_h5(path, data, labels):
    with h5py.File(path, "w") as h5:
        h5.create_dataset("data", data=np.asarray(data, np.float32), compression="gzip")
        h5.create_dataset("label", data=np.asarray(labels, np.uint8).reshape(-1, 1))


@pytest.fixture
def modelnet_h5_dir(tmp_path, rng):
    """PointNet layout with 16 points per shape: train 3 + 2 rows, test 2."""
    folder = tmp_path / "manual" / "modelnet40_ply_hdf5_1024"
    folder.mkdir(parents=True)
    rows = {"train0": [0, 5, 39], "train1": [7, 7], "test0": [1, 2]}
    for stem, labels in rows.items():
        data = rng.normal(size=(len(labels), 16, 3))
        write_h5(folder / f"ply_data_{stem}.h5", data, labels)
        split, index = stem[:-1], stem[-1]
        names = [f"{dd.MODELNET40_CLASSES[c]}/{dd.MODELNET40_CLASSES[c]}_{i:04d}.ply"
                 for i, c in enumerate(labels)]
        (folder / f"ply_data_{split}_{index}_id2file.json").write_text(json.dumps(names))
    (folder / "train_files.txt").write_text(
        "data/modelnet40_ply_hdf5_1024/ply_data_train0.h5\n"
        "data/modelnet40_ply_hdf5_1024/ply_data_train1.h5\n"
    )
    (folder / "shape_names.txt").write_text("\n".join(dd.MODELNET40_CLASSES))
    return folder


def test_modelnet40_hdf5(tmp_path, modelnet_h5_dir):
    builder = prepare("modelnet40/hdf5", tmp_path / "tfds", modelnet_h5_dir.parent)
    assert builder.info.features["label"].names == list(dd.MODELNET40_CLASSES)
    assert builder.info.splits["train"].num_examples == 5
    assert builder.info.splits["test"].num_examples == 2
    train = examples(builder, "train")
    assert sorted(int(e["label"]) for e in train) == [0, 5, 7, 7, 39]
    assert all(e["points"].shape == (16, 3) for e in train)
    sources = {e["source"].decode() for e in train}
    assert "xbox/xbox_0002.ply" in sources
    with h5py.File(modelnet_h5_dir / "ply_data_train0.h5") as h5:
        first = h5["data"][0]
    assert any(np.array_equal(e["points"], first) for e in train)


def test_modelnet40_hdf5_nan_rows_are_counted(tmp_path, modelnet_h5_dir, rng, caplog):
    data = rng.normal(size=(3, 16, 3))
    data[1, 4, 2] = np.nan
    write_h5(modelnet_h5_dir / "ply_data_test0.h5", data, [1, 2, 3])
    (modelnet_h5_dir / "ply_data_test_0_id2file.json").unlink()
    with caplog.at_level(logging.WARNING, logger="ddeq_keras.datasets"):
        builder = prepare("modelnet40/hdf5", tmp_path / "tfds", modelnet_h5_dir.parent)
    assert builder.info.splits["test"].num_examples == 2
    assert builder.info.metadata["skipped"]["test"] == {"NaN or inf coordinates": 1}
    assert any("skipped 1" in r.getMessage() and "test0.h5[1]" in r.getMessage()
               for r in caplog.records)


def test_modelnet40_hdf5_corrupt_file(tmp_path, modelnet_h5_dir):
    (modelnet_h5_dir / "ply_data_train1.h5").write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match="ply_data_train1.h5"):
        prepare("modelnet40/hdf5", tmp_path / "tfds", modelnet_h5_dir.parent)


def test_modelnet40_hdf5_rejects_other_label_order(tmp_path, modelnet_h5_dir):
    names = list(dd.MODELNET40_CLASSES)
    names[0], names[1] = names[1], names[0]
    (modelnet_h5_dir / "shape_names.txt").write_text("\n".join(names))
    with pytest.raises(ValueError, match="shape_names.txt"):
        prepare("modelnet40/hdf5", tmp_path / "tfds", modelnet_h5_dir.parent)


def test_modelnet40_hdf5_from_zip(tmp_path, modelnet_h5_dir):
    archive_dir = tmp_path / "zipped"
    archive_dir.mkdir()
    with zipfile.ZipFile(archive_dir / "modelnet40_ply_hdf5_2048.zip", "w") as zf:
        for f in modelnet_h5_dir.iterdir():
            zf.write(f, f"modelnet40_ply_hdf5_2048/{f.name}")
    builder = prepare("modelnet40/hdf5", tmp_path / "tfds", archive_dir)
    assert builder.info.splits["train"].num_examples == 5
    # The manual_dir is left untouched (it may be read-only).
    assert [p.name for p in archive_dir.iterdir()] == ["modelnet40_ply_hdf5_2048.zip"]


def test_modelnet40_missing_data(tmp_path):
    manual = tmp_path / "manual"
    (manual / "something_else").mkdir(parents=True)
    with pytest.raises(dd.MissingDataError, match="modelnet40_ply_hdf5_2048.zip"):
        prepare("modelnet40/hdf5", tmp_path / "tfds", manual)
    with pytest.raises(dd.MissingDataError, match="ModelNet40.zip"):
        prepare("modelnet40/mesh_surface", tmp_path / "tfds", manual)


@pytest.fixture
def modelnet_mesh_dir(tmp_path):
    root = tmp_path / "manual" / "ModelNet40"
    layout = {
        ("airplane", "train"): 2,
        ("airplane", "test"): 1,
        ("chair", "train"): 1,
        ("chair", "test"): 1,
    }
    for (name, split), count in layout.items():
        (root / name / split).mkdir(parents=True)
        for i in range(count):
            mesh = trimesh.creation.icosphere(subdivisions=4) if name == "chair" else square_mesh()
            write_off(root / name / split / f"{name}_{i:04d}.off", mesh, glued_header=i == 1)
    # A damaged file: counted and skipped, not fatal.
    (root / "chair" / "train" / "chair_0099.off").write_text("OFF\n3 1 0\n0 0 0\n")
    return root


def test_modelnet40_meshes(tmp_path, modelnet_mesh_dir, caplog):
    config = dd.ModelNet40Config(name="tiny_surface", source="mesh", num_samples=32)
    with caplog.at_level(logging.WARNING, logger="ddeq_keras.datasets"):
        builder = prepare("modelnet40", tmp_path / "tfds", modelnet_mesh_dir.parent, config)
    assert builder.info.splits["train"].num_examples == 3
    assert builder.info.splits["test"].num_examples == 2
    assert builder.info.metadata["skipped"]["train"] == {"unreadable or corrupt": 1}
    assert any("chair_0099.off" in r.getMessage() for r in caplog.records)
    train = examples(builder, "train")
    assert all(e["points"].shape == (32, 3) for e in train)
    names = builder.info.features["label"].names
    assert sorted(names[e["label"]] for e in train) == ["airplane", "airplane", "chair"]

    voxel = prepare("modelnet40/mesh_vertices_voxel", tmp_path / "tfds", modelnet_mesh_dir.parent)
    for e in examples(voxel, "test"):
        assert 500 <= len(e["points"]) <= 800, e["source"]


# ---------------------------------------------------------------------------
# point_set_folder
# ---------------------------------------------------------------------------


@pytest.fixture
def folder_dir(tmp_path, rng):
    root = tmp_path / "manual"
    cloud = lambda n: rng.normal(size=(n, 3)).astype(np.float32)  # noqa: E731
    (root / "cups" / "train").mkdir(parents=True)
    (root / "cups" / "test").mkdir()
    (root / "mugs" / "train").mkdir(parents=True)
    (root / "mugs" / "test").mkdir()
    np.save(root / "cups" / "train" / "a.npy", cloud(5))
    np.savez(root / "cups" / "train" / "b.npz", points=cloud(6))
    write_pcd(root / "cups" / "train" / "c.pcd", cloud(7), "binary")
    write_pcd(root / "cups" / "test" / "d.pcd", cloud(8), "binary_compressed")
    write_ply(root / "mugs" / "train" / "e.ply", cloud(9), binary=True)
    write_ply(root / "mugs" / "train" / "f.ply", cloud(10))
    write_mesh(root / "mugs" / "train" / "g.stl")
    write_off(root / "mugs" / "test" / "h.off")
    (root / "mugs" / "test" / "i.csv").write_text(
        "x,y,z\n" + "\n".join(",".join(map(str, p)) for p in cloud(4))
    )
    write_mesh(root / "mugs" / "test" / "j.obj")
    # Bad inputs: NaN, wrong columns, truncated binary PLY, unsupported file.
    bad = cloud(5)
    bad[2, 1] = np.nan
    np.save(root / "cups" / "train" / "nan.npy", bad)
    np.save(root / "cups" / "train" / "wide.npy", rng.normal(size=(5, 4)))
    data = open(root / "mugs" / "train" / "e.ply", "rb").read()
    (root / "mugs" / "train" / "broken.ply").write_bytes(data[:-8])
    (root / "mugs" / "README.md").write_text("my mugs")
    return root


def test_point_set_folder(tmp_path, folder_dir, caplog):
    config = dd.PointSetFolderConfig(name="tiny", num_samples=20)
    with caplog.at_level(logging.WARNING, logger="ddeq_keras.datasets"):
        builder = prepare("point_set_folder", tmp_path / "tfds", folder_dir, config)
    assert builder.info.features["label"].names == ["cups", "mugs"]
    assert builder.info.splits["train"].num_examples == 6
    assert builder.info.splits["test"].num_examples == 4
    assert builder.info.metadata["skipped"]["train"] == {
        "NaN or inf coordinates": 1,
        "wrong number of columns": 1,
        "unreadable or corrupt": 1,
    }
    assert builder.info.metadata["ignored_files"] == 1
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 3" in messages and "nan.npy" in messages and "README.md" in messages
    sizes = {e["source"].decode(): (len(e["points"]), int(e["label"]))
             for e in examples(builder, "train") + examples(builder, "test")}
    assert sizes == {
        "cups/train/a.npy": (5, 0), "cups/train/b.npz": (6, 0), "cups/train/c.pcd": (7, 0),
        "cups/test/d.pcd": (8, 0), "mugs/train/e.ply": (9, 1), "mugs/train/f.ply": (10, 1),
        "mugs/train/g.stl": (20, 1), "mugs/test/h.off": (20, 1), "mugs/test/i.csv": (4, 1),
        "mugs/test/j.obj": (20, 1),
    }  # fmt: skip

    # Reloaded from disk, the class names come back with the prepared data.
    again = tfds.builder("point_set_folder", data_dir=str(tmp_path / "tfds"), config=config)
    assert again.info.features["label"].names == ["cups", "mugs"]


def test_point_set_folder_2d_without_split_folders(tmp_path, rng):
    root = tmp_path / "manual"
    for name in ("ring", "line"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            np.savetxt(root / name / f"{i}.txt", rng.normal(size=(6, 2)))
    builder = prepare("point_set_folder/2d", tmp_path / "tfds", root)
    assert list(builder.info.splits.keys()) == ["train"]
    assert builder.info.splits["train"].num_examples == 4
    assert builder.info.features["label"].names == ["line", "ring"]
    assert all(e["points"].shape == (6, 2) for e in examples(builder, "train"))


def test_point_set_folder_all_invalid(tmp_path):
    root = tmp_path / "manual" / "only"
    root.mkdir(parents=True)
    np.save(root / "x.npy", np.full((4, 3), np.nan))
    config = dd.PointSetFolderConfig(name="one_class", allow_single_class=True)
    with pytest.raises(ValueError, match="no valid examples.*NaN"):
        prepare("point_set_folder", tmp_path / "tfds", root.parent, config)


def test_point_set_folder_archives(tmp_path, rng):
    manual = tmp_path / "manual"
    manual.mkdir()
    with zipfile.ZipFile(manual / "scans.zip", "w") as zf:
        for name in ("a", "b"):
            buf = "\n".join(" ".join(map(str, p)) for p in rng.normal(size=(5, 3)))
            zf.writestr(f"scans/{name}/train/0.xyz", buf)
    builder = prepare("point_set_folder", tmp_path / "tfds", manual)
    assert builder.info.features["label"].names == ["a", "b"]
    assert builder.info.splits["train"].num_examples == 2

    evil = tmp_path / "evil"
    evil.mkdir()
    with zipfile.ZipFile(evil / "scans.zip", "w") as zf:
        zf.writestr("scans/a/0.xyz", "1 2 3\n")
        zf.writestr("../../outside.xyz", "1 2 3\n")
    with pytest.raises(dd.UnsafeArchiveError, match="outside"):
        prepare("point_set_folder", tmp_path / "tfds_evil", evil)
    assert not (tmp_path / "outside.xyz").exists()


def test_prepare_data_cli(tmp_path, rng):
    import importlib.util
    import pathlib

    script = pathlib.Path(__file__).parents[1] / "training" / "prepare_data.py"
    if not script.exists():
        pytest.skip("training/prepare_data.py not present")
    spec = importlib.util.spec_from_file_location("prepare_data", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path / "manual"
    for name, n in (("a", 3), ("b", 5)):
        (root / name / "test").mkdir(parents=True)
        np.save(root / name / "test" / "0.npy", rng.normal(size=(n, 2)))
        np.save(root / name / "test" / "1.npy", rng.normal(size=(n + 1, 2)))
    output = tmp_path / "report.json"
    module.main(["point_set_folder", "--manual_dir", str(root), "--data_dir",
                 str(tmp_path / "tfds"), "--option", "num_dims=2", "--output", str(output)])
    report = json.loads(output.read_text())
    assert report["splits"]["test"]["examples"] == 4
    assert report["splits"]["test"]["per_class"] == {"a": 2, "b": 2}
    assert report["splits"]["test"]["points"] == {"min": 3, "mean": 4.5, "max": 6}


def test_point_set_folder_missing_manual_dir(tmp_path):
    with pytest.raises(dd.MissingDataError, match="does not exist"):
        prepare("point_set_folder", tmp_path / "tfds", tmp_path / "nowhere")
