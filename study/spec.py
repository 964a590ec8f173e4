"""A study file: a YAML mapping with `kind` (figures | tuned | settings) and that kind's keys, read and
checked before any work. Every kind takes:

    kind        figures | tuned | settings (study/figures.py, study/tuned.py, study/settings.py say the rest)
    title       the heading of its tables
    seeds       the seeds every setting runs at
    overrides   Hydra overrides for every run (after the study's own, so they may change anything but what
                the study sets itself: experiment, optimizer, seed, run_dir)

Runs live beside the study file (its folder), named by the kind; its tables and figures are written there
too. A key the kind does not take is an error naming the file, the key and the keys it takes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from harness.rundir import load_yaml

COMMON = ("kind", "title", "seeds", "overrides")


class SpecError(ValueError):
    """A study file says something the engine cannot do; the message names the file, the key and the fix."""


@dataclass
class StudyFile:
    path: Path
    data: dict

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def kind(self) -> str:
        return self.data["kind"]

    @property
    def title(self) -> str:
        return str(self.data.get("title") or self.folder.name)

    @property
    def seeds(self) -> list[int]:
        return list(self.data.get("seeds") or [0])

    @property
    def overrides(self) -> list[str]:
        return [str(o) for o in self.data.get("overrides") or []]

    def error(self, key: str, problem: str) -> SpecError:
        return SpecError(f"{self.path}: {key}: {problem}")


def load(path: Path, kinds: dict[str, tuple[str, ...]]) -> StudyFile:
    """Read a study file; `kinds` maps each kind to the keys it takes beyond COMMON."""
    path = Path(path).resolve()
    if not path.is_file():
        raise SpecError(f"{path}: no such study file (results/<study>/study.yaml)")
    data = load_yaml(path)
    kind = data.get("kind")
    if kind not in kinds:
        raise SpecError(f"{path}: kind {kind!r}: choose one of {', '.join(kinds)}")
    sf = StudyFile(path, data)
    check_keys(sf, data, (*COMMON, *kinds[kind]), "")
    seeds = data.get("seeds", [0])
    if not (
        isinstance(seeds, list)
        and seeds
        and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        and len(set(seeds)) == len(seeds)
    ):
        raise sf.error("seeds", f"{seeds!r}: give a list of distinct whole numbers, e.g. [0, 1, 2]")
    overrides = data.get("overrides") or []
    if not isinstance(overrides, list):
        raise sf.error("overrides", f"{overrides!r}: give a list of Hydra overrides, e.g. [train.steps=300]")
    return sf


def check_keys(sf: StudyFile, node, allowed, where: str) -> None:
    """Every key of the mapping `node` is one of `allowed`, else a SpecError with a suggestion."""
    if not isinstance(node, dict):
        raise sf.error(where or "(top level)", f"{node!r} must be a mapping")
    for key in node:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise sf.error(f"{where}{key}", f"not a key here{hint}; the keys are {', '.join(allowed)}")


def number(sf: StudyFile, key: str, value) -> float:
    """A positive number, also written as a fraction like 1/3."""
    try:
        if isinstance(value, str) and "/" in value:
            a, b = value.split("/", 1)
            out = float(a) / float(b)
        else:
            out = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise sf.error(key, f"{value!r} is not a number or a fraction like 1/3") from None
    if not out > 0:
        raise sf.error(key, f"{value!r} must be positive")
    return out
