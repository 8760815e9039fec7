"""A real Hub-compatible server for tests: olah serving local git repos on 127.0.0.1.

olah (a self-hosted Hub mirror, the `dev` extra) serves every ordinary git repo at
``<mirrors>/models/<org>/<name>`` to the real `huggingface_hub` client: downloads at a
branch, tag or commit sha, byte-identical to git. It is configured offline, with the
upstream Hub pointed at a closed local port (some routes forward upstream even
offline), so nothing leaves the machine. Uploads are not supported (read-only).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# Exactly the configuration checked in /work/shared/reference/KERAS_NOTES.md.
CONFIG = """\
[basic]
host = "127.0.0.1"
port = {port}
repos-path = "{repos}"
mirrors-path = ["{mirrors}"]
hf-scheme = "http"
hf-netloc = "127.0.0.1:{closed}"
hf-lfs-netloc = "127.0.0.1:{closed}"

[accessibility]
offline = true
"""

_GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of the call)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(repo, *args):
    """Runs git in `repo` with a neutral configuration; returns its stdout."""
    result = subprocess.run(["git", *args], cwd=repo, env={**os.environ, **_GIT_ENV},
                            capture_output=True, text=True, timeout=60)
    if result.returncode:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


class HubRepo:
    """A git repo served by olah as the Hub model repo ``org/name``."""

    def __init__(self, mirrors, repo_id):
        self.repo_id = repo_id
        self.path = Path(mirrors) / "models" / repo_id
        self.path.mkdir(parents=True)
        git(self.path, "init", "-q", "-b", "main")

    def commit(self, folder, message):
        """Replaces the repo's files with those of `folder`; returns the commit sha."""
        files = {path.name: path.read_bytes() for path in Path(folder).iterdir()}
        return self.commit_files(files, message)

    def commit_files(self, files, message):
        """Replaces the repo's files with `files` (name -> bytes); returns the commit sha."""
        for old in self.path.iterdir():
            if old.name != ".git":
                old.unlink()
        for name, data in files.items():
            (self.path / name).write_bytes(data)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD")

    def tag(self, name):
        git(self.path, "tag", name)


class OlahServer:
    """olah on a free port of 127.0.0.1, started and stopped by the test fixtures."""

    def __init__(self, root):
        self.root = Path(root)
        self.mirrors = self.root / "mirrors"
        self.mirrors.mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        self.process = None
        self.port = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def add_repo(self, repo_id):
        return HubRepo(self.mirrors, repo_id)

    def start(self, probe_repo, timeout=60):
        """Starts olah (if not running) and waits until it serves `probe_repo`."""
        if self.process is not None and self.process.poll() is None:
            return
        executable = shutil.which("olah-cli") or str(Path(sys.executable).with_name("olah-cli"))
        if not Path(executable).exists():
            raise RuntimeError("olah-cli not found: install the dev extra (pip install -e .[dev])")
        self.port = free_port()
        config = self.root / "olah.toml"
        config.write_text(CONFIG.format(port=self.port, repos=self.root / "repos",
                                        mirrors=self.mirrors, closed=free_port()))
        self.log = open(self.root / "logs" / "stdout.txt", "ab")
        # Its own session, so that stop() can end olah and any worker it forks.
        self.process = subprocess.Popen(
            [executable, "-c", str(config), "--log-path", str(self.root / "logs")],
            cwd=self.root, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        url = f"{self.endpoint}/api/models/{probe_repo}/revision/main"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        log = (self.root / "logs" / "stdout.txt").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"olah did not serve {url} within {timeout} s:\n{log}")

    def stop(self):
        """Stops olah (the process group it was started in) and waits for it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        self.process = None
        self.log.close()
