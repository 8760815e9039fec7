"""Safe extraction of zip archives (no entry may land outside the target)."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from ddeq_keras.datasets.readers.errors import UnsafeArchiveError


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
    damaged archive leaves nothing half-extracted. A marker file, written
    last, makes a second call with a complete extraction a no-op; an
    interrupted extraction has no marker and is redone.

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
