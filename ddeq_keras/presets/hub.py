"""Hub addresses (``hf://owner/name[@revision]``) and downloads through `huggingface_hub`.

Downloads go through `huggingface_hub.snapshot_download`, so its cache, tokens,
``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` work as users expect. `huggingface_hub` reads
those variables once, when it is imported; this module reads ``HF_ENDPOINT``,
``HF_HOME`` / ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` again at each call, so a
process that changes them later (a notebook, a test) is honoured too.
"""

import os
from pathlib import Path

from ddeq_keras.presets.errors import PresetError

SCHEME = "hf://"
_TRUE = ("1", "true", "yes", "on")


def parse_uri(uri, revision=None):
    """Splits ``hf://owner/name[@revision]``.

    Args:
        uri: the address.
        revision: a revision given separately (must agree with one in `uri`).

    Returns:
        ``(repo_id, revision)``; the revision is None for the default branch.

    Raises:
        PresetError: for a malformed address or two different revisions.
    """
    rest = uri[len(SCHEME):]
    repo_id, _, in_uri = rest.partition("@")
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise PresetError(f"{uri!r} is not a Hub address: expected hf://owner/name[@revision]")
    if "@" in rest and not in_uri:
        raise PresetError(f"{uri!r} has an empty revision after '@'")
    if in_uri and revision and in_uri != revision:
        raise PresetError(f"{uri!r} names revision {in_uri!r} but revision={revision!r} was "
                          "also given: pass one")
    return repo_id, in_uri or revision


def _offline():
    import huggingface_hub.constants

    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().lower() in _TRUE
    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _cache_dir():
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None  # huggingface_hub's own default


def download(repo_id, revision=None, files=None, token=None):
    """Downloads (or finds in the cache) the files of a Hub model repo.

    Args:
        repo_id: ``owner/name``.
        revision: a branch, tag or commit sha; None for the default branch.
        files: file names to fetch (others in the repo are skipped); None for all.
        token: a Hub token; None for `huggingface_hub`'s default (HF_TOKEN, login).

    Returns:
        The local folder (in the Hub cache) holding the files.

    Raises:
        PresetError: saying what happened (unreachable Hub, offline cache miss,
            unknown repo or revision) and what to do.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = os.environ.get("HF_ENDPOINT") or None
    where = f"{repo_id}@{revision or 'main'}"
    offline = _offline()
    try:
        folder = snapshot_download(
            repo_id, revision=revision, cache_dir=_cache_dir(), endpoint=endpoint,
            allow_patterns=list(files) if files else None, token=token,
            local_files_only=offline, library_name="ddeq-keras",
        )
    except LocalEntryNotFoundError as error:
        if offline:
            raise PresetError(
                f"{where} is not in the local Hub cache ({_cache_dir() or 'default location'}) "
                "and HF_HUB_OFFLINE is set, so nothing was downloaded. Run once with network "
                "access (HF_HUB_OFFLINE unset) to cache it, or load a preset folder by path"
            ) from None
        raise PresetError(
            f"could not reach the Hub at {endpoint or 'https://huggingface.co'} to download "
            f"{where}, and it is not in the local cache ({_first_line(error)}). Check the "
            "network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use a cached copy"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as error:
        raise PresetError(
            f"the Hub has no accessible model repo {where} ({type(error).__name__}). Check "
            "the repo name and revision; for a private or gated repo log in (`hf auth login`) "
            "or set HF_TOKEN"
        ) from None
    except HfHubHTTPError as error:
        raise PresetError(f"the Hub refused the download of {where}: {_first_line(error)}. "
                          "Retry later, or check the repo on the Hub") from None
    return Path(folder)
