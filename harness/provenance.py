"""Which code made a result: the git commit of the repository, in the one format every writer uses."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def git_sha(repo: Path = REPO) -> str:
    """The full SHA of ``repo``'s HEAD, with ``-dirty`` when a tracked file differs from it (untracked files,
    such as data or run folders, do not count); ``unknown`` outside a git checkout or without git."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)

    try:
        sha = git("rev-parse", "HEAD")
        if sha.returncode != 0:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
