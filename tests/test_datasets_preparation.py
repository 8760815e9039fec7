"""Reliability of preparing data sets (issue 13): option identity, layout
checks, skip reports, links outside the folder, interrupted preparations.

Every data set here is a few tiny files written by the test.
"""

import json
import logging

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

import ddeq_keras.datasets as dd  # noqa: E402
from ddeq_keras.datasets import _config, readers  # noqa: E402
from ddeq_keras.datasets._report import REPORT_NAME  # noqa: E402
from test_datasets_readers import write_pcd  # noqa: E402


def two_classes(root, rng, columns=3, per_class=2):
    """`root/{a,b}/train/<i>.npy`, clouds of 5 points and `columns` values."""
    for name in ("a", "b"):
        (root / name / "train").mkdir(parents=True)
        for i in range(per_class):
            np.save(root / name / "train" / f"{i}.npy", rng.normal(size=(5, columns)))
    return root


def point_dims(builder):
    data = builder.as_dataset(split="train", shuffle_files=False)
    return {int(e["points"].shape[1]) for e in data.as_numpy_iterator()}


# ---------------------------------------------------------------------------
# options are part of the identity of the prepared data
# ---------------------------------------------------------------------------


def test_other_options_prepare_afresh(tmp_path, rng):
    manual = two_classes(tmp_path / "manual", rng)
    data_dir = tmp_path / "tfds"
    first = dd.prepare("point_set_folder", data_dir=data_dir, manual_dir=manual)
    assert first.builder_config.name == "default" and point_dims(first) == {3}
    # Before, every custom option set was named "default_custom" and the
    # second set below silently got the first set's data.
    narrow = dd.prepare("point_set_folder", data_dir=data_dir, manual_dir=manual,
                        options={"num_dims": 2, "drop_extra_columns": True})
    wide = dd.prepare("point_set_folder", data_dir=data_dir, manual_dir=manual,
                      options={"num_dims": 3, "drop_extra_columns": True})
    assert point_dims(narrow) == {2} and point_dims(wide) == {3}
    names = {c.builder_config.name for c in (first, narrow, wide)}
    assert len(names) == 3 and all(n.startswith("default") for n in names)
    recorded = narrow.info.metadata["options"]
    assert recorded["num_dims"] == 2 and recorded["drop_extra_columns"] is True
    # The same options, in another order, name the same (prepared) config.
    assert not tfds.builder("point_set_folder", data_dir=str(tmp_path / "empty")).is_prepared()
    again = dd.prepare("point_set_folder", data_dir=data_dir, manual_dir=tmp_path / "empty",
                       options={"drop_extra_columns": True, "num_dims": 2})
    assert again.builder_config.name == narrow.builder_config.name and point_dims(again) == {2}
    # Options equal to the registered config's are that config.
    same = dd.prepare("point_set_folder", data_dir=data_dir, manual_dir=manual,
                      options={"num_dims": 3})
    assert same.builder_config is first.builder_config


def test_option_digest_is_stable():
    # A fixed value: the digest must not change between processes or runs,
    # or prepared data would not be found again.
    assert _config.options_digest({"b": "x", "a": 1}) == "ecf9e98ec0"
    assert _config.options_digest({"a": 1, "b": "x"}) == "ecf9e98ec0"


def test_same_name_with_other_options_is_refused(tmp_path, rng):
    manual = two_classes(tmp_path / "manual", rng)
    data_dir = tmp_path / "tfds"
    dd.prepare("point_set_folder", data_dir=data_dir, manual_dir=manual,
               config=dd.PointSetFolderConfig(name="scans"))
    other = dd.PointSetFolderConfig(name="scans", num_dims=2, drop_extra_columns=True)
    with pytest.raises(ValueError, match="prepared with other options") as info:
        dd.prepare("point_set_folder", data_dir=data_dir, manual_dir=manual, config=other)
    message = str(info.value)
    assert "num_dims: prepared 3, requested 2" in message
    assert "drop_extra_columns: prepared False, requested True" in message
    assert str(data_dir) in message


@pytest.mark.parametrize(
    "options, pattern",
    [
        ({"num_dim": 2}, r"has no option \['num_dim'\]"),
        ({"nan_policy": "ignore"}, r"nan_policy='ignore' is not one of \('skip', 'drop'\)"),
        ({"num_dims": "2"}, r"num_dims='2' must be of type int, got str"),
        ({"allow_single_class": 1}, r"allow_single_class=1 must be of type bool, got int"),
    ],
)
def test_bad_options_are_refused(tmp_path, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        dd.prepare("point_set_folder", data_dir=tmp_path / "tfds", manual_dir=tmp_path,
                   options=options)


def test_prepare_data_cli_options_change_the_data(tmp_path, rng):
    import importlib.util
    import pathlib

    script = pathlib.Path(__file__).parents[1] / "training" / "prepare_data.py"
    spec = importlib.util.spec_from_file_location("prepare_data", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manual = two_classes(tmp_path / "manual", rng, columns=4)
    common = ["point_set_folder", "--manual_dir", str(manual), "--data_dir", str(tmp_path / "tfds")]
    reports = []
    for num_dims in (3, 2):
        output = tmp_path / f"report{num_dims}.json"
        module.main(common + ["--option", f"num_dims={num_dims}", "--option",
                              "drop_extra_columns=true", "--output", str(output)])
        reports.append(json.loads(output.read_text()))
    assert reports[0]["builder"] != reports[1]["builder"]
    assert [r["splits"]["train"]["dims"] for r in reports] == [[3], [2]]


# ---------------------------------------------------------------------------
# a manual_dir one folder too high
# ---------------------------------------------------------------------------


def test_single_class_folder_is_refused(tmp_path, rng):
    two_classes(tmp_path / "manual" / "mydata", rng)
    too_high = tmp_path / "manual"
    with pytest.raises(ValueError, match="single class folder 'mydata'") as info:
        dd.prepare("point_set_folder", data_dir=tmp_path / "tfds", manual_dir=too_high)
    message = str(info.value)
    assert str(too_high) in message and "sub-folders ['a', 'b']" in message
    assert "allow_single_class" in message
    # Allowing one class still meets the train/ folders below the class level.
    with pytest.raises(ValueError, match=r"split folders below the class level.*mydata/a/train"):
        dd.prepare("point_set_folder", data_dir=tmp_path / "tfds", manual_dir=too_high,
                   options={"allow_single_class": True})
    builder = dd.prepare(
        "point_set_folder", data_dir=tmp_path / "tfds", manual_dir=too_high,
        options={"allow_single_class": True, "allow_nested_split_folders": True},
    )
    assert builder.info.features["label"].names == ["mydata"]
    assert builder.info.splits["train"].num_examples == 4


def test_nested_split_folders_are_refused(tmp_path, rng):
    manual = tmp_path / "manual"
    two_classes(manual / "set1", rng)
    two_classes(manual / "set2", rng)
    with pytest.raises(ValueError, match="split folders below the class level") as info:
        dd.prepare("point_set_folder", data_dir=tmp_path / "tfds", manual_dir=manual)
    assert "set1/a/train" in str(info.value) and str(manual) in str(info.value)


# ---------------------------------------------------------------------------
# skipped files: reasons once, names in the metadata and a JSON report
# ---------------------------------------------------------------------------


@pytest.fixture
def mixed_dir(tmp_path, rng):
    """Two good clouds per class, plus an empty, a corrupt and a linked-out file."""
    root = two_classes(tmp_path / "manual", rng)
    (root / "a" / "train" / "empty.pcd").write_bytes(b"")
    write_pcd(root / "b" / "train" / "cut.pcd", rng.normal(size=(6, 3)), "binary")
    cut = root / "b" / "train" / "cut.pcd"
    cut.write_bytes(cut.read_bytes()[:-3])
    outside = tmp_path / "elsewhere.npy"
    np.save(outside, rng.normal(size=(5, 3)))
    (root / "a" / "train" / "link.npy").symlink_to(outside)
    return root


def test_skipped_files_are_reported(tmp_path, mixed_dir, caplog):
    data_dir = tmp_path / "tfds"
    with caplog.at_level(logging.WARNING, logger="ddeq_keras.datasets"):
        builder = dd.prepare("point_set_folder", data_dir=data_dir, manual_dir=mixed_dir)
    assert builder.info.splits["train"].num_examples == 4
    expected = {
        "a/train/empty.pcd": (readers.errors.REASON_EMPTY_FILE, "0 bytes"),
        "a/train/link.npy": (readers.errors.REASON_OUTSIDE, "resolves to "),
        "b/train/cut.pcd": (readers.REASON_UNREADABLE, "(truncated)"),
    }

    def check(entries):
        got = {e["file"]: e for e in entries}
        assert sorted(got) == sorted(expected)
        for name, (reason, detail) in expected.items():
            assert got[name]["reason"] == reason and detail in got[name]["detail"]

    check(builder.info.metadata["skipped_files"]["train"])
    report = json.loads((builder.data_path / REPORT_NAME).read_text())
    check(report["skipped_files"]["train"])
    assert report["skipped"]["train"] == builder.info.metadata["skipped"]["train"]
    assert report["options"]["num_dims"] == 3
    # Kept with the data: a builder opened later reads them back.
    reopened = tfds.builder("point_set_folder", data_dir=str(data_dir))
    check(reopened.info.metadata["skipped_files"]["train"])

    (warning,) = [r.getMessage() for r in caplog.records if "skipped 3" in r.getMessage()]
    # Each reason once (it used to be repeated inside every example's detail).
    for reason in ("empty file", "unreadable or corrupt", "outside the folder"):
        assert warning.count(reason) == 1, warning
    assert "empty.pcd: 0 bytes" in warning


def test_links_outside_are_read_only_when_allowed(tmp_path, mixed_dir):
    builder = dd.prepare("point_set_folder", data_dir=tmp_path / "tfds", manual_dir=mixed_dir,
                         options={"allow_links_outside": True})
    sources = {e["source"].decode() for e in
               builder.as_dataset(split="train", shuffle_files=False).as_numpy_iterator()}
    assert "a/train/link.npy" in sources and len(sources) == 5


# ---------------------------------------------------------------------------
# an interrupted preparation is never read
# ---------------------------------------------------------------------------


class Killed(BaseException):
    """Stands for the process being killed: nothing catches a BaseException here."""


def test_interrupted_preparation_is_prepared_again(tmp_path, rng, monkeypatch):
    manual = two_classes(tmp_path / "manual", rng)
    data_dir = tmp_path / "tfds"
    final = data_dir / "point_set_folder" / "default" / "1.0.0"
    real_read = readers.read_point_file
    seen = []

    def read_then_die(path, **kwargs):
        # TFDS writes into a temporary folder and renames it when done: while
        # examples are being written, the final folder must not exist.
        seen.append(final.exists())
        if len(seen) == 3:
            raise Killed
        return real_read(path, **kwargs)

    monkeypatch.setattr(readers, "read_point_file", read_then_die)
    with pytest.raises(Killed):
        dd.prepare("point_set_folder", data_dir=data_dir, manual_dir=manual)
    assert seen == [False, False, False]
    assert not final.exists()
    # A SIGKILL also skips the clean-up and leaves the temporary folder: make
    # one, with a half-written shard and an info file, as it would be left.
    stale = final.parent / "incomplete.KILLED_1.0.0"
    stale.mkdir()
    (stale / "point_set_folder-train.tfrecord-00000-of-00001").write_bytes(b"\0" * 10)
    (stale / "dataset_info.json").write_text("{}")
    assert not tfds.builder("point_set_folder", data_dir=str(data_dir)).is_prepared()

    monkeypatch.setattr(readers, "read_point_file", real_read)
    builder = dd.prepare("point_set_folder", data_dir=data_dir, manual_dir=manual)
    assert builder.is_prepared() and builder.data_path == final
    assert builder.info.splits["train"].num_examples == 4
    assert len(list(builder.as_dataset(split="train").as_numpy_iterator())) == 4
