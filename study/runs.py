"""Finished run directories, read through harness/rundir.py, grouped into settings and averaged over seeds.

A *setting* is the runs that trained alike apart from their seed: the same resolved config once the seed
and the keys a resume may change (harness/config.py RESUME_FREE: run_dir, logging, the figure, ...) are set
aside. A setting is named by its optimizer config's ``label`` (as the run recorded it, else as
configs/optimizer/ has it, else the optimizer's name); settings that share a label get the keys they
differ in appended ("Muon (lr 0.009)").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import rundir
from harness.config import flat_config, resume_free


class RunError(RuntimeError):
    """Runs cannot be read or grouped as asked; the message names the directory and the fix."""


def select(cfg: dict, key: str):
    """cfg's value at a dotted key, None where absent."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass
class Run:
    path: Path
    config: dict
    records: list[dict]
    why_unfinished: str  # "" for a finished run (rundir.completion)

    @property
    def optimizer(self) -> str:
        return str(select(self.config, "optimizer.name"))

    @property
    def seed(self) -> int:
        return int(select(self.config, "seed"))

    @property
    def batch(self) -> int:
        return int(select(self.config, "batch.global_seqs"))

    @property
    def steps(self) -> int:
        return int(select(self.config, "train.steps"))

    @property
    def label(self) -> str:
        return str(select(self.config, "optimizer.label") or rundir.optimizer_label(self.optimizer))

    def val(self) -> dict[int, float]:
        """step -> validation loss."""
        return {int(r["step"]): float(r["val_loss"]) for r in self.records if r.get("val_loss") is not None}

    @property
    def last(self) -> dict:
        return self.records[-1] if self.records else {}

    @property
    def final(self) -> float:
        return float(self.last["val_loss"])

    @property
    def passes(self) -> int:
        """Gradient passes a step, as the trainer counted them."""
        last = self.last
        return int(round(last["grad_evals"] / last["step"])) if last.get("grad_evals") else 1


def load(path: Path) -> Run:
    path = Path(path)
    cfg = rundir.read_config(path)
    if cfg is None:
        raise RunError(
            f"{path} has no {rundir.CONFIG}: which optimizer, batch and seed is it? Restore its "
            "config or leave it out"
        )
    try:
        records = rundir.read_metrics(path)
        steps = select(cfg, "train.steps")
        _, why = rundir.completion(path, int(steps) if steps is not None else None)
    except (ValueError, TypeError) as e:
        raise RunError(f"{path}: {e}") from None
    return Run(path, cfg, records, why)


def find(paths: list[Path]) -> list[Run]:
    """Every run directory (a folder holding metrics.jsonl) at or under the given paths, sorted."""
    found = []
    for p in map(Path, paths):
        if not p.exists():
            raise RunError(f"{p} does not exist")
        found += sorted(m.parent for m in p.rglob(rundir.METRICS))
    if not found:
        raise RunError(f"no run under {', '.join(map(str, paths))} (no {rundir.METRICS} found)")
    return [load(d) for d in dict.fromkeys(found)]


def identity(run: Run) -> dict:
    """What makes a run's setting: its flat config without the seed and the resume-free keys."""
    return {k: v for k, v in flat_config(run.config).items() if k != "seed" and not resume_free(k)}


@dataclass
class Setting:
    label: str
    runs: list[Run]  # one per seed, by seed

    @property
    def optimizer(self) -> str:
        return self.runs[0].optimizer

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def finals(self) -> dict[int, float]:
        return {r.seed: r.final for r in self.runs}


def settings(runs: list[Run]) -> list[Setting]:
    """Runs grouped into settings, in the order their first run comes; two runs of one setting and seed are
    an error naming both."""
    groups: list[tuple[dict, list[Run]]] = []
    for run in runs:
        key = identity(run)
        for k, members in groups:
            if k == key:
                twin = next((m for m in members if m.seed == run.seed), None)
                if twin is not None:
                    raise RunError(
                        f"{twin.path} and {run.path} are the same setting and seed {run.seed}; "
                        "keep one of them"
                    )
                members.append(run)
                break
        else:
            groups.append((key, [run]))
    labels = [members[0].label for _, members in groups]
    out = []
    for i, (key, members) in enumerate(groups):
        twins = [groups[j][0] for j in range(len(groups)) if labels[j] == labels[i] and j != i]
        differ = [k for k in key if any(t.get(k) != key[k] for t in twins)]
        label = labels[i] + (
            " (" + ", ".join(f"{k.rsplit('.', 1)[-1]} {key[k]}" for k in differ[:3]) + ")" if differ else ""
        )
        out.append(Setting(label, sorted(members, key=lambda r: r.seed)))
    return out


# ----------------------------------------------------------------------------- curves
@dataclass
class Curve:
    """Validation loss of one setting on the evaluation steps all its seeds share: mean and std over seeds."""

    key: str  # what the figure styles it by (the optimizer config's name)
    label: str
    seeds: list[int]
    step: np.ndarray
    tokens: np.ndarray
    time_s: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    per_seed: np.ndarray  # one row per seed, in `seeds` order
    finals: list[dict] = field(default_factory=list)  # the last record of each seed


def curve(runs: list[Run], label: str, key: str | None = None) -> Curve:
    common = sorted(set.intersection(*[set(r.val()) for r in runs]))
    if not common:
        raise RunError(f"{label}: its seeds share no evaluation step ({[str(r.path) for r in runs]})")
    by_step = [{int(rec["step"]): rec for rec in r.records if rec.get("val_loss") is not None} for r in runs]
    val = np.array([[m[s]["val_loss"] for s in common] for m in by_step])
    tokens = np.array([[m[s]["tokens"] for s in common] for m in by_step], dtype=float)
    time_s = np.array([[m[s]["time_s"] for s in common] for m in by_step], dtype=float)
    std = val.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(common))
    return Curve(
        key or runs[0].optimizer,
        label,
        [r.seed for r in runs],
        np.array(common),
        tokens.mean(axis=0),
        time_s.mean(axis=0),
        val.mean(axis=0),
        std,
        val,
        [r.records[-1] for r in runs],
    )


@dataclass
class DeltaCurve:
    """A curve minus a baseline, paired by seed, on the evaluation steps both have."""

    key: str
    label: str
    step: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: int  # seeds paired


def delta_curve(c: Curve, base: Curve) -> DeltaCurve:
    steps = [s for s in c.step if s in set(base.step)]
    ci, bi = [list(c.step).index(s) for s in steps], [list(base.step).index(s) for s in steps]
    shared = [s for s in c.seeds if s in base.seeds]
    if shared:
        d = np.array(
            [c.per_seed[c.seeds.index(s)][ci] - base.per_seed[base.seeds.index(s)][bi] for s in shared]
        )
    else:  # no seed in common: the difference of the means
        d = (c.mean[ci] - base.mean[bi])[None, :]
    std = d.std(axis=0, ddof=1) if len(d) > 1 else np.zeros(len(steps))
    return DeltaCurve(c.key, c.label, np.array(steps), d.mean(axis=0), std, len(d))
