"""One git-SHA helper (harness/provenance.py) for every writer: train.log and the GPU acceptance table."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from harness import metrics, provenance
from scripts import gpu_check


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(repo), "PATH": "/usr/bin:/bin"})


def test_every_writer_uses_the_one_helper():
    assert metrics.git_sha is provenance.git_sha and gpu_check.git_sha is provenance.git_sha


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_full_sha_dirty_only_for_tracked_changes_unknown_outside_git(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "one")
    sha = provenance.git_sha(repo)
    assert re.fullmatch(r"[0-9a-f]{40}", sha), sha
    (repo / "notes.txt").write_text("untracked\n")
    assert provenance.git_sha(repo) == sha  # untracked files (data, runs) do not make it dirty
    (repo / "a.txt").write_text("two\n")
    assert provenance.git_sha(repo) == sha + "-dirty"
    outside = tmp_path / "plain"
    outside.mkdir()
    assert provenance.git_sha(outside) == "unknown"
