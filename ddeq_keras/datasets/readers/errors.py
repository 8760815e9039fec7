"""The error a reader raises for an unusable file, and the reasons it gives.

The `REASON_*` strings are shared by every reader and builder so that skip
counts and reports read the same whatever the format.
"""

from __future__ import annotations

REASON_UNREADABLE = "unreadable or corrupt"
REASON_NON_FINITE = "NaN or inf coordinates"
REASON_COLUMNS = "wrong number of columns"
REASON_EMPTY = "no points"
REASON_FORMAT = "unsupported file format"
REASON_EMPTY_FILE = "empty file"
REASON_OUTSIDE = "link to a file outside the folder"


class PointFileError(ValueError):
    """A file that cannot be turned into a valid point cloud.

    Attributes:
        path: the offending file.
        reason: one of the `REASON_*` constants, used to count skips.
        detail: what exactly was wrong (may be empty); kept apart from
            `reason` so that reports can print each once.
    """

    def __init__(self, path, reason, detail=""):
        self.path = str(path)
        self.reason = reason
        self.detail = str(detail)
        message = f"{self.path}: {reason}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class UnsafeArchiveError(ValueError):
    """An archive entry that would be written outside the extraction folder."""


def short_error(error: BaseException, max_lines=3) -> str:
    """`Type: message` of a third-party parser's error, on one line.

    Some (pydantic's, trimesh's) run over many lines: the first few say what
    failed (for pydantic, which header field), the rest are links and
    repetitions that would bury the file name in reports.
    """
    lines = [
        line.strip() for line in str(error).splitlines()
        if line.strip() and not line.strip().startswith("For further information")
    ]
    text = "; ".join(lines[:max_lines])
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
