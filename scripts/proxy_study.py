"""The tuned CPU proxy study: every optimizer of the papers' five figures, each at its own best learning rate
(and β/q), three seeds, on a GPT whose hidden matrices hold most of the parameters. One command:

    python scripts/proxy_study.py --results results/proxy --parallel 2       # 107 runs: 65 min on 2 cores
    python scripts/proxy_study.py --dry-run                                  # what is done, what is next
    python scripts/proxy_study.py --report-only                              # tables and figures only

Setting (configs/experiment/proxy.yaml, proxy_small.yaml): model=proxy (4 layers, d_model 128, 0.82M
parameters, 96% in hidden matrices; GPT-124M has 69%), data=shakespeare_bytes (make it with
``python -m data.shakespeare --tokenizer bytes``), 150 steps of 16 x 128 bytes (the papers' B=512) or
4 x 128 (B=128, the Gluon-MVR paper's Fig. 2), Gluon's sign-LMO radius rescaled to d_model 128
(optimizer.embed_scale=500, the paper's per-entry move).

Variants: muon, muon_mvr1/2/3, gluon, gluon_mvr1/2/3 (reading A), gluon_mvr3_b, gluon_mvr3_c at the large
batch; gluon and gluon_mvr1 also at the small batch (``name@small`` on the command line). The phases:

    1   a learning-rate grid at seed 0: the paper's lr (configs/optimizer/<name>.yaml: Muon family 3e-3,
        Gluon family 3.6e-4) times --lr-factors (1/3 1 3 10); and seeds 1, 2 at the paper's lr
    1b  when the best lr of the grid is its smallest or largest, one more value beyond that edge
        (--extend-low 1/10, --extend-high 30 times the paper's lr)
    2   seeds 1, 2 at each variant's best lr (best: the lowest final validation loss at seed 0)
    3   the MVR estimators: one alternative β or q at the best lr, seed 0 (ALTERNATIVES); if it beats the
        default at seed 0, seeds 1 and 2 of it too (3b)

A phase is planned as soon as what it depends on has finished, and the loop runs until nothing is left,
at most --parallel runs at a time (scripts/sweep.py's launcher, one thread per run, niced by --nice).
Completed runs (rundir.completion) are skipped, so an interrupted study resumes where it stopped. A run
whose loss, parameters or optimizer state became non-finite is diverged (train.py records it in its
summary.json: status "diverged", harness/rundir.py) and counts as an infinite loss; any other failure
stops the study, naming the run and its log.

Run directories, each a normal train.py run directory (config.yaml, metrics.jsonl, summary.json, train.log;
ckpt/ is deleted once the run is complete, and the launcher's copy of the log with it):

    <results>/<optimizer>_b<B>_lr<lr>_s<seed>[_<key><value>]    e.g. gluon_mvr1_b16_lr3.6e-4_s0_beta0.95

Outputs in <results>: tables.md (at the papers' hyperparameters; each at its best; the lr grid; the β/q
table; the timing; a paragraph of what the runs show, generated from the numbers), summary.csv (one row per
run), figures/<figure>.png and .pdf (each paper figure with every optimizer at its best setting, plus
gluon_mvr3_readings with the three Gluon-MVR-3 readings, drawn by scripts/make_figures.py's plot_figure;
lr_grid.png/.pdf). Differences to a figure's baseline (Gluon for Gluon-MVR, Muon for MuonMVR, at the same
batch) are paired by seed; |Δ| < 2 x the std of the paired differences is reported as within noise.

Size overrides (for a toy run or another machine): --variants, --lr-factors, --seeds, --large-batch,
--small-batch, and Hydra overrides after ``--`` (e.g. ``-- train.steps=300``), applied to every run.
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
import os
import re
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import rundir
from optim import TWO_PASS_SOURCES
from scripts import figure_style as fs
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


# ----------------------------------------------------------------------------- results
@dataclass
class Result:
    spec: Spec
    val: float | None  # final validation loss; inf: diverged; None: missing
    status: str  # done | diverged | missing
    record: dict | None = None  # the last metrics record
    why: str = ""


def collect(plan: Plan, results: Path, steps: int | None) -> dict[tuple, Result]:
    out = {}
    for spec in plan.specs:
        d = results / spec.name
        info = diverged(d)
        if info is not None:
            out[spec.key] = Result(spec, math.inf, "diverged", rundir.last_record(d), info.get("reason", ""))
            continue
        ok, why = rundir.completion(d, steps)
        if ok:
            rec = rundir.last_record(d)
            out[spec.key] = Result(spec, float(rec["val_loss"]), "done", rec)
        else:
            out[spec.key] = Result(spec, None, "missing", None, why)
    return out


@dataclass
class Stat:
    """Final validation loss over seeds of one setting."""
    seeds: list[int]
    vals: list[float]

    @property
    def n(self) -> int:
        return len(self.vals)

    @property
    def mean(self) -> float:
        return float(np.mean(self.vals)) if self.vals else math.nan

    @property
    def std(self) -> float:
        if self.n < 2 or not all(map(math.isfinite, self.vals)):
            return math.nan
        return float(np.std(self.vals, ddof=1))

    def text(self, digits: int = 4) -> str:
        if not self.vals:
            return "n/a"
        if not all(map(math.isfinite, self.vals)):
            return f"diverged ({sum(not math.isfinite(x) for x in self.vals)} of {self.n} seeds)"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}" if self.n > 1 else f"{self.mean:.{digits}f}"


@dataclass
class Delta:
    """A variant minus its baseline, paired by seed."""
    diffs: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.diffs)) if self.diffs else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.diffs, ddof=1)) if len(self.diffs) > 1 else math.nan

    @property
    def verdict(self) -> str:
        if not self.diffs or not all(map(math.isfinite, self.diffs)):
            return "n/a"
        if len(self.diffs) < 2:
            return "one seed"
        if abs(self.mean) < 2 * self.std:
            return "within noise"
        return "lower" if self.mean < 0 else "higher"

    def text(self) -> str:
        if not self.diffs or not all(map(math.isfinite, self.diffs)):
            return "n/a"
        return f"{self.mean:+.4f} ± {self.std:.4f}" if len(self.diffs) > 1 else f"{self.mean:+.4f}"


class Study:
    """The finished study's numbers: settings, their seeds, and the comparisons."""

    def __init__(self, plan: Plan, results: dict[tuple, Result], seeds, steps: int | None = None,
                 model: str = "model", unit: str = "nats per token"):
        self.plan, self.results, self.seeds, self.steps = plan, results, list(seeds), steps
        self.model, self.unit = model, unit  # e.g. "proxy model (819,200 parameters)", "nats per byte"
        self.variants = list(plan.choices)

    def val(self, v: Variant, lr: float, seed: int, alt=None) -> float | None:
        r = self.results.get((v, lr, seed, alt))
        return None if r is None else r.val

    def stat(self, v: Variant, lr: float, alt=None) -> Stat:
        seeds, vals = [], []
        for s in self.seeds:
            x = self.val(v, lr, s, alt)
            if x is not None:
                seeds.append(s)
                vals.append(x)
        return Stat(seeds, vals)

    def paper(self, v: Variant) -> tuple[float, None]:
        return lr_value(v.paper_lr, 1.0), None

    def best(self, v: Variant) -> tuple[float, tuple | None]:
        c = self.plan.choices[v]
        alt = None
        if c.alt_won and v.optimizer in ALTERNATIVES:
            key, value = ALTERNATIVES[v.optimizer]
            alt = (key, float(value))
        return c.best_lr, alt

    def baseline(self, v: Variant) -> Variant | None:
        for b in self.variants:
            if b.optimizer == v.baseline and b.batch == v.batch and b != v:
                return b
        return None

    def delta(self, v: Variant, setting, base: Variant, base_setting) -> Delta:
        (lr, alt), (blr, balt) = setting, base_setting
        diffs = []
        for s in self.seeds:
            a, b = self.val(v, lr, s, alt), self.val(base, blr, s, balt)
            if a is not None and b is not None:
                diffs.append(a - b)
        return Delta(diffs)

    def runs_of(self, v: Variant, setting) -> list[Result]:
        lr, alt = setting
        return [self.results[(v, lr, s, alt)] for s in self.seeds if (v, lr, s, alt) in self.results]


def setting_text(v: Variant, setting) -> str:
    """'1.08e-3 (×3)', or with the alternative '1.08e-3 (×3, beta 0.95)'."""
    lr, alt = setting
    extra = f", {alt[0]} {fmt_num(alt[1])}" if alt else ""
    return f"{fmt_lr(lr)} ({fmt_factor(lr / v.paper_lr)}{extra})"


def variant_name(v: Variant) -> str:
    return f"{v.label}, B={v.batch}"


# ----------------------------------------------------------------------------- tables
def table_at(st: Study, which: str) -> list[str]:
    """'paper' or 'best': mean ± std over seeds, Δ to the figure's baseline at the same kind of setting."""
    pick = st.paper if which == "paper" else st.best
    head = ("lr" if which == "paper" else "best lr (× paper), β/q if the alternative won")
    lines = [f"| Variant | B | {head} | Final val loss (mean ± std) | Seeds | Δ vs baseline (paired, "
             f"mean ± std) | Verdict | Train time (s) |", "|---|---:|---|---:|---:|---:|---|---:|"]
    for v in st.variants:
        if pick(v)[0] is None:
            continue
        stat = st.stat(v, *pick(v))
        base = st.baseline(v)
        if base is None or pick(base)[0] is None:
            d_text, verdict = "(baseline)" if v.optimizer == v.baseline else "n/a", ""
        else:
            d = st.delta(v, pick(v), base, pick(base))
            d_text = f"{d.text()} vs {base.label}"
            verdict = d.verdict
        times = [r.record["time_s"] for r in st.runs_of(v, pick(v)) if r.record and r.status == "done"]
        t = f"{np.mean(times):.0f}" if times else "n/a"
        lines.append(f"| {v.label} | {v.batch} | {setting_text(v, pick(v))} | {stat.text()} | {stat.n} | "
                     f"{d_text} | {verdict} | {t} |")
    return lines


def table_grid(st: Study) -> list[str]:
    factors = sorted({round(lr / v.paper_lr, 6) for v in st.variants for lr in st.plan.choices[v].grid})
    lines = ["| Variant | B | paper lr | " + " | ".join(fmt_factor(f) for f in factors) + " | best lr |",
             "|---|---:|---:|" + "---:|" * len(factors) + "---:|"]
    for v in st.variants:
        c = st.plan.choices[v]
        cells = []
        for f in factors:
            lr = next((x for x in c.grid if abs(x / v.paper_lr - f) < 1e-6), None)
            x = None if lr is None else st.val(v, lr, st.seeds[0])
            if lr is None:
                cells.append("")
            elif x is None:
                cells.append("…")
            elif not math.isfinite(x):
                cells.append("diverged")
            else:
                cells.append(f"**{x:.4f}**" if lr == c.best_lr else f"{x:.4f}")
        best = "n/a" if c.best_lr is None else fmt_lr(c.best_lr)
        lines.append(f"| {v.label} | {v.batch} | {fmt_lr(v.paper_lr)} | " + " | ".join(cells)
                     + f" | {best} |")
    return lines


def table_alternatives(st: Study) -> list[str]:
    lines = ["| Variant | B | best lr | default | seed 0 | alternative | seed 0 | Δ (alt − default), "
             "seed 0 | chosen | default, all seeds | alternative, all seeds |",
             "|---|---:|---:|---|---:|---|---:|---:|---|---:|---:|"]
    for v in st.variants:
        c = st.plan.choices[v]
        if v.optimizer not in ALTERNATIVES or c.best_lr is None:
            continue
        key, value = ALTERNATIVES[v.optimizer]
        alt = (key, float(value))
        d0, a0 = st.val(v, c.best_lr, st.seeds[0]), st.val(v, c.best_lr, st.seeds[0], alt)
        fmt = lambda x: "…" if x is None else ("diverged" if not math.isfinite(x) else f"{x:.4f}")  # noqa: E731
        diff = (f"{a0 - d0:+.4f}" if None not in (a0, d0) and math.isfinite(a0) and math.isfinite(d0)
                else "n/a")
        chosen = {None: "…", True: f"{key} {fmt_num(value)}",
                  False: f"{key} {fmt_num(v.default(key))}"}[c.alt_won]
        both = st.stat(v, c.best_lr).text(), (st.stat(v, c.best_lr, alt).text() if c.alt_won else "—")
        lines.append(f"| {v.label} | {v.batch} | {fmt_lr(c.best_lr)} | {key} {fmt_num(v.default(key))} | "
                     f"{fmt(d0)} | {key} {fmt_num(value)} | {fmt(a0)} | {diff} | {chosen} | {both[0]} | "
                     f"{both[1]} |")
    return lines


def table_timing(st: Study) -> list[str]:
    """Median seconds per run by passes per step and batch: training (time_s), the training loop with its
    evaluations (wall_s), and per step."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for r in st.results.values():
        if r.status == "done" and r.record:
            groups.setdefault((r.spec.variant.passes, r.spec.variant.batch), []).append(r.record)
    lines = ["| Gradient passes / step | B | Runs | Train s (median) | Train s (min–max) | Loop s incl. "
             "evaluation (median) | ms / step (median) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for (passes, batch), recs in sorted(groups.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        times = [r["time_s"] for r in recs]
        w = np.median([r.get("wall_s", math.nan) for r in recs])
        ms = np.median([1000 * r["time_s"] / r["step"] for r in recs])
        lines.append(f"| {passes} | {batch} | {len(recs)} | {np.median(times):.0f} | {min(times):.0f}–"
                     f"{max(times):.0f} | {w:.0f} | {ms:.0f} |")
    return lines


def paragraph(st: Study) -> str:
    """What the runs show, generated from the numbers; a difference is called one only beyond 2 x its
    seed spread."""
    parts = []
    steps = st.steps if st.steps is not None else "?"
    name = lambda v: f"{v.label} at B={v.batch}"  # noqa: E731
    were = lambda n: "was" if n == 1 else "were"  # noqa: E731
    chosen = lambda v: st.plan.choices[v].best_lr is not None  # noqa: E731

    def comparisons(pick):
        out = {"lower": [], "higher": [], "within noise": [], "other": []}
        for v in st.variants:
            base = st.baseline(v)
            if base is None or pick(v)[0] is None or pick(base)[0] is None:
                continue
            d = st.delta(v, pick(v), base, pick(base))
            key = d.verdict if d.verdict in out else "other"
            out[key].append(f"{name(v)} {d.mean:+.3f} ± {d.std:.3f}" if key != "other" else name(v))
        return out

    def say(cmp, where):
        n = sum(len(x) for x in cmp.values())
        if n == 0:
            return (f"{where}, no variance-reduced variant could be compared: its baseline was not in the "
                    f"study.")
        s = (f"{where}, of the {n} variance-reduced variants compared with their baseline at the same batch "
             f"(paired by seed, Δ final validation loss ± the std of the {len(st.seeds)} paired differences)")
        bits = []
        if cmp["lower"]:
            bits.append(f"{len(cmp['lower'])} reached a lower loss beyond twice the seed spread ("
                        + "; ".join(cmp["lower"]) + ")")
        if cmp["higher"]:
            bits.append(f"{len(cmp['higher'])} a higher one (" + "; ".join(cmp["higher"]) + ")")
        if cmp["within noise"]:
            bits.append(f"{len(cmp['within noise'])} {were(len(cmp['within noise']))} within noise ("
                        + "; ".join(cmp["within noise"]) + ")")
        if cmp["other"]:
            bits.append(f"{len(cmp['other'])} could not be compared (" + "; ".join(cmp["other"]) + ")")
        return s + ", " + ", ".join(bits) + "."

    parts.append(say(comparisons(st.paper), f"At the papers' hyperparameters ({steps} steps)"))
    paper_lr = lambda v: lr_value(v.paper_lr, 1.0)  # noqa: E731
    moved = [f"{name(v)} {fmt_factor(st.plan.choices[v].best_lr / v.paper_lr)}"
             for v in st.variants if chosen(v) and st.plan.choices[v].best_lr != paper_lr(v)]
    stay = [name(v) for v in st.variants if st.plan.choices[v].best_lr == paper_lr(v)]
    edge = [name(v) for v in st.variants if chosen(v) and st.plan.choices[v].best_lr in
            (min(st.plan.choices[v].grid), max(st.plan.choices[v].grid))]
    s = (f"The lr grid at seed {st.seeds[0]} moved the best lr away from the paper's for {len(moved)} of "
         f"{len(st.variants)} settings ({'; '.join(moved) or 'none'})")
    s += f" and kept it for {len(stay)} ({'; '.join(stay)})" if stay else ""
    s += "." if not edge else (f"; for {'; '.join(edge)} the best lr is still at the edge of the widened "
                               f"grid, so the optimum may lie beyond it.")
    parts.append(s)
    gains = []
    for v in filter(chosen, st.variants):
        d = st.delta(v, st.best(v), v, st.paper(v))
        if d.verdict == "lower":
            gains.append(f"{name(v)} {d.mean:+.3f} ± {d.std:.3f}")
    if gains:
        parts.append("Tuning lowered the loss beyond noise (same variant, best against paper setting, "
                     "paired) for " + "; ".join(gains) + ".")
    parts.append(say(comparisons(st.best), "Each at its best (baselines tuned too)"))
    won = [v for v in st.variants if st.plan.choices[v].alt_won]
    tried = [v for v in st.variants if st.plan.choices[v].alt_won is not None]
    if tried:
        alt = lambda v: f"{ALTERNATIVES[v.optimizer][0]} {fmt_num(ALTERNATIVES[v.optimizer][1])}"  # noqa: E731
        s = (f"The alternative β/q beat the paper's at seed {st.seeds[0]} for {len(won)} of {len(tried)} MVR "
             f"settings" + (" (" + "; ".join(f"{name(v)}, {alt(v)}" for v in won) + ")" if won else ""))
        kept = []
        for v in won:
            base = st.baseline(v)
            if base is not None and chosen(base):
                d = st.delta(v, (st.plan.choices[v].best_lr, None), base, st.best(base))
                kept.append(f"{name(v)} {d.mean:+.3f} ± {d.std:.3f} ({d.verdict})")
        if kept:
            s += ("; with the paper's β kept at the best lr, Δ to the tuned baseline is " + "; ".join(kept)
                  + ". The baselines' own momentum was not varied, so the part of the gain that comes from "
                    "the shorter or longer memory may be open to them too")
        parts.append(s + ".")
    for opt in dict.fromkeys(v.optimizer for v in st.variants):  # Fig. 2: the same comparison at two batches
        pair = sorted((v for v in st.variants if v.optimizer == opt and st.baseline(v) is not None
                       and chosen(v) and chosen(st.baseline(v))), key=lambda v: v.batch)
        if len(pair) < 2:
            continue
        small, large = pair[0], pair[-1]
        ds, dl = (st.delta(v, st.best(v), st.baseline(v), st.best(st.baseline(v))) for v in (small, large))
        if not (math.isfinite(ds.std) and math.isfinite(dl.std)):
            continue
        gap, spread = ds.mean - dl.mean, math.hypot(ds.std, dl.std)
        at = f"at B={small.batch} against {dl.mean:+.3f} ± {dl.std:.3f} at B={large.batch}"
        parts.append(f"Across batches (the Gluon-MVR paper's Figs. 1 and 2), {small.label}'s Δ to "
                     f"{st.baseline(small).label}, each at its best, is {ds.mean:+.3f} ± {ds.std:.3f} "
                     f"{at}: a difference "
                     f"of {gap:+.3f}, {'within' if abs(gap) < 2 * spread else 'beyond'} twice the combined "
                     f"spread ({spread:.3f}).")
    parts.append(f"Each best setting was chosen on seed {st.seeds[0]}, which is also one of the "
                 f"{len(st.seeds)} seeds averaged, so the tuned means lean slightly optimistic; every run is "
                 f"{steps} steps of the {st.model}, far from the papers' 5100 steps of GPT-124M.")
    return " ".join(parts)


CSV_FIELDS = ["run", "optimizer", "label", "batch_seqs", "lr", "lr_factor", "seed", "alt_key", "alt_value",
              "phase", "status", "final_val_loss", "steps", "tokens", "grad_evals", "time_s", "wall_s",
              "paper_setting", "best_setting"]


def csv_rows(st: Study) -> list[dict]:
    rows = []
    for spec in st.plan.specs:
        r = st.results[spec.key]
        v = spec.variant
        rec = r.record or {}
        rows.append(dict(
            run=spec.name, optimizer=v.optimizer, label=v.label, batch_seqs=v.batch, lr=spec.lr,
            lr_factor=round(spec.lr / v.paper_lr, 4), seed=spec.seed, alt_key=spec.alt[0] if spec.alt else "",
            alt_value=spec.alt[1] if spec.alt else "", phase=spec.phase, status=r.status,
            final_val_loss=("" if r.val is None or not math.isfinite(r.val) else round(r.val, 5)),
            steps=rec.get("step", ""), tokens=rec.get("tokens", ""), grad_evals=rec.get("grad_evals", ""),
            time_s=rec.get("time_s", ""), wall_s=rec.get("wall_s", ""),
            paper_setting=int((spec.lr, spec.alt) == st.paper(v)),
            best_setting=int((spec.lr, spec.alt) == st.best(v))))
    return rows


# ----------------------------------------------------------------------------- figures
def figure_specs(variants: list[Variant], large: int, small: int) -> list[mf.FigureSpec]:
    """The paper figures (their optimizers at the batch each selects, scaled) plus the Gluon-MVR-3 readings,
    keeping those whose optimizers the study ran (at least the baseline and one more)."""
    have = {(v.optimizer, v.batch) for v in variants}
    specs = [mf.figure_spec(name, large, small) for name in FIGURES]
    specs.append(mf.FigureSpec(READINGS.name, READINGS.title.replace("B=512", f"B={large}"),
                               list(READINGS.optimizers), large))
    out = []
    for spec in specs:
        spec.title = re.sub(r" \(alpha [^)]*\)", "", spec.title)  # the tuned settings go in the subtitle
        opts = [o for o in spec.optimizers if (o, spec.batch) in have]
        if len(opts) >= 2 and opts[0] == spec.optimizers[0]:
            spec.optimizers = opts
            out.append(spec)
    return out


def plot_figures(st: Study, results: Path, out: Path, large: int, small: int, say) -> list[Path]:
    paths = []
    by_key = {(v.optimizer, v.batch): v for v in st.variants}
    for spec in figure_specs(st.variants, large, small):
        curves, settings, cfg = [], [], None
        for opt in spec.optimizers:
            v = by_key[(opt, spec.batch)]
            setting = st.best(v)
            runs = [mf.load_run(results / r.spec.name) for r in st.runs_of(v, setting) if r.status == "done"]
            if not runs:
                say(f"figure {spec.name}: {v.id} has no finished run at its best setting; left out")
                continue
            cfg = cfg or runs[0].config
            curves.append(mf.aggregate(opt, runs))
            settings.append(f"{v.label} {setting_text(v, setting)}")
        if len(curves) < 2 or curves[0].optimizer != spec.optimizers[0]:
            continue
        n = sorted({len(c.seeds) for c in curves})
        subtitle = (f"{mf.select(cfg, 'model.name')} model, {mf.select(cfg, 'data.name')} data, "
                    f"B={spec.batch} x {mf.select(cfg, 'data.seq_len')} tokens, "
                    f"{mf.select(cfg, 'train.steps')} steps; each at its best lr (× paper): "
                    + ", ".join(settings) + f"; mean ± std over {'/'.join(map(str, n))} seeds")
        labels = {opt: by_key[(opt, spec.batch)].label for opt in spec.optimizers}
        paths += mf.plot_figure(spec, curves, subtitle, out / f"{spec.name}.png", labels)
    paths += plot_grid(st, out / "lr_grid.png")
    return paths


def plot_grid(st: Study, png: Path) -> list[Path]:
    """Final validation loss at seed 0 against lr / paper lr: one panel per family and batch, stacked in one
    column (single-column width, make_figures' fonts), each legend to the right of its panel."""
    plt = fs.pyplot()
    panels: dict[tuple[str, int], list[Variant]] = {}
    for v in st.variants:
        panels.setdefault((v.family, v.batch), []).append(v)
    keys = sorted(panels, key=lambda k: (k[0] != "muon", -k[1]))
    with plt.rc_context(fs.RC):
        fig, axes = plt.subplots(len(keys), 1, figsize=(fs.WIDTH, 0.6 + 1.9 * len(keys)),
                                 layout="constrained", squeeze=False)
        for ax, key in zip(axes[:, 0], keys):
            for v in panels[key]:
                c = st.plan.choices[v]
                pts = [(lr / v.paper_lr, st.val(v, lr, st.seeds[0])) for lr in c.grid]
                pts = [(f, x) for f, x in pts if x is not None and math.isfinite(x)]
                if not pts:
                    continue
                f, x = zip(*pts)
                ax.plot(f, x, label=v.label, **fs.style(v.optimizer))
            ax.set_xscale("log")
            ax.axvline(1.0, color="0.5", lw=0.8, ls=":")
            ax.set_ylabel("val. loss")
            fam = "Muon family" if key[0] == "muon" else "Gluon family"
            ax.set_title(f"{fam}, B={key[1]}")
            ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
        axes[-1, 0].set_xlabel("lr / paper lr")
        fig.suptitle(f"Learning-rate grid, final val. loss at seed {st.seeds[0]}\n"
                     "(paper lr: Muon family 3e-3, Gluon family 3.6e-4)")
        paths = fs.save(fig, png)
        plt.close(fig)
    return paths


# ----------------------------------------------------------------------------- report
def describe(results_dir: Path, res: dict[tuple, Result]) -> tuple[str, str]:
    """(the model as train.log names it, with its parameter count; the loss unit) from a finished run."""
    done = [r for r in res.values() if r.status == "done"]
    if not done:
        return "model", "nats per token"
    d = results_dir / done[0].spec.name
    cfg = rundir.read_config(d) or {}
    log = (d / rundir.LOG).read_text(errors="replace") if (d / rundir.LOG).exists() else ""
    m = re.search(r"^model (\S+): ([\d,]+) parameters", log, re.M)
    model = f"{m.group(1)} model ({m.group(2)} parameters)" if m else f"{mf.select(cfg, 'model.name')} model"
    unit = "nats per byte" if mf.select(cfg, "model.vocab_size") == 256 else "nats per token"
    return model, unit


def report(plan: Plan, results_dir: Path, steps: int | None, seeds, large: int, small: int, say,
           command: str = "") -> dict:
    if not plan.complete:
        raise StudyError("the study is not finished, so its tables would be partial: still to come: "
                         + "; ".join(plan.pending) + ". Run scripts/proxy_study.py without --report-only")
    res = collect(plan, results_dir, steps)
    missing = [f"  {r.spec.name}: {r.why}" for r in res.values() if r.status == "missing"]
    if missing:
        raise StudyError("runs of the study are missing or unfinished (rerun scripts/proxy_study.py to "
                         "finish them):\n" + "\n".join(missing))
    st = Study(plan, res, seeds, steps, *describe(results_dir, res))
    fig_dir = results_dir / "figures"
    figs = plot_figures(st, results_dir, fig_dir, large, small, say)
    rows = csv_rows(st)
    with open(results_dir / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    text = paragraph(st)
    md = [
        "# The tuned CPU proxy study",
        "",
        f"Generated by `{command or 'python scripts/proxy_study.py'}` (scripts/proxy_study.py; its docstring "
        f"describes the phases). {len(plan.specs)} runs, each a train.py run directory here. Final "
        f"validation loss is in {st.unit}, after {steps} steps; Δ is the variant minus its figure's "
        f"baseline (Gluon for Gluon-MVR, Muon for MuonMVR, at the same batch), paired by seed, ± the std of "
        f"the paired differences; *within noise* when |Δ| < 2 × that std.",
        "",
        "## What the runs show",
        "",
        text,
        "",
        "## At the papers' hyperparameters",
        "",
        *table_at(st, "paper"),
        "",
        "## Each at its best (lr, and β/q if the alternative won)",
        "",
        "The best lr is the lowest final validation loss of the grid at seed "
        f"{st.seeds[0]}; the baseline is at its own best.",
        "",
        *table_at(st, "best"),
        "",
        f"## Learning-rate grid (final validation loss, seed {st.seeds[0]}; bold: the best)",
        "",
        "Columns are multiples of the paper's lr (Muon family 3e-3, Gluon family 3.6e-4); ×1/10 and ×30 were "
        "run only where the best of ×1/3…×10 sat at that edge.",
        "",
        *table_grid(st),
        "",
        "## β / q (at the best lr)",
        "",
        "The alternative replaces the paper's setting when it wins at seed "
        f"{st.seeds[0]}; then it is run at every seed.",
        "",
        *table_alternatives(st),
        "",
        "## Timing (one thread per run, two runs in parallel on two cores)",
        "",
        "Wall-clock of the training steps (train.py's time_s; the loop adds the evaluations). The machine "
        "was shared with other jobs, so single runs vary (the range); the train-time columns above carry the "
        "same noise.",
        "",
        *table_timing(st),
        "",
        "## Figures",
        "",
        *[f"- `{p.relative_to(results_dir)}`" for p in figs if p.suffix == ".png"],
        "",
    ]
    (results_dir / "tables.md").write_text("\n".join(md))
    return dict(figures=figs, paragraph=text, tables=results_dir / "tables.md",
                csv=results_dir / "summary.csv", study=st)


# ----------------------------------------------------------------------------- CLI
def parse_factor(text: str) -> float:
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            value = float(a) / float(b)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a fraction like 1/3") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: an lr factor must be positive")
    return value


def parse_args(argv=None):
    argv, extra = sweep.split_passthrough(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results/proxy"),
                    help="parent of the run directories and the outputs (default results/proxy)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANT_IDS),
                    help="optimizers to study; name@small for the small batch (default: "
                         + " ".join(VARIANT_IDS) + ")")
    ap.add_argument("--lr-factors", nargs="+", type=parse_factor, default=list(LR_FACTORS),
                    help="multiples of the paper's lr in the grid (default 1/3 1 3 10)")
    ap.add_argument("--extend-low", type=parse_factor, default=EXTEND_LOW,
                    help="grid value added below when the best is the smallest (default 1/10)")
    ap.add_argument("--extend-high", type=parse_factor, default=EXTEND_HIGH,
                    help="grid value added above when the best is the largest (default 30)")
    ap.add_argument("--no-extend", action="store_true", help="never add a value beyond the grid's edges")
    ap.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS),
                    help="seeds (default 0 1 2); the grid and the β/q choice use the first")
    ap.add_argument("--large-batch", type=int, default=None,
                    help="global batch (sequences) of the large-batch runs (default: experiment proxy's, 16)")
    ap.add_argument("--small-batch", type=int, default=None,
                    help="global batch (sequences) of the @small runs (default: experiment proxy_small's, 4)")
    ap.add_argument("--parallel", type=int, default=2, help="runs at a time (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per run (default 1)")
    ap.add_argument("--nice", type=int, default=5,
                    help="niceness added to the study and its runs (default 5)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for train.py (default: this one)")
    ap.add_argument("--progress-every", type=float, default=120.0, help="seconds between progress lines")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true",
                      help="print the runs known now (done / to run) and what waits on them; run nothing")
    what.add_argument("--report-only", action="store_true",
                      help="write tables.md, summary.csv and the figures from the finished runs; run nothing")
    args = ap.parse_args(argv)
    args.extra = extra
    for name in ("parallel", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    for name in ("large_batch", "small_batch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1 sequence")
    if len(set(args.seeds)) != len(args.seeds):
        ap.error(f"--seeds {args.seeds} repeats a seed")
    clash = sorted({sweep.override_key(o) for o in extra}
                   & {"experiment", "optimizer", "seed", "run_dir", "run_name", "optimizer.lr"})
    if clash:
        ap.error(f"the study sets {clash} itself; use --variants / --seeds / --lr-factors / --results "
                 f"instead of passing them after --")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    say = lambda msg: print(f"[proxy {time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    results = (args.results if args.results.is_absolute() else Path.cwd() / args.results).resolve()
    large = args.large_batch or rundir.experiment_batch(EXPERIMENTS["large"])
    small = args.small_batch or rundir.experiment_batch(EXPERIMENTS["small"])
    try:
        variants = parse_variants(args.variants, large, small)
    except (StudyError, ValueError) as e:
        print(f"error: --variants: {e}", file=sys.stderr)
        return 2
    extend = None if args.no_extend else (args.extend_low, args.extend_high)
    runs = Runs(results, args.extra, {"large": large, "small": small})
    argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "scripts/proxy_study.py", *[a for a in argv if a != "--report-only"]])
    try:
        steps = steps_of(runs)

        def current() -> Plan:
            return make_plan(variants, read_outcome(results, steps), args.lr_factors, args.seeds, extend)

        if args.dry_run:
            plan = current()
            known = [runs.run(s) for s in plan.specs]
            for i, run in enumerate(known):
                run.index = i
                classify(run)
            counts = {k: sum(r.status == k for r in known) for k in ("done", "diverged", "resume", "new")}
            say(f"{len(known)} runs known now ({counts['done']} done, {counts['diverged']} diverged, "
                f"{counts['resume']} to resume, {counts['new']} new) under {sweep.display_path(results)}; "
                f"{len(plan.pending)} decision(s) wait on them")
            for run in known:
                note = f" ({run.detail})" if run.detail else ""
                print(f"[{run.index}] {run.status:<8} {run.label} -> {sweep.display_path(run.run_dir)}{note}")
                if run.status in ("new", "resume"):
                    print("    " + sweep.shell_command(run, 1, args.python))
            for p in plan.pending:
                print(f"waiting: {p}")
            return 0
        if not args.report_only:
            if args.nice:
                os.nice(args.nice)  # inherited by every train.py the launcher starts
            signal.signal(signal.SIGTERM, sweep._raise_interrupt)
            t0, launched = time.time(), 0
            for _ in range(20):  # each round runs everything decidable; the phases need at most 4
                plan = current()
                known = [runs.run(s) for s in plan.specs]
                for i, run in enumerate(known):
                    run.index = i
                    classify(run)
                    if run.status == "done":
                        tidy(run)
                todo = [r for r in known if r.status in ("new", "resume")]
                if not todo:
                    break
                # the longest first (two-pass, large batch), so that the two cores finish a round together
                todo.sort(key=lambda r: -Variant(r.optimizer, "large", r.global_seqs).passes * r.global_seqs)
                say(f"round: {len(todo)} run(s) to do of {len(known)} known; waiting on them: "
                    + ("; ".join(plan.pending) or "nothing"))
                failed = sweep.execute(todo, 1, args.parallel, args.python, args.threads, [],
                                       args.progress_every, say, drop=True)
                launched += len(todo)
                hard = [r for r in failed if not mark_diverged(r, say)]
                for run in todo:
                    if run not in failed:
                        tidy(run)
                if hard:
                    raise StudyError(f"{len(hard)} run(s) failed (not by divergence): " + "; ".join(
                        f"{r.name}: see {sweep.display_path(r.run_dir)}/launcher.out" for r in hard)
                        + ". Fix the cause and rerun the same command: finished runs are kept")
            else:
                raise StudyError("the plan kept growing after 20 rounds; this is a bug in make_plan")
            say(f"all {len(plan.specs)} runs finished ({launched} run now, in {time.time() - t0:.0f} s)")
        plan = current()
        out = report(plan, results, steps, args.seeds, large, small, say, command)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume (finished runs are kept)", file=sys.stderr)
        return 130
    finally:
        runs.close()
    print(out["tables"].read_text())
    for p in [out["tables"], out["csv"], *out["figures"]]:
        say(f"wrote {sweep.display_path(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
