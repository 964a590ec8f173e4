"""The proxy study's plan and run state (scripts/proxy_study.py is its command): the variants and their
names, the phases (learning-rate grid, its widening, seeds, the β/q alternatives) planned from what has
finished, and the state of each run directory (done, diverged, to resume or to start).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

from harness import rundir
from optim import TWO_PASS_SOURCES
from scripts import make_figures as mf
from scripts import sweep

REPO = Path(__file__).resolve().parents[1]

EXPERIMENTS = {"large": "proxy", "small": "proxy_small"}
# the study's choice: every optimizer of the five figures (configs/optimizer/*.yaml but adamw) and the three
# Gluon-MVR-3 readings, plus the small-batch pair of Fig. 2; each name is checked against its yaml
VARIANT_IDS = ("muon", "muon_mvr1", "muon_mvr2", "muon_mvr3", "gluon", "gluon_mvr1", "gluon_mvr2",
               "gluon_mvr3", "gluon_mvr3_b", "gluon_mvr3_c", "gluon@small", "gluon_mvr1@small")
LR_FACTORS = (1 / 3, 1.0, 3.0, 10.0)
EXTEND_LOW, EXTEND_HIGH = 0.1, 30.0
SEEDS = (0, 1, 2)
# The MVR estimators' one alternative setting (config key, value), tried at the best lr. MuonMVR: β 0.95 ->
# 0.9 (shorter memory). Gluon-MVR-1 (STORM): β 0.9 -> 0.95 (longer memory, the correction's weight grows
# with β). Gluon-MVR-2/3: q 0.5 -> 0.1 (G_t = g_t + (1-q)(G_{t-1} - h_t): more variance reduction; q = 1
# would be Gluon's plain momentum).
ALTERNATIVES = {
    "muon_mvr1": ("momentum", 0.9), "muon_mvr2": ("momentum", 0.9), "muon_mvr3": ("momentum", 0.9),
    "gluon_mvr1": ("beta", 0.95), "gluon_mvr2": ("q", 0.1), "gluon_mvr3": ("q", 0.1),
    "gluon_mvr3_b": ("q", 0.1), "gluon_mvr3_c": ("q", 0.1),
}
# The figures, from the paper-figure experiments (their optimizers and title), plus the three readings of
# Gluon-MVR-3 side by side.
FIGURES = ("fig1", "fig2", "fig3", "fig4", "muon_mvr")
READINGS = mf.FigureSpec("gluon_mvr3_readings", "Gluon vs the three readings of Gluon-MVR-3, B=512",
                         ["gluon", "gluon_mvr3", "gluon_mvr3_b", "gluon_mvr3_c"], 512)


class StudyError(RuntimeError):
    """The study cannot go on as asked; the message names the run, file or option and the fix."""


# ----------------------------------------------------------------------------- naming
def fmt_lr(lr: float) -> str:
    """An lr in the run names and tables, always as mantissa and exponent: 3.6e-4, 1e-3, 1.08e-3, 3e-2."""
    mant, exp = f"{lr:.2e}".split("e")
    return f"{mant.rstrip('0').rstrip('.')}e{int(exp)}"


def fmt_num(x: float) -> str:
    """A β or q setting: 0.95, 0.1 (3 significant digits)."""
    return f"{x:.3g}"


def fmt_factor(f: float) -> str:
    """x1/3, x1, x3, x10, x1/10."""
    if f < 1:
        inv = 1 / f
        return f"×1/{inv:.0f}" if abs(inv - round(inv)) < 1e-3 else f"×{f:.3g}"
    return f"×{f:.3g}"


def lr_value(paper: float, factor: float) -> float:
    """The grid's lr: paper x factor to 3 significant digits (3.6e-4 / 3 = 1.2e-4)."""
    return float(f"{paper * factor:.3g}")


@functools.cache
def study_labels() -> dict[str, str]:
    """How the study's figures and tables name the default variants' optimizers (read once): the configs'
    labels, the Gluon-MVR-3 readings all lettered since the study compares them."""
    return mf.figure_labels(sorted({v.split("@")[0] for v in VARIANT_IDS}))


@dataclass(frozen=True)
class Variant:
    optimizer: str
    role: str  # large | small
    batch: int  # global batch in sequences

    @property
    def id(self) -> str:
        return self.optimizer if self.role == "large" else f"{self.optimizer}@{self.role}"

    @property
    def experiment(self) -> str:
        return EXPERIMENTS[self.role]

    @property
    def label(self) -> str:
        """The config's label, lettered where the study compares readings ("Gluon-MVR-3 (A)")."""
        return study_labels().get(self.optimizer) or rundir.optimizer_label(self.optimizer)

    @property
    def family(self) -> str:
        return str(rundir.optimizer_config(self.optimizer).get("family"))

    @property
    def baseline(self) -> str:
        """The figure's baseline: Gluon for the Gluon family, Muon for the Muon family."""
        return "gluon" if self.family == "gluon" else "muon"

    @property
    def paper_lr(self) -> float:
        return float(rundir.optimizer_config(self.optimizer)["lr"])

    @property
    def passes(self) -> int:
        ref = rundir.optimizer_config(self.optimizer).get("reference", "none")
        return 2 if ref in TWO_PASS_SOURCES else 1

    def default(self, key: str):
        cfg = rundir.optimizer_config(self.optimizer)
        if key not in cfg:
            raise StudyError(f"configs/optimizer/{self.optimizer}.yaml has no key {key!r}, which the study's "
                             f"alternative for {self.id} changes; fix ALTERNATIVES in scripts/proxy_study.py")
        return cfg[key]


@dataclass(frozen=True)
class Spec:
    """One planned run."""
    variant: Variant
    lr: float
    seed: int
    alt: tuple[str, float] | None = None  # (optimizer key, value) of the alternative setting
    phase: str = ""  # what asked for it (not part of its identity)

    @property
    def key(self) -> tuple:
        return (self.variant, self.lr, self.seed, self.alt)

    @property
    def name(self) -> str:
        v = self.variant
        base = rundir.run_name(v.optimizer, v.batch, self.seed)  # <opt>_b<B>_s<seed>
        head, seed = base.rsplit("_s", 1)
        tag = f"_{self.alt[0]}{fmt_num(self.alt[1])}" if self.alt else ""
        return f"{head}_lr{fmt_lr(self.lr)}_s{seed}{tag}"

    def setting(self) -> str:
        return f"lr {fmt_lr(self.lr)}" + (f", {self.alt[0]} {fmt_num(self.alt[1])}" if self.alt else "")


def parse_variants(ids, large: int, small: int) -> list[Variant]:
    out = []
    for vid in ids:
        opt, _, role = vid.partition("@")
        role = role or "large"
        if role not in EXPERIMENTS:
            raise StudyError(f"--variants {vid!r}: the batch role after '@' must be 'small' (or nothing for "
                             f"the large batch), e.g. gluon_mvr1@small")
        rundir.optimizer_config(opt)  # ValueError naming the choices for an unknown optimizer
        out.append(Variant(opt, role, large if role == "large" else small))
    return out


# ----------------------------------------------------------------------------- the plan
@dataclass
class Choice:
    """What phase 1 (and 3) chose for a variant, once known."""
    grid: list[float]  # the lrs of the grid at seed 0, the extension included once planned
    best_lr: float | None = None
    extension: float | None = None
    alt_won: bool | None = None  # None: no alternative, or not yet known


@dataclass
class Plan:
    specs: list[Spec] = field(default_factory=list)
    choices: dict[Variant, Choice] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # what waits for runs still to finish

    def add(self, spec: Spec) -> None:
        if all(s.key != spec.key for s in self.specs):
            self.specs.append(spec)

    @property
    def complete(self) -> bool:
        return not self.pending


def argmin_lr(vals: dict[float, float], paper: float) -> float:
    """The lr of the lowest loss; a tie goes to the lr nearer the paper's (in log scale)."""
    return min(vals, key=lambda lr: (vals[lr], abs(math.log(lr / paper))))


def make_plan(variants: list[Variant], outcome, factors=LR_FACTORS, seeds=SEEDS,
              extend=(EXTEND_LOW, EXTEND_HIGH), alternatives=ALTERNATIVES) -> Plan:
    """Every run that can be planned now. `outcome(spec)` is the run's final validation loss (inf if it
    diverged) or None while it has not finished."""
    if not seeds:
        raise StudyError("--seeds is empty; give at least one seed (the grid runs at the first)")
    s0 = seeds[0]
    plan = Plan()
    for v in variants:
        paper = v.paper_lr
        grid = sorted({lr_value(paper, f) for f in factors})
        plan.choices[v] = choice = Choice(grid=list(grid))
        for lr in grid:
            plan.add(Spec(v, lr, s0, None, "1 grid"))
        if lr_value(paper, 1.0) in grid:
            for s in seeds[1:]:
                plan.add(Spec(v, lr_value(paper, 1.0), s, None, "1 paper lr"))
        vals = {lr: outcome(Spec(v, lr, s0)) for lr in grid}
        waiting = [lr for lr, x in vals.items() if x is None]
        if waiting:
            plan.pending.append(f"{v.id}: best lr, after {len(waiting)} grid run(s) at seed {s0}")
            continue
        best = argmin_lr(vals, paper)
        ext = None
        if extend and len(grid) > 1 and math.isfinite(vals[best]) and best in (grid[0], grid[-1]):
            ext = lr_value(paper, extend[0] if best == grid[0] else extend[1])
            choice.extension = ext
            choice.grid = sorted(grid + [ext])
            plan.add(Spec(v, ext, s0, None, "1b grid edge"))
            vals[ext] = outcome(Spec(v, ext, s0))
            if vals[ext] is None:
                plan.pending.append(f"{v.id}: best lr, after the run beyond the grid's edge ({fmt_lr(ext)})")
                continue
            best = argmin_lr(vals, paper)
        if not math.isfinite(vals[best]):
            plan.pending.append(f"{v.id}: every lr of the grid diverged; widen --lr-factors below them")
            continue
        choice.best_lr = best
        for s in seeds[1:]:
            plan.add(Spec(v, best, s, None, "2 best lr"))
        if v.optimizer not in alternatives:
            continue
        key, value = alternatives[v.optimizer]
        if float(v.default(key)) == float(value):
            raise StudyError(f"the alternative {key}={value} of {v.optimizer} is its config's own value; "
                             f"choose another in ALTERNATIVES")
        alt = (key, float(value))
        plan.add(Spec(v, best, s0, alt, "3 alternative"))
        a = outcome(Spec(v, best, s0, alt))
        if a is None:
            plan.pending.append(f"{v.id}: whether {key} {fmt_num(value)} beats {key} "
                                f"{fmt_num(v.default(key))}")
            continue
        choice.alt_won = a < vals[best]
        if choice.alt_won:
            for s in seeds[1:]:
                plan.add(Spec(v, best, s, alt, "3b alternative seeds"))
    return plan


# ----------------------------------------------------------------------------- run state
def diverged(run_dir: Path) -> dict | None:
    """{"reason": ...} for a run that stopped on a non-finite value (its summary.json says so), else None."""
    try:
        reason = rundir.diverged(run_dir)
    except ValueError as e:  # an unreadable summary.json
        return {"reason": str(e)}
    return None if reason is None else {"reason": reason}


def read_outcome(results: Path, steps: int | None):
    """outcome(spec) for make_plan from the run directories under `results`."""
    cache: dict[str, float | None] = {}

    def outcome(spec: Spec) -> float | None:
        if spec.name not in cache:
            d = results / spec.name
            if diverged(d) is not None:
                cache[spec.name] = math.inf
            elif rundir.completion(d, steps)[0]:
                cache[spec.name] = float(rundir.last_record(d)["val_loss"])
            else:
                cache[spec.name] = None
        return cache[spec.name]

    return outcome


class Runs:
    """Turns specs into scripts/sweep.py runs (composed exactly as train.py will see them), cached."""

    def __init__(self, results: Path, extra: list[str], batches: dict[str, int]):
        self.results, self.extra, self.batches = results, list(extra), batches
        self._composer = None
        self._cache: dict[tuple, sweep.Run] = {}

    def overrides(self, spec: Spec) -> list[str]:
        v = spec.variant
        ov = [f"experiment={v.experiment}", f"optimizer={v.optimizer}", f"seed={spec.seed}",
              f"optimizer.lr={spec.lr!r}"]
        if spec.alt:
            ov.append(f"optimizer.{spec.alt[0]}={spec.alt[1]!r}")
        ov += [f"batch.global_seqs={v.batch}", f"batch.name=b{v.batch}", *self.extra]
        return ov

    def run(self, spec: Spec) -> sweep.Run:
        if spec.key not in self._cache:
            if self._composer is None:
                self._composer = sweep.Composer()
            ov = self.overrides(spec)
            try:
                cfg = self._composer(ov)
            except Exception as e:  # Hydra's errors name the key; add the run
                raise StudyError(f"{spec.name}: the overrides {' '.join(ov)} do not compose: {e}") from None
            run_dir = self.results / spec.name
            ov.append(f"run_dir={sweep.display_path(run_dir)}")
            cfg["run_dir"] = sweep.display_path(run_dir)
            self._cache[spec.key] = sweep.Run(
                run_dir=run_dir, optimizer=spec.variant.optimizer, global_seqs=spec.variant.batch,
                seed=spec.seed, steps=int(cfg["train"]["steps"]), experiments=[spec.setting(), spec.phase],
                overrides=ov, config=cfg)
        run = self._cache[spec.key]
        run.experiments = [spec.setting(), spec.phase]
        return run

    def close(self) -> None:
        if self._composer is not None:
            self._composer.close()
            self._composer = None


def steps_of(runs: Runs) -> int:
    """train.steps of the study (the same for every run: the experiments share it, and so do the extras)."""
    probe = Spec(Variant("gluon", "large", runs.batches["large"]), 1e-3, 0)
    return runs.run(probe).steps


def classify(run: sweep.Run) -> None:
    """sweep.classify, plus `diverged` for a run recorded as diverged."""
    info = diverged(run.run_dir)
    if info is not None:
        run.status, run.detail = "diverged", info.get("reason", "")
        return
    sweep.classify(run)


def mark_diverged(run: sweep.Run, say) -> bool:
    """True for a failed run that stopped on a non-finite value (its summary.json says so): its
    checkpoints go, and it counts as an infinite loss."""
    info = diverged(run.run_dir)
    if info is None:
        return False
    sweep.drop_ckpt(run, say)
    where = f"{sweep.display_path(run.run_dir)}/{rundir.SUMMARY}"
    say(f"diverged [{run.index}] {run.label}: {info['reason']} (recorded in {where}; it counts as an "
        "infinite loss)")
    return True


def tidy(run: sweep.Run) -> None:
    """A completed run keeps config.yaml, metrics.jsonl, summary.json and train.log: the launcher's copy of
    the log and the checkpoints go."""
    sweep.drop_ckpt(run, lambda msg: None)
    log = run.run_dir / "launcher.out"
    if log.exists():
        log.unlink()
