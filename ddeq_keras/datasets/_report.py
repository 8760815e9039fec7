"""What a preparation left out: skip accounting, metadata and a JSON report."""

from __future__ import annotations

import collections
import json
import logging
import os

logger = logging.getLogger("ddeq_keras.datasets")

REPORT_NAME = "preparation_report.json"
_EXAMPLES_PER_REASON = 5


class SkipLog:
    """Collects the examples a builder skipped in one split, with their reasons.

    Builders call `skip` (or `skip_error`) for every rejected file or row,
    then `finish` at the end of the split. `finish` logs one warning with the
    counts per reason and a few file names, and records in the builder's
    metadata (kept beside the prepared data) the counts under `"skipped"`
    and every skipped file with its reason under `"skipped_files"`; it raises
    if nothing valid was produced.
    """

    def __init__(self, dataset, split, metadata=None):
        self.dataset = dataset
        self.split = split
        self.metadata = metadata
        self.reasons = collections.Counter()
        self.files = []
        self.kept = 0

    def skip(self, source, reason, detail=""):
        """Records that `source` was skipped for `reason` (one of `readers.REASON_*`)."""
        self.reasons[reason] += 1
        self.files.append({"file": str(source), "reason": reason, "detail": str(detail)})
        logger.debug("%s/%s: skipped %s: %s %s", self.dataset, self.split, source, reason, detail)

    def skip_error(self, error, source=None):
        """Records a `readers.PointFileError`, under `source` if given (else its path)."""
        self.skip(error.path if source is None else source, error.reason, error.detail)

    @property
    def skipped(self):
        return sum(self.reasons.values())

    def summary(self):
        """`"<count> <reason> (e.g. <file>: <detail>; ...)"`, each reason once."""
        parts = []
        for reason, count in sorted(self.reasons.items()):
            examples = [
                entry["file"] + (f": {entry['detail']}" if entry["detail"] else "")
                for entry in self.files
                if entry["reason"] == reason
            ][:_EXAMPLES_PER_REASON]
            parts.append(f"{count} {reason} (e.g. {'; '.join(examples)})")
        return "; ".join(parts)

    def finish(self):
        """Logs and records the skips of the split.

        Raises:
            ValueError: the split has no valid example.
        """
        if self.metadata is not None:
            self.metadata.setdefault("skipped", {})[self.split] = dict(self.reasons)
            self.metadata.setdefault("skipped_files", {})[self.split] = list(self.files)
        if self.skipped:
            logger.warning(
                "%s: split %r: kept %d, skipped %d: %s",
                self.dataset, self.split, self.kept, self.skipped, self.summary(),
            )
        if self.kept == 0:
            raise ValueError(
                f"{self.dataset}: split {self.split!r} has no valid examples"
                + (f"; skipped {self.skipped}: {self.summary()}" if self.skipped else "")
            )


def write_report(data_dir, name, metadata) -> str:
    """Writes `preparation_report.json` into the prepared data's folder.

    Args:
        data_dir: the folder the prepared data is being written to.
        name: `builder/config`, for the report.
        metadata: the builder's metadata (`options`, `skipped`,
            `skipped_files`, `ignored_file_names`).

    Returns:
        The report's path.
    """
    report = {
        "dataset": name,
        "options": metadata.get("options", {}),
        "skipped": metadata.get("skipped", {}),
        "skipped_files": metadata.get("skipped_files", {}),
        "ignored_files": metadata.get("ignored_file_names", []),
    }
    path = os.path.join(os.fspath(data_dir), REPORT_NAME)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    return path
