"""The repository's file-size limit: no committed file over 20 MB.

Large binaries (a baseline's resume state with Adam's moments is ~43 MB) must go in
shards (`training.checkpoint` writes them) or stay out of the repository. The check
reads what git tracks (staged files count: a commit is made of them); outside a git
checkout it walks the tree, leaving out the virtual environment and caches.
"""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 20 * 10**6  # bytes; "20 MB" as the hosting limit counts it
SKIP = {".git", ".venv", "__pycache__", ".pytest_cache", "build", "dist"}


def repository_files():
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                check=True).stdout
        return [ROOT / name for name in listed.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for folder, subfolders, names in os.walk(ROOT):
            subfolders[:] = [d for d in subfolders if d not in SKIP]
            files += [Path(folder) / name for name in names]
        return files


def test_no_file_is_over_the_size_limit():
    files = repository_files()
    assert any(path.name == "pyproject.toml" for path in files)  # the listing saw the tree
    too_large = {str(path.relative_to(ROOT)): path.stat().st_size for path in files
                 if path.is_file() and path.stat().st_size > LIMIT}
    assert not too_large, f"files over {LIMIT:,} bytes: {too_large}"
