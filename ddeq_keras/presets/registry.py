"""The zoo's registry: preset names, their Hub repos, pinned revisions and file hashes.

An entry pins a Hub commit and the sha256 of every file, so a name always loads the
same bytes: the files are checked after download (and, for a copy shipped under
``zoo/<name>/`` in a checkout of this repository, before loading from there with no
network). Add an entry with the output of `entry_for_folder` after publishing.

A preset trained and committed under ``zoo/`` before it is published has an entry
without a Hub repo (``repo_id=None, revision=None``): it loads from the checkout's
``zoo/`` folder, hash-checked, and nowhere else.
"""

import dataclasses
import hashlib
import re
from pathlib import Path

from ddeq_keras.presets.errors import PresetError

# The checkout's zoo/ folder (absent in an installed wheel: then nothing is shipped).
ZOO_DIR = Path(__file__).resolve().parents[2] / "zoo"

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclasses.dataclass(frozen=True)
class PresetEntry:
    """One registered preset.

    Attributes:
        repo_id: its Hub repo, ``owner/name``; None for a preset shipped in
            ``zoo/`` only (not published yet).
        revision: the pinned Hub commit (40 hex digits); None with ``repo_id``.
        sha256: file name -> sha256 hex digest, for every file of the preset.
        description: one line for `list_presets` users.
    """

    repo_id: str | None
    revision: str | None
    sha256: dict
    description: str = ""

    @property
    def on_hub(self):
        return self.repo_id is not None

    @property
    def label(self):
        """How messages name it: ``owner/name@revision``, or the zoo copy."""
        return f"{self.repo_id}@{self.revision}" if self.on_hub else "the zoo/ copy"

    def __post_init__(self):
        if (self.repo_id is None) != (self.revision is None):
            raise PresetError(f"registry entry {self.repo_id!r}@{self.revision!r}: give both "
                              "a Hub repo and a revision, or neither (a zoo/-only preset)")
        if self.on_hub and not _COMMIT.match(self.revision):
            raise PresetError(f"registry entry for {self.repo_id}: revision {self.revision!r} "
                              "must be a full commit sha (40 hex digits), not a branch or tag")
        from ddeq_keras.presets.format import REQUIRED_FILES

        missing = [name for name in REQUIRED_FILES if name not in self.sha256]
        if missing:
            raise PresetError(f"registry entry for {self.repo_id} lacks hashes of {missing}")


# name -> PresetEntry. Regenerate an entry's hashes with
# `entry_for_folder("zoo/<name>", repo_id, revision)` after changing any of its files.
PRESETS = {
    "ddeq_mnist": PresetEntry(
        repo_id=None,  # trained and committed under zoo/; not published on the Hub yet
        revision=None,
        sha256={
            "config.json": "ee3da6ca67d434558864df1e01c2db6c3ab7565943f663d52cdd098563380704",
            "model.safetensors":
                "564e2d979b1afb89a4b03beccbccfe76d5dae41d169ca032c301690e8978cca5",
            "README.md": "b20face68483e8386e98751d2c24626b87fe0d1f184bb7f362ebae139d5dcfdf",
            "metrics.json": "ee03c0c60645726088db58ffed95a11b486b3745552308cb5df94e7fb959aa5c",
        },
        description="MNIST point-cloud classifier, the authors' configuration; "
                    "97.78% on the 10,000 test clouds",
    ),
    "ddeq_mnist_completion": PresetEntry(
        repo_id=None,  # trained and committed under zoo/; not published on the Hub yet
        revision=None,
        sha256={
            "config.json": "96932e5fe14336c0b0b5898c0dc0ba4f5fbaa2c7ce91cf448e4c53ed7547ecaa",
            "model.safetensors":
                "2888ec0cb21f20700c1ad25549271d308e270f94474418ab0afaf94c98b6b91f",
            "README.md": "14f6bf46e8d6839677d413ff4d930ec59e72a9d9f18a68a08078f3fb6aff7c42",
            "metrics.json": "f6e6797e3a10d3d3a54b9e3672351c08b7f63ac6a17c84411c6f226eb31568a6",
        },
        description="MNIST point-cloud completion with input injection; test Chamfer 0.0761 "
                    "on the 10,000 test clouds (PCN-2D: 0.1650; the input alone: 0.0792)",
    ),
}


def list_presets():
    """The registered preset names, sorted."""
    return sorted(PRESETS)


def get_entry(name):
    """The registry entry of `name`.

    Raises:
        PresetError: for an unknown name, listing the known ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(list_presets()) or "none yet"
        raise PresetError(
            f"unknown preset {name!r}; registered presets: {known}. Pass a registered "
            "name, a local preset folder or hf://owner/name[@revision]"
        ) from None


def shipped_folder(name):
    """The folder ``zoo/<name>/`` of this checkout, or None if it is not there."""
    folder = ZOO_DIR / name
    return folder if folder.is_dir() else None


def sha256_of(path):
    """The hex sha256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(entry, folder, origin):
    """Checks every file of `entry` in `folder` against its pinned sha256.

    Args:
        entry: a `PresetEntry`.
        folder: where the files are.
        origin: words for the error message (where the folder came from).

    Raises:
        PresetError: naming the file whose hash differs or that is missing.
    """
    for name, expected in sorted(entry.sha256.items()):
        path = Path(folder) / name
        if not path.is_file():
            raise PresetError(f"{name} of {entry.label} is missing from "
                              f"{origin} ({folder})")
        actual = sha256_of(path)
        if actual != expected:
            raise PresetError(
                f"sha256 mismatch for {name} of {entry.label} from "
                f"{origin}: got {actual}, the registry pins {expected}. The file is corrupt "
                f"or was changed; it was not loaded. Restore or delete the copy ({path}"
                + (f"; for the Hub cache: `hf cache rm model/{entry.repo_id}`"
                   if entry.on_hub else "; `git checkout -- zoo/` restores a checkout's")
                + ") and retry; if it persists, report it to the ddeq-keras maintainers"
            )


def entry_for_folder(folder, repo_id, revision, description=""):
    """The registry entry for a published preset folder (hashes its files).

    Args:
        folder: the preset folder that was published.
        repo_id: its Hub repo.
        revision: the commit sha that `publish` returned.
        description: one line.

    Returns:
        A `PresetEntry`.
    """
    from ddeq_keras.presets.format import PRESET_FILES

    hashes = {name: sha256_of(Path(folder) / name) for name in PRESET_FILES
              if (Path(folder) / name).is_file()}
    return PresetEntry(repo_id, revision, hashes, description)
