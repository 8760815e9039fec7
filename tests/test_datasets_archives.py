"""Archives from strangers: `safe_extract_zip` never writes outside its target.

Path traversal, absolute paths, symlink members and links already in the target
are refused by name; an extraction that was interrupted is done again; a
corrupt archive is reported by name.
"""

import stat
import zipfile

import pytest

pytest.importorskip("tensorflow_datasets")

from ddeq_keras.datasets import readers  # noqa: E402

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


@pytest.mark.parametrize("target", ["../../outside", "/tmp", "inside.txt"])
def test_zip_symlink_member_is_refused(tmp_path, target):
    # A link entry, then a file "through" it: extracted by a tool that makes links,
    # the second entry would land wherever the link points.
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("inside.txt", "1 2 3\n")
        link = zipfile.ZipInfo("lnk")
        link.create_system = 3  # Unix: the mode is in the high 16 bits
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, target)
        zf.writestr("lnk/evil.txt", "evil")
    dest = tmp_path / "sub" / "out"
    with pytest.raises(readers.UnsafeArchiveError, match=r"link.zip.*'lnk' is a symbolic link"):
        readers.safe_extract_zip(archive, dest)
    assert not dest.exists()  # nothing extracted, not even inside.txt
    assert not (tmp_path / "outside").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.zip"]


def test_zip_entry_through_a_link_in_the_target_is_refused(tmp_path):
    # The target folder already holds a link to outside: an entry below it is refused.
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "lnk").symlink_to(outside)
    archive = tmp_path / "through.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("lnk/evil.txt", "evil")
    with pytest.raises(readers.UnsafeArchiveError, match=r"through.zip.*'lnk/evil.txt'"):
        readers.safe_extract_zip(archive, dest)
    assert not any(outside.iterdir())


def test_interrupted_extraction_is_redone(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("c/x.txt", "1 2 3\n")
    # What a killed extraction leaves: a partial file and no completion marker.
    dest = tmp_path / "out"
    (dest / "c").mkdir(parents=True)
    (dest / "c" / "x.txt").write_text("1 2")
    readers.safe_extract_zip(archive, dest)
    assert (dest / "c" / "x.txt").read_text() == "1 2 3\n"


def test_corrupt_zip(tmp_path):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="bad.zip"):
        readers.safe_extract_zip(archive, tmp_path / "out")
