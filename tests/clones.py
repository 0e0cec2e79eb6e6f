"""A clone of the current work, alone in a folder: what a new user or a runner checks out."""

from __future__ import annotations

import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def repository_files() -> list[str]:
    """What a clone of the current work holds: tracked and untracked-but-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    return [f for f in listed.splitlines() if os.path.isfile(os.path.join(ROOT, f))]


def fresh_clone(folder) -> tuple[str, str]:
    """A repository of this work with one commit, alone in ``folder``; returns (path, sha)."""
    repo = os.path.join(folder, "numerai-predict")
    for name in repository_files():
        os.makedirs(os.path.join(repo, os.path.dirname(name)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), os.path.join(repo, name))
    env = dict(os.environ, GIT_AUTHOR_NAME="replay", GIT_AUTHOR_EMAIL="replay@localhost",
               GIT_COMMITTER_NAME="replay", GIT_COMMITTER_EMAIL="replay@localhost")
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "replayed push"]):
        subprocess.run(["git", *command], cwd=repo, env=env, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                         check=True).stdout.strip()
    return repo, sha
