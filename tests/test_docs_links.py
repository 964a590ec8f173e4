"""Every pointer to a README or docs page, from code or docs, resolves; the README stays a newcomer's page.

Pointers checked, in every tracked ``.py``, ``.md``, ``.yaml`` and ``.sh`` file:

* markdown links and images to repository files, with their ``#anchor`` (GitHub's heading slugs);
* prose pointers to a section, ``README, "Full scale"``, ``docs/x.md, "Section"``, ``the README's "Set-up"``,
  ``[`x.md`](x.md), "Section"``, ``optim/README.md §3`` (a section name may be the start of a longer
  heading, as in ``"How a step is arranged"``); a bare ``README`` is the repository's top-level one;
* paths to ``.md`` files under a top-level folder (``docs/x.md``, ``results/README.md``) named in prose.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".yaml", ".sh"}
README_MAX_LINES, LINE_MAX = 200, 110

DOC = r"(?P<doc>(?:[\w.-]+/)*README(?:\.md)?|(?:[\w.-]+/)*[\w.-]+\.md)"
SECTION = (r"(?:\"(?P<dq>[^\"\s][^\"]{0,79})\"|'(?P<sq>[^'\s][^']{0,79})'"  # a quoted name, or a number
           r"|§\s?(?P<num>\d+)(?:[–-](?P<num2>\d+))?)")
PROSE_POINTER = re.compile(rf"(?<![\w./-])`{{0,2}}{DOC}`{{0,2}}(?:'s)?[\s,:()\]]+{SECTION}")
MD_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")
MD_PATH = re.compile(r"(?<![\w./*-])(?P<path>(?:[\w.-]+/)+[\w.-]+\.md)\b")
FENCE = re.compile(r"^\s*```")


def tracked_files() -> list[Path]:
    """The repository's tracked source and documentation files (a git checkout), else a walk of it."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        files = [REPO / line for line in out.splitlines()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "data_cache", "runs", "multirun", "outputs", "node_modules"}
        files = [p for p in REPO.rglob("*") if not skip & set(p.relative_to(REPO).parts)]
    this = Path(__file__).resolve()  # its examples of broken pointers are meant to be broken
    return sorted(p for p in files if p.suffix in SUFFIXES and p.is_file() and p.resolve() != this)


def _plain(heading: str) -> str:
    return re.sub(r"[`*]", "", heading).strip().rstrip("#").strip()


@cache
def headings(path: Path) -> tuple[str, ...]:
    """The markdown headings of ``path`` (outside code fences), without markup."""
    out, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#{1,6}\s+(.*)$", line)):
            out.append(_plain(m.group(1)))
    return tuple(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for h in headings(path):
        s = slug(h)
        out.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return frozenset(out)


def has_section(path: Path, name: str) -> bool:
    """A heading of ``path`` is ``name`` or starts with it followed by a space or punctuation."""
    want = name.strip().lower()
    for h in (h.lower() for h in headings(path)):
        if h == want or (h.startswith(want) and not h[len(want)].isalnum()):
            return True
    return False


def has_numbered_section(path: Path, number: str) -> bool:
    return any(re.match(rf"{number}\.\s", h) for h in headings(path))


def resolve(doc: str, source: Path) -> Path | None:
    """The file a pointer names: a bare README is the top-level one; else the path from the repository root,
    then from the pointing file's folder; None when neither exists."""
    if doc in ("README", "README.md"):
        return REPO / "README.md"
    if doc.endswith("/README"):
        doc += ".md"
    for base in (REPO, source.parent):
        if (base / doc).is_file():
            return (base / doc).resolve()
    return None


def _in_repo_tree(doc: str) -> bool:
    """A path that names a top-level folder of this repository (not another project's file)."""
    return "/" not in doc or (REPO / doc.split("/")[0]).is_dir()


def flatten(text: str, python: bool = False) -> str:
    """One line: wrapped prose, comment continuations (``#``) and docstring indentation joined by spaces; in
    Python, a string literal continued on the next line (``"... "`` then ``f"..."``) is joined first."""
    if python:
        text = re.sub(r"([\"'])[ \t]*\n[ \t]*[rfbu]{0,2}\1", "", text)
    return re.sub(r"[ \t]*\n[ \t]*(?:#+[ \t]+(?=\S))?", " ", text)


def prose_pointers(path: Path):
    """(doc, section or None, § numbers or None) for every prose pointer in ``path``."""
    text = flatten(path.read_text(encoding="utf-8"), python=path.suffix == ".py")
    for m in PROSE_POINTER.finditer(text):
        nums = [m["num"], m["num2"]] if m["num"] else None
        yield m["doc"], m["dq"] or m["sq"], [n for n in nums or [] if n] or None


def broken_pointers(files: list[Path]) -> list[str]:
    """Every pointer in ``files`` that does not resolve, as 'file: pointer: why'."""
    problems = []
    for path in files:
        rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        text = path.read_text(encoding="utf-8")
        for doc, section, nums in prose_pointers(path):
            target = resolve(doc, path)
            if target is None:
                if _in_repo_tree(doc):
                    problems.append(f"{rel}: {doc}: no such file")
                continue
            if section is not None and not has_section(target, section):
                problems.append(f'{rel}: {doc}, "{section}": no such section in {target.relative_to(REPO)}')
            for n in nums or []:
                if not has_numbered_section(target, n):
                    problems.append(f"{rel}: {doc} §{n}: no section numbered {n}")
        if path.suffix == ".md":
            for m in MD_LINK.finditer(text):
                problems += _check_link(m["target"], path, rel)
        for m in MD_PATH.finditer(text):
            doc = m["path"]
            if (REPO / doc.split("/")[0]).is_dir() and resolve(doc, path) is None:
                problems.append(f"{rel}: {doc}: no such file")
    return sorted(set(problems))


def _check_link(target: str, path: Path, rel) -> list[str]:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        return []
    file_part, _, anchor = target.partition("#")
    dest = (path.parent / file_part).resolve() if file_part else path
    if not dest.exists():
        return [f"{rel}: link {target}: no such file"]
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return [f"{rel}: link {target}: no heading with anchor #{anchor} in {dest.name}"]
    return []


# ----------------------------------------------------------------------------------------------- tests
def test_every_pointer_to_a_readme_or_docs_section_resolves():
    problems = broken_pointers(tracked_files())
    assert not problems, "broken pointers (fix the pointer or the heading):\n" + "\n".join(problems)


FORMS = r'''raise SystemExit("missing runs (README, 'Full scale'); rerun")
"""The step (docs/training.md, "How a step is arranged"), the README's "Set-up",
    ``optim/README.md`` §2–3 and [`full-scale.md`](full-scale.md), "Slurm, preemptible"."""
# a comment that wraps: README
#   "Quick start"
README = REPO / "optim" / "README.md"  # code, not a pointer
'''


def test_the_checker_reads_every_pointer_form(tmp_path):
    f = tmp_path / "forms.py"
    f.write_text(FORMS, encoding="utf-8")
    assert list(prose_pointers(f)) == [
        ("README", "Full scale", None), ("docs/training.md", "How a step is arranged", None),
        ("README", "Set-up", None), ("optim/README.md", None, ["2", "3"]),
        ("full-scale.md", "Slurm, preemptible", None), ("README", "Quick start", None)]


def test_the_repository_scan_sees_pointers_in_code_docs_and_configs():
    kinds = {p.suffix for p in tracked_files() if list(prose_pointers(p))}
    assert {".py", ".md", ".yaml"} <= kinds


@pytest.mark.parametrize("pointer", [
    'see README, "No such section" for more',
    "an error message (README, 'Full scale typo')",
    'see docs/nowhere.md, "Anything"',
    "the README's \"Missing\" section",
    "optim/README.md §9 holds it",
    "[the page](docs/reliability.md#no-such-anchor)",
    "[the page](docs/absent.md)",
    "# a comment that points to\n# docs/training.md, \"No such\n# heading\"",
])
def test_a_broken_pointer_fails(tmp_path, pointer):
    suffix = ".md" if pointer.startswith("[") else ".py"
    f = tmp_path / f"pointing{suffix}"
    f.write_text(pointer + "\n", encoding="utf-8")
    assert broken_pointers([f]), pointer


@pytest.mark.parametrize("pointer", [
    'see README, "Full scale"',
    "(docs/training.md, 'How a step is arranged')",
    "optim/README.md §2–3",
    "[`reliability.md`]({docs}/reliability.md#not-guaranteed), \"Not guaranteed\"",
    "records/track_3_optimization/README.md in KellerJordan/modded-nanogpt",  # another project's file
])
def test_a_good_pointer_passes(tmp_path, pointer):
    f = tmp_path / "pointing.md"
    f.write_text(pointer.format(docs=os.path.relpath(REPO / "docs", tmp_path)) + "\n", encoding="utf-8")
    assert not broken_pointers([f])


def test_readme_is_a_newcomers_page():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    long = [f"line {i}: {len(line)} characters" for i, line in enumerate(lines, 1) if len(line) > LINE_MAX]
    assert not long, f"README.md lines over {LINE_MAX} characters: {long}"
    first_screen = "\n".join(lines[:40])
    assert "docs/assumptions.md" in first_screen  # every reading we chose, linked from the first screen
    assert "no GPT-124M run on a GPU yet" in first_screen  # what has been measured where, said plainly
