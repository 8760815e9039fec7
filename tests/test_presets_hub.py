"""Presets through a real Hub-compatible server (olah on 127.0.0.1), offline.

Pull: a git repo ``org/tiny`` with two commits (a tag ``v1`` on the first) is served
by olah to the real `huggingface_hub` client, and loaded by branch, tag and commit;
then from the cache with the server stopped and ``HF_HUB_OFFLINE=1`` (in a fresh
process, since `huggingface_hub` reads it at import). Push: `publish` runs its own
code up to `HfApi`, whose two upload endpoints are stood in for by recording what
would be sent and committing exactly that into olah's git repos; it is then loaded
back through the server. Same-backend outputs must be bit-identical (the same
float32 weights and computation), so no tolerance.
"""

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import yaml
from huggingface_hub import CommitInfo, HfApi
from huggingface_hub.utils import filter_repo_objects

import ddeq_keras
from ddeq_keras.presets import PresetError, load_preset, publish, registry, save_preset
from ddeq_keras.presets.registry import entry_for_folder
from hub_server import OlahServer, free_port
from preset_helpers import (
    ddeq_inputs,
    metrics,
    outputs,
    sequential_inputs,
    tiny_ddeq,
    tiny_sequential,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """olah serving org/tiny: commit 1 (tag v1) and commit 2 (main), two weight sets."""
    root = tmp_path_factory.mktemp("hub")
    first, second = tiny_sequential(seed=1), tiny_sequential(seed=2)
    folders = [save_preset(model, root / f"v{i}" / "tiny", metrics=metrics(value))
               for i, (model, value) in enumerate([(first, 0.6), (second, 0.8)], start=1)]
    server = OlahServer(root / "olah")
    repo = server.add_repo("org/tiny")
    sha1 = repo.commit(folders[0], "Add preset tiny v1")
    repo.tag("v1")
    sha2 = repo.commit(folders[1], "Update preset tiny to v2")
    server.start("org/tiny")
    x = sequential_inputs()
    yield types.SimpleNamespace(
        server=server, repo=repo, sha1=sha1, sha2=sha2, folders=folders, x=x,
        hf_home=root / "hf_home", expected={"v1": outputs(first, x), "v2": outputs(second, x)})
    server.stop()


@pytest.fixture
def hub(served, monkeypatch):
    """The served repo, with the Hub client pointed at it (and olah running)."""
    served.server.start("org/tiny")
    monkeypatch.setenv("HF_ENDPOINT", served.server.endpoint)
    monkeypatch.setenv("HF_HOME", str(served.hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    # huggingface_hub read HF_HUB_OFFLINE at import; an offline CI must not leak in.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return served


pytestmark = pytest.mark.slow  # a Hub mirror server and subprocesses


def test_load_at_branch_tag_and_commit(hub):
    cases = {"hf://org/tiny": "v2", "hf://org/tiny@v1": "v1", f"hf://org/tiny@{hub.sha1}": "v1",
             f"hf://org/tiny@{hub.sha2}": "v2"}
    for uri, version in cases.items():
        np.testing.assert_array_equal(outputs(load_preset(uri), hub.x), hub.expected[version],
                                      err_msg=uri)
    np.testing.assert_array_equal(outputs(load_preset("hf://org/tiny", revision="v1"), hub.x),
                                  hub.expected["v1"])
    # Downloads land in the Hub cache under HF_HOME, one snapshot per commit.
    snapshots = hub.hf_home / "hub" / "models--org--tiny" / "snapshots"
    assert sorted(os.listdir(snapshots)) == sorted([hub.sha1, hub.sha2])


OFFLINE = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from preset_helpers import outputs, sequential_inputs
    from ddeq_keras.presets import PresetError, load_preset
    np.savez(sys.argv[2], v1=outputs(load_preset("hf://org/tiny@v1"), sequential_inputs()),
             main=outputs(load_preset("hf://org/tiny"), sequential_inputs()))
    try:
        load_preset("hf://org/tiny@never-downloaded")
    except PresetError as error:
        print("REFUSED:", error)
    """
)


def test_offline_from_the_cache_with_the_server_stopped(hub, tmp_path):
    load_preset("hf://org/tiny@v1"), load_preset("hf://org/tiny")  # fills the cache
    hub.server.stop()
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(ddeq_keras.__file__)))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(hub.hf_home),
               HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE, os.path.dirname(os.path.abspath(__file__)),
         str(tmp_path / "out.npz")], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["v1"], hub.expected["v1"])
    np.testing.assert_array_equal(out["main"], hub.expected["v2"])
    assert "REFUSED: org/tiny@never-downloaded is not in the local Hub cache" in result.stdout
    assert "HF_HUB_OFFLINE is set" in result.stdout


def test_registry_entry_is_pinned_and_hash_checked(hub, monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "ZOO_DIR", tmp_path / "empty_zoo")  # nothing shipped
    good = entry_for_folder(hub.folders[0], "org/tiny", hub.sha1)
    monkeypatch.setitem(registry.PRESETS, "tiny_pinned", good)
    assert "tiny_pinned" in ddeq_keras.presets.list_presets()
    np.testing.assert_array_equal(outputs(load_preset("tiny_pinned"), hub.x), hub.expected["v1"])
    # An entry whose pinned hash is not the file's (here: v2's weights) is refused.
    wrong = dict(good.sha256, **{"model.safetensors":
                                 entry_for_folder(hub.folders[1], "o/n", "0" * 40)
                                 .sha256["model.safetensors"]})
    monkeypatch.setitem(registry.PRESETS, "tiny_tampered",
                        registry.PresetEntry("org/tiny", hub.sha1, wrong))
    with pytest.raises(PresetError, match=r"sha256 mismatch for model\.safetensors of "
                                          rf"org/tiny@{hub.sha1}.*not loaded.*hf cache rm"):
        load_preset("tiny_tampered")


def test_unreachable_hub_and_unknown_repo_say_what_to_do(hub, monkeypatch, tmp_path):
    with pytest.raises(PresetError, match=r"no accessible model repo org/missing@main.*HF_TOKEN"):
        load_preset("hf://org/missing")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    with pytest.raises(PresetError, match=r"could not reach the Hub at http://127\.0\.0\.1:\d+ "
                                          r"to download org/tiny@v1.*HF_HUB_OFFLINE=1"):
        load_preset("hf://org/tiny@v1")


@pytest.fixture
def upload_endpoints(hub, monkeypatch):
    """Stands in for the Hub's two upload endpoints: records, then commits into olah."""
    sent = types.SimpleNamespace(create_repo=[], uploads=[])

    def create_repo(self, repo_id, **kwargs):
        sent.create_repo.append(dict(repo_id=repo_id, **kwargs))

    def upload_folder(self, *, repo_id, folder_path, commit_message, allow_patterns=None,
                      **kwargs):
        # The same file selection as the real upload_folder.
        names = sorted(filter_repo_objects(os.listdir(folder_path), allow_patterns=allow_patterns))
        files = {name: Path(folder_path, name).read_bytes() for name in names}
        sent.uploads.append(dict(repo_id=repo_id, files=files, commit_message=commit_message,
                                 **kwargs))
        # Exactly what was sent becomes a commit that the server then serves.
        sha = hub.server.add_repo(repo_id).commit_files(files, commit_message)
        return CommitInfo(commit_url=f"{self.endpoint}/{repo_id}/commit/{sha}",
                          commit_message=commit_message,
                          commit_description=kwargs.get("commit_description", ""), oid=sha,
                          _endpoint=self.endpoint)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return sent


def test_publish_sends_exactly_the_preset_and_it_loads_back(hub, upload_endpoints, tmp_path):
    model = tiny_ddeq()
    folder = save_preset(model, tmp_path / "ddeq_tiny", metrics=metrics(0.75),
                         card_info={"repo_id": "org/pushed"})
    (folder / "notes.txt").write_text("not part of the preset")
    commit = publish(folder, "org/pushed", private=True)
    assert upload_endpoints.create_repo == [dict(repo_id="org/pushed", repo_type="model",
                                                 private=True, exist_ok=True)]
    [upload] = upload_endpoints.uploads
    assert sorted(upload["files"]) == ["README.md", "config.json", "metrics.json",
                                       "model.safetensors"]
    for name, data in upload["files"].items():
        assert data == (folder / name).read_bytes(), name
    backend = metrics()[0]["backend"]
    assert upload["commit_message"] == (
        f"Upload preset ddeq_tiny (ddeq_keras>DDEQClassifier): accuracy 0.75 on "
        f"synthetic_rings test ({backend})")
    assert "python -m training.evaluate --preset test" in upload["commit_description"]
    front = yaml.safe_load(upload["files"]["README.md"].decode().split("---")[1])
    assert front["library_name"] == "keras" and front["license"] == "apache-2.0"
    assert {"point-cloud", "deep-equilibrium", "keras"} <= set(front["tags"])
    [result] = front["model-index"][0]["results"]
    assert result["metrics"][0]["value"] == 0.75
    assert result["dataset"] == {"name": "synthetic_rings", "type": "synthetic_rings",
                                 "split": "test"}
    assert commit.oid in commit and len(commit.oid) == 40
    # What was sent, served back by the Hub server, loads with identical outputs.
    x = ddeq_inputs()
    np.testing.assert_array_equal(outputs(load_preset(f"hf://org/pushed@{commit.oid}"), x),
                                  outputs(model, x))


def test_publish_refuses_an_incomplete_folder_before_any_upload(hub, upload_endpoints,
                                                                tmp_path):
    folder = save_preset(tiny_sequential(), tmp_path / "no_metrics")
    with pytest.raises(PresetError, match=r"lacks metrics\.json"):
        publish(folder, "org/never")
    with pytest.raises(PresetError, match="owner/name"):
        publish(folder, "no-owner")
    assert upload_endpoints.create_repo == [] and upload_endpoints.uploads == []


def test_publish_command_line(hub, upload_endpoints, capsys):
    sys.path.insert(0, ROOT)
    try:
        from training import publish as cli
    finally:
        sys.path.remove(ROOT)
    folder = hub.folders[0]
    assert cli.main([str(folder), "org/cli", "--message", "Release tiny v1"]) == 0
    [upload] = upload_endpoints.uploads
    assert upload["commit_message"] == "Release tiny v1" and upload["repo_id"] == "org/cli"
    assert upload["files"]["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    assert f"{hub.server.endpoint}/org/cli/commit/" in capsys.readouterr().out
    assert cli.main([str(folder.parent / "missing"), "org/cli"]) == 2
    assert "does not exist" in capsys.readouterr().err
