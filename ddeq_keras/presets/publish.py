"""`publish`: a validated preset folder to a Hub model repo, in one commit."""

import os
from pathlib import Path

from ddeq_keras.presets.errors import PresetError
from ddeq_keras.presets.format import PRESET_FILES, read_config, read_metrics
from ddeq_keras.presets.preset import validate_preset

# Metrics quoted in the commit title; the rest go to the description.
_TITLE_METRICS = 3


def describe_commit(folder):
    """The commit title and description for publishing `folder`.

    The title names the preset, its class and its first measured metrics; the
    description lists every metric record.

    Returns:
        ``(title, description)``.
    """
    folder = Path(folder)
    document = read_config(folder)
    metrics = read_metrics(folder) or []
    quoted = [f"{m['metric']} {m['value']:.4g} on {m['dataset']} {m['split']} ({m['backend']})"
              for m in metrics]
    title = f"Upload preset {folder.name} ({document['class_name']})"
    if quoted:
        more = f" +{len(quoted) - _TITLE_METRICS} more" if len(quoted) > _TITLE_METRICS else ""
        title += ": " + "; ".join(quoted[:_TITLE_METRICS]) + more
    lines = [f"ddeq_keras {document['ddeq_keras_version']}, keras {document['keras_version']}."]
    lines += [f"- {q}, {m['hardware']}, {m['date']}: `{m['command']}`"
              for q, m in zip(quoted, metrics)]
    return title, "\n".join(lines)


def publish(folder, repo_id, *, revision=None, private=False, commit_message=None, token=None):
    """Validates a preset folder and uploads it to a Hub model repo.

    Creates the repo if needed (`HfApi.create_repo(exist_ok=True)`), and the branch
    `revision` if given, then uploads exactly the preset's files in one commit.

    Args:
        folder: a preset folder written by `save_preset`, with `metrics.json`.
        repo_id: ``owner/name``.
        revision: the branch to commit to (default: the repo's main branch).
        private: create the repo private (an existing repo keeps its visibility).
        commit_message: the commit title (default: the preset, its class and its
            metrics); the description always lists the metrics.
        token: a Hub token with write access (default: HF_TOKEN or `hf auth login`).

    Returns:
        The `huggingface_hub.CommitInfo`: a string (the commit URL) whose ``oid``
        is the commit sha, for a registry entry.

    Raises:
        PresetError: if the folder does not validate or `repo_id` is malformed.

    Example (uploading needs the network and a token; a malformed id fails first,
    before the folder is read):
    >>> from ddeq_keras.presets import publish
    >>> publish("zoo/ddeq_mnist", "ddeq-mnist")
    Traceback (most recent call last):
    ...
    ddeq_keras.presets.errors.PresetError: repo id 'ddeq-mnist' must be owner/name
    >>> folder = "zoo/ddeq_mnist"  # written by save_preset(model, folder, metrics=[...])
    >>> publish(folder, "owner/ddeq-mnist")  # doctest: +SKIP
    """
    from huggingface_hub import HfApi

    parts = str(repo_id).split("/")
    if len(parts) != 2 or not all(parts):
        raise PresetError(f"repo id {repo_id!r} must be owner/name")
    folder = validate_preset(folder, require_metrics=True)
    title, description = describe_commit(folder)
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id, repo_type="model", folder_path=str(folder), revision=revision,
        allow_patterns=list(PRESET_FILES), commit_message=commit_message or title,
        commit_description=description,
    )
