"""Kind `tuned`: every variant at its own best learning rate (and β/q), then at every seed. Study file keys:

    grid        seed: the seed the grid and the β/q choice run at (the rule: the best lr is the lowest final
                      validation loss at this seed; a tie goes to the lr nearer the centre, in log scale,
                      then to the tuned value nearer the middle of its values). One of `seeds`: it also
                      reports. Any other (a selection seed, e.g. 100 with seeds [0, 1, 2]): it only selects;
                      the reported seeds run only at the chosen setting and the tables average only them
                factors: multiples of the centre lr, e.g. [1/3, 1, 3, 10]
                extend: {low: 1/10, high: 30}: when the best sits at an edge of the grid, one more lr beyond
                      it (optional)
    variants    id -> experiment (required), optimizer (default: the id before '@'), lr (the grid's centre;
                default: the optimizer config's lr, the paper's), baseline (a variant id: the comparison at
                the same batch), alternative ({key: value}: one other optimizer setting tried at the best lr;
                it replaces the config's value at every seed when it wins at the grid seed), tune ({key:
                [values]} or {key: {values: [...], extend: {low: a, high: b}}}: a second axis of the grid,
                a key the optimizer config sets, every lr × every value at the grid seed; when the best
                sits at an edge of the values, one more run at the best lr with `low` or `high`; not with
                alternative), label (default: the optimizer config's label)
    figures     name -> title, variants (the first is the baseline): each drawn at its best setting

Phases, each planned as soon as what it depends on has finished: 1 the grid at the grid seed and the other
seeds at the centre lr (only for a grid seed among the seeds and a variant without tune); 1b the extension
(the lr beyond the edge at the best tuned value, the tuned value beyond the edge at the best lr: each axis
widened once); 2 the other seeds at the best setting; 3 the alternative at the grid seed; 3b its other
seeds if it won. A run that became non-finite (its summary.json says diverged) counts as
an infinite loss. Runs are named ``<optimizer>_b<B>_lr<lr>_s<seed>[_<key><value>]``.

Outputs beside the study file: tables.md (at the centre lr, each at its best, the grid, the alternatives,
the timing), summary.csv (one row per run), figures/<name>.png and figures/lr_grid.png. A study that tunes
a key or selects on an unreported seed prints each variant's tuning budget (from the plan: 'lr ×4 (+1 edge)
× momentum ×3 at seed 100: 13 runs') as a column of its tables.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import rundir
from study import launch, plots, runs, tables
from study.spec import SpecError, StudyFile, check_keys, number
from study.stats import Paired, paired
from study.tables import fmt_factor, fmt_lr, fmt_num

KEYS = ("grid", "variants", "figures")
VARIANT_KEYS = ("experiment", "optimizer", "lr", "baseline", "alternative", "tune", "label", "steps")
MANAGED = ("experiment", "optimizer", "seed", "run_dir", "run_name", "optimizer.lr")


def lr_value(centre: float, factor: float) -> float:
    """The grid's lr: centre × factor to 3 significant digits (3.6e-4 / 3 = 1.2e-4)."""
    return float(f"{centre * factor:.3g}")


@dataclass(frozen=True)
class Variant:
    id: str
    optimizer: str
    experiment: str
    batch: int
    centre: float  # the grid's centre lr
    baseline: str | None
    alternative: tuple[str, float] | None
    label: str
    tune: Tune | None = None  # a second axis of the grid: one optimizer key's values
    steps: int | None = None  # train.steps of this variant's runs (None: the experiment's)


@dataclass(frozen=True)
class Tune:
    """The grid's second axis: values of one optimizer key, and the one value beyond each edge."""

    key: str
    values: tuple[float, ...]
    extend: tuple[float, float] | None = None

    def extension(self, at: float) -> float | None:
        """The value beyond the edge `at` sits on; None inside, or when there is nothing to widen by."""
        if self.extend is None or len(self.values) < 2 or at not in (self.values[0], self.values[-1]):
            return None
        return self.extend[0] if at == self.values[0] else self.extend[1]


@dataclass(frozen=True)
class Spec:
    """One planned run."""

    variant: Variant
    lr: float
    seed: int
    alt: tuple[str, float] | None = None
    phase: str = field(default="", compare=False)

    @property
    def key(self) -> tuple:
        return (self.variant.id, self.lr, self.seed, self.alt)

    @property
    def name(self) -> str:
        v = self.variant
        tag = f"_{self.alt[0]}{fmt_num(self.alt[1])}" if self.alt else ""
        steps = f"_{v.steps}steps" if v.steps is not None else ""
        return f"{v.optimizer}{steps}_b{v.batch}_lr{fmt_lr(self.lr)}_s{self.seed}{tag}"

    def setting(self) -> str:
        return f"lr {fmt_lr(self.lr)}" + (f", {self.alt[0]} {fmt_num(self.alt[1])}" if self.alt else "")


@dataclass
class Grid:
    seed: int
    factors: list[float]
    extend: tuple[float, float] | None


def read(sf: StudyFile) -> tuple[Grid, list[Variant]]:
    """The grid and the variants of a tuned study file, checked."""
    g = sf.data.get("grid") or {}
    check_keys(sf, g, ("seed", "factors", "extend"), "grid.")
    seed = g.get("seed", sf.seeds[0])
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise sf.error("grid.seed", f"{seed!r}: give a whole number, e.g. 100 (a selection seed) or 0")
    factors = [number(sf, "grid.factors", f) for f in g.get("factors") or [1]]
    ext = g.get("extend")
    if ext is not None:
        check_keys(sf, ext, ("low", "high"), "grid.extend.")
        ext = (number(sf, "grid.extend.low", ext["low"]), number(sf, "grid.extend.high", ext["high"]))
    raw = sf.data.get("variants") or {}
    check_keys(sf, raw, list(raw), "variants.")
    variants = []
    for vid, v in raw.items():
        check_keys(sf, v, VARIANT_KEYS, f"variants.{vid}.")
        if "experiment" not in v:
            raise sf.error(f"variants.{vid}.experiment", "missing: name the experiment config it runs under")
        opt = str(v.get("optimizer") or vid.split("@")[0])
        try:
            cfg = rundir.optimizer_config(opt)
            batch = rundir.experiment_batch(v["experiment"])
        except ValueError as e:
            raise sf.error(f"variants.{vid}", str(e)) from None
        centre = v.get("lr", cfg.get("lr"))
        if centre is None:
            raise sf.error(
                f"variants.{vid}.lr", f"configs/optimizer/{opt}.yaml has no lr: state the centre lr"
            )
        alt = v.get("alternative")
        if alt is not None:
            if not (isinstance(alt, dict) and len(alt) == 1):
                raise sf.error(
                    f"variants.{vid}.alternative", f"{alt!r}: give one key and value, e.g. {{q: 0.1}}"
                )
            alt = (str(next(iter(alt))), float(next(iter(alt.values()))))
            if cfg.get(alt[0]) is not None and float(cfg[alt[0]]) == alt[1]:
                raise sf.error(f"variants.{vid}.alternative", f"{alt[0]}={alt[1]} is the config's own value")
        tune = read_tune(sf, vid, opt, cfg, v.get("tune"))
        if tune is not None and alt is not None:
            raise sf.error(
                f"variants.{vid}.tune",
                "give tune or alternative, not both (tune: the key's values on the grid)",
            )
        steps = v.get("steps")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
            raise sf.error(f"variants.{vid}.steps", f"{steps!r}: give a positive whole number of steps")
        if steps is not None and any(o.split("=")[0].lstrip("+") == "train.steps" for o in sf.overrides):
            raise sf.error(
                f"variants.{vid}.steps",
                "the study's overrides set train.steps too: set steps per variant, or in overrides only",
            )
        base = v.get("baseline")
        if base is not None and base not in raw:
            raise sf.error(f"variants.{vid}.baseline", f"{base!r} is not a variant of this study")
        variants.append(
            Variant(
                vid,
                opt,
                str(v["experiment"]),
                batch,
                float(centre),
                base,
                alt,
                str(v.get("label") or rundir.optimizer_label(opt)),
                tune,
                steps,
            )
        )
    return Grid(seed, factors, ext), variants


def read_tune(sf: StudyFile, vid: str, opt: str, cfg: dict, raw) -> Tune | None:
    """`tune: {key: [values]}` or `tune: {key: {values: [...], extend: {low: a, high: b}}}`, checked: one
    key, one the optimizer config sets (runs override it as optimizer.<key>=<value>), distinct values."""
    if raw is None:
        return None
    where = f"variants.{vid}.tune"
    if not (isinstance(raw, dict) and len(raw) == 1):
        raise sf.error(where, f"{raw!r}: give one key and its values, e.g. {{momentum: [0.85, 0.9, 0.95]}}")
    key, body = next(iter(raw.items()))
    key = str(key)
    if cfg.get(key) is None:
        set_keys = [k for k in cfg if k not in ("_target_", "label") and not isinstance(cfg[k], (dict, list))]
        raise sf.error(
            f"{where}.{key}",
            f"configs/optimizer/{opt}.yaml does not set {key!r}; tune one of the keys it sets: "
            + ", ".join(set_keys),
        )
    ext = None
    if isinstance(body, dict):
        check_keys(sf, body, ("values", "extend"), f"{where}.{key}.")
        if body.get("extend") is not None:
            e = body["extend"]
            check_keys(sf, e, ("low", "high"), f"{where}.{key}.extend.")
            ext = (
                number(sf, f"{where}.{key}.extend.low", e.get("low")),
                number(sf, f"{where}.{key}.extend.high", e.get("high")),
            )
        body = body.get("values")
    if not isinstance(body, list) or not body:
        raise sf.error(f"{where}.{key}", f"{body!r}: give a list of values, e.g. [0.85, 0.9, 0.95]")
    values = tuple(sorted(number(sf, f"{where}.{key}", x) for x in body))
    if len(set(values)) != len(values):
        raise sf.error(f"{where}.{key}", f"{body!r}: the values must be distinct")
    if ext is not None and not ext[0] < values[0] < values[-1] < ext[1]:
        raise sf.error(
            f"{where}.{key}.extend",
            f"{{low: {fmt_num(ext[0])}, high: {fmt_num(ext[1])}}} must lie below and above the values {body}",
        )
    return Tune(key, values, ext)


# ----------------------------------------------------------------------------- the plan
@dataclass
class Choice:
    grid: list[float]
    best_lr: float | None = None
    extension: float | None = None
    alt_won: bool | None = None  # None: no alternative, or not yet known
    tune_grid: list[float] = field(default_factory=list)  # the tuned key's values tried (a tune variant)
    best_tune: float | None = None
    tune_extension: float | None = None
    runs: int = 0  # the runs at the selection seed that chose the setting (grid, edges, alternative)


@dataclass
class Plan:
    specs: list[Spec] = field(default_factory=list)
    choices: dict[str, Choice] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)

    def add(self, spec: Spec) -> None:
        if all(s.key != spec.key for s in self.specs):
            self.specs.append(spec)


def argmin_lr(vals: dict[float, float], centre: float) -> float:
    """The lr of the lowest loss; a tie goes to the lr nearer the centre (in log scale)."""
    return min(vals, key=lambda lr: (vals[lr], abs(math.log(lr / centre))))


def argmin_point(vals: dict[tuple, float], centre: float, tune: Tune | None) -> tuple:
    """The (lr, tuned value) of the lowest loss; a tie goes to the lr nearer the centre (in log scale),
    then to the tuned value nearer the middle of its values."""
    mid = 0.0 if tune is None else float(np.median(tune.values))
    return min(
        vals, key=lambda p: (vals[p], abs(math.log(p[0] / centre)), 0 if p[1] is None else abs(p[1] - mid))
    )


def alt_of(v: Variant, t: float | None) -> tuple[str, float] | None:
    """The override a grid point at tuned value `t` carries (None: the config's own setting)."""
    return None if t is None else (v.tune.key, t)


def make_plan(grid: Grid, seeds: list[int], variants: list[Variant], outcome) -> Plan:
    """Every run that can be planned now. `outcome(spec)` is the run's final validation loss (inf if it
    diverged) or None while it has not finished. A selection seed among `seeds` also reports; one outside
    them only selects (phase 1 then runs no paper-lr seeds)."""
    s0, others = grid.seed, [s for s in seeds if s != grid.seed]
    plan = Plan()
    for v in variants:
        lrs = sorted({lr_value(v.centre, f) for f in grid.factors})
        ts: list = list(v.tune.values) if v.tune else [None]
        plan.choices[v.id] = choice = Choice(grid=list(lrs), tune_grid=[t for t in ts if t is not None])
        for t in ts:
            for lr in lrs:
                plan.add(Spec(v, lr, s0, alt_of(v, t), "1 grid"))
        centre = lr_value(v.centre, 1.0)
        if centre in lrs and s0 in seeds and v.tune is None:
            for s in others:
                plan.add(Spec(v, centre, s, None, "1 paper lr"))
        vals = {(lr, t): outcome(Spec(v, lr, s0, alt_of(v, t))) for t in ts for lr in lrs}
        choice.runs = len(vals)
        waiting = [p for p, x in vals.items() if x is None]
        if waiting:
            what = "best lr" if v.tune is None else f"best lr and {v.tune.key}"
            plan.pending.append(f"{v.id}: {what}, after {len(waiting)} grid run(s) at seed {s0}")
            continue
        best_lr, best_t = argmin_point(vals, v.centre, v.tune)
        edges = []
        if (
            grid.extend
            and len(lrs) > 1
            and math.isfinite(vals[best_lr, best_t])
            and best_lr in (lrs[0], lrs[-1])
        ):
            ext = lr_value(v.centre, grid.extend[0] if best_lr == lrs[0] else grid.extend[1])
            choice.extension, choice.grid = ext, sorted(lrs + [ext])
            edges.append((ext, best_t, f"the run beyond the grid's edge ({fmt_lr(ext)})"))
        if v.tune and math.isfinite(vals[best_lr, best_t]) and v.tune.extension(best_t) is not None:
            ext_t = v.tune.extension(best_t)
            choice.tune_extension, choice.tune_grid = ext_t, sorted(choice.tune_grid + [ext_t])
            edges.append((best_lr, ext_t, f"the run beyond the {v.tune.key} edge ({fmt_num(ext_t)})"))
        for lr, t, _ in edges:
            plan.add(Spec(v, lr, s0, alt_of(v, t), "1b grid edge"))
            vals[lr, t] = outcome(Spec(v, lr, s0, alt_of(v, t)))
        choice.runs = len(vals)
        waiting = [what for lr, t, what in edges if vals[lr, t] is None]
        if waiting:
            plan.pending.append(f"{v.id}: best lr, after " + " and ".join(waiting))
            continue
        best_lr, best_t = argmin_point(vals, v.centre, v.tune)
        if not math.isfinite(vals[best_lr, best_t]):
            plan.pending.append(f"{v.id}: every lr of the grid diverged; widen grid.factors below them")
            continue
        choice.best_lr, choice.best_tune = best_lr, best_t
        for s in others:
            plan.add(Spec(v, best_lr, s, alt_of(v, best_t), "2 best lr"))
        if v.alternative is None:
            continue
        choice.runs += 1
        plan.add(Spec(v, best_lr, s0, v.alternative, "3 alternative"))
        a = outcome(Spec(v, best_lr, s0, v.alternative))
        if a is None:
            plan.pending.append(f"{v.id}: whether {v.alternative[0]} {fmt_num(v.alternative[1])} wins")
            continue
        choice.alt_won = a < vals[best_lr, None]
        if choice.alt_won:
            for s in others:
                plan.add(Spec(v, best_lr, s, v.alternative, "3b alternative seeds"))
    return plan


def budget(v: Variant, grid: Grid, choice: Choice) -> str:
    """The tuning budget a variant got, from its plan, e.g.
    'lr ×4 (+1 edge) × momentum ×3 at seed 100: 13 runs'."""
    n_lr = len({lr_value(v.centre, f) for f in grid.factors})
    text = f"lr ×{n_lr}" + (" (+1 edge)" if choice.extension is not None else "")
    if v.tune is not None:
        text += f" × {v.tune.key} ×{len(v.tune.values)}" + (
            " (+1 edge)" if choice.tune_extension is not None else ""
        )
    if v.alternative is not None:
        text += f", then {v.alternative[0]} {fmt_num(v.alternative[1])} at the best lr"
    return f"{text} at seed {grid.seed}: {choice.runs} runs"


def read_outcome(folder: Path):
    """outcome(spec) for make_plan from the run directories in `folder`."""
    cache: dict[str, float | None] = {}

    def outcome(spec: Spec) -> float | None:
        if spec.name not in cache:
            d = folder / spec.name
            if launch_diverged(d):
                cache[spec.name] = math.inf
            elif rundir.completion(d)[0]:
                cache[spec.name] = float(rundir.last_record(d)["val_loss"])
            else:
                cache[spec.name] = None
        return cache[spec.name]

    return outcome


def launch_diverged(run_dir: Path) -> bool:
    try:
        return rundir.diverged(run_dir) is not None
    except ValueError:
        return True


def plan_study(sf: StudyFile, composer) -> tuple[list[launch.Run], list[str]]:
    """The runs known now, composed for the launcher, and what waits on them."""
    grid, variants = read(sf)
    clash = sorted({launch.override_key(o) for o in sf.overrides} & set(MANAGED))
    if clash:
        raise SpecError(f"{sf.path}: overrides: the study sets {clash} itself")
    plan = make_plan(grid, sf.seeds, variants, read_outcome(sf.folder))
    out = []
    for spec in plan.specs:
        v = spec.variant
        ov = [
            f"experiment={v.experiment}",
            f"optimizer={v.optimizer}",
            f"seed={spec.seed}",
            f"optimizer.lr={spec.lr!r}",
        ]
        if spec.alt:
            ov.append(f"optimizer.{spec.alt[0]}={spec.alt[1]!r}")
        ov += [f"batch.global_seqs={v.batch}", f"batch.name=b{v.batch}", *sf.overrides]
        if v.steps is not None:
            ov.append(f"train.steps={v.steps}")
        run_dir = sf.folder / spec.name
        cfg = composer(ov)
        cfg["run_dir"] = launch.display_path(run_dir)
        out.append(
            launch.Run(
                run_dir,
                [*ov, f"run_dir={cfg['run_dir']}"],
                int(cfg["train"]["steps"]),
                cfg,
                f"{v.id} seed={spec.seed} ({spec.setting()}, phase {spec.phase})",
            )
        )
    return out, plan.pending


# ----------------------------------------------------------------------------- the numbers
class Results:
    """The finished study: every planned run's outcome and last record, and the comparisons."""

    def __init__(self, grid: Grid, seeds: list[int], variants: list[Variant], plan: Plan, folder: Path):
        self.grid, self.seeds, self.variants, self.plan, self.folder = grid, seeds, variants, plan, folder
        self.by_id = {v.id: v for v in variants}
        self.val: dict[tuple, float] = {}
        self.record: dict[tuple, dict] = {}
        self.status: dict[tuple, str] = {}
        missing = []
        for spec in plan.specs:
            d = folder / spec.name
            if launch_diverged(d):
                self.val[spec.key], self.status[spec.key] = math.inf, "diverged"
                self.record[spec.key] = rundir.last_record(d) or {}
                continue
            ok, why = rundir.completion(d)
            if not ok:
                missing.append(f"  {spec.name}: {why}")
                continue
            rec = rundir.last_record(d)
            self.val[spec.key], self.record[spec.key], self.status[spec.key] = (
                float(rec["val_loss"]),
                rec,
                "done",
            )
        if plan.pending or missing:
            raise runs.RunError(
                f"the study in {folder} is not finished: "
                + "; ".join(plan.pending)
                + ("\n" + "\n".join(missing) if missing else "")
                + "\nRun it (python scripts/run_study.py <study.yaml>) to finish it"
            )

    def centre(self, v: Variant) -> tuple[float | None, None]:
        """The paper's setting at the reported seeds: planned only when the grid seed is one of them and
        the variant tunes no second key (else (None, None): not in the table)."""
        if self.grid.seed not in self.seeds or v.tune is not None:
            return None, None
        return lr_value(v.centre, 1.0), None

    def best(self, v: Variant) -> tuple[float | None, tuple | None]:
        c = self.plan.choices[v.id]
        if v.tune is not None:
            return c.best_lr, alt_of(v, c.best_tune)
        return c.best_lr, (v.alternative if c.alt_won else None)

    @property
    def budgeted(self) -> bool:
        """Whether the tables carry each variant's tuning budget: a study that tunes a second key or
        selects on a seed it does not report (the earlier studies' tables stay as they were)."""
        return self.grid.seed not in self.seeds or any(v.tune for v in self.variants)

    def budget(self, v: Variant) -> str:
        return budget(v, self.grid, self.plan.choices[v.id])

    def finals(self, v: Variant, setting) -> dict[int, float]:
        lr, alt = setting
        return {s: self.val[(v.id, lr, s, alt)] for s in self.seeds if (v.id, lr, s, alt) in self.val}

    def delta(self, v: Variant, setting, base: Variant, base_setting) -> Paired:
        return paired(self.finals(v, setting), self.finals(base, base_setting))

    def grid_points(self, v: Variant) -> set[tuple]:
        """The (lr, tuned value) points planned at the grid seed (without the alternative)."""
        return {
            (s.lr, None if s.alt is None else s.alt[1])
            for s in self.plan.specs
            if s.variant.id == v.id and s.seed == self.grid.seed and (s.alt is None or v.tune is not None)
        }

    def spec_names(self, v: Variant, setting) -> list[str]:
        lr, alt = setting
        return [Spec(v, lr, s, alt).name for s in self.seeds if self.status.get((v.id, lr, s, alt)) == "done"]


def setting_text(v: Variant, setting) -> str:
    """'1.08e-3 (×3)', or with the alternative '1.08e-3 (×3, beta 0.95)'."""
    lr, alt = setting
    extra = f", {alt[0]} {fmt_num(alt[1])}" if alt else ""
    return f"{fmt_lr(lr)} ({fmt_factor(lr / v.centre)}{extra})"


def table_at(r: Results, pick) -> list[str]:
    head = "lr" if pick == r.centre else "best lr (× paper), β/q if the alternative won"
    if r.budgeted and pick != r.centre:
        head = "best lr (× paper), and the tuned key"
    rows = []
    for v in r.variants:
        if pick(v)[0] is None:
            continue
        finals = r.finals(v, pick(v))
        base = r.by_id.get(v.baseline) if v.baseline else None
        if base is None or pick(base)[0] is None:
            d_text, verdict = "(baseline)" if v.baseline is None else "n/a", ""
        else:
            d = r.delta(v, pick(v), base, pick(base))
            d_text, verdict = f"{tables.delta(d)} vs {base.label}", d.verdict
        lr, alt = pick(v)
        times = [
            r.record[(v.id, lr, s, alt)]["time_s"]
            for s in r.seeds
            if r.status.get((v.id, lr, s, alt)) == "done"
        ]
        rows.append(
            [
                v.label,
                v.batch,
                setting_text(v, pick(v)),
                tables.over_seeds(list(finals.values())),
                len(finals),
                d_text,
                verdict,
                f"{np.mean(times):.0f}" if times else "n/a",
                *([r.budget(v)] if r.budgeted else []),
            ]
        )
    return tables.markdown(
        [
            "Variant",
            "B",
            head,
            "Final val loss (mean ± std)",
            "Seeds",
            "Δ vs baseline (paired, mean ± std)",
            "Verdict",
            "Train time (s)",
            *(["Tuning budget"] if r.budgeted else []),
        ],
        "lrlrrrlr" + ("l" if r.budgeted else ""),
        rows,
    )


def table_grid(r: Results) -> list[str]:
    factors = sorted({round(lr / v.centre, 6) for v in r.variants for lr in r.plan.choices[v.id].grid})
    rows = []
    for v in r.variants:
        c = r.plan.choices[v.id]
        for t in c.tune_grid or [None]:
            cells = []
            for f in factors:
                lr = next((x for x in c.grid if abs(x / v.centre - f) < 1e-6), None)
                x = None if lr is None else r.val.get((v.id, lr, r.grid.seed, alt_of(v, t)))
                cells.append(
                    ""
                    if lr is None or (x is None and (lr, t) not in r.grid_points(v))
                    else "…"
                    if x is None
                    else "diverged"
                    if not math.isfinite(x)
                    else f"**{x:.4f}**"
                    if lr == c.best_lr and t == c.best_tune
                    else f"{x:.4f}"
                )
            label = v.label if t is None else f"{v.label}, {v.tune.key} {fmt_num(t)}"
            best = "n/a" if c.best_lr is None else fmt_lr(c.best_lr)
            if t is not None and c.best_tune is not None:
                best += f", {v.tune.key} {fmt_num(c.best_tune)}"
            rows.append(
                [label, v.batch, fmt_lr(v.centre), *cells, best, *([r.budget(v)] if r.budgeted else [])]
            )
    return tables.markdown(
        [
            "Variant",
            "B",
            "paper lr",
            *map(fmt_factor, factors),
            "best lr" if not r.budgeted else "best",
            *(["Tuning budget"] if r.budgeted else []),
        ],
        "lrr" + "r" * len(factors) + "r" + ("l" if r.budgeted else ""),
        rows,
    )


def default_value(r: Results, v: Variant, key: str):
    """The value the alternative replaces: as the grid-seed run at the best lr recorded it."""
    cfg = rundir.read_config(r.folder / Spec(v, r.plan.choices[v.id].best_lr, r.grid.seed).name) or {}
    value = runs.select(cfg, f"optimizer.{key}")
    return value if value is not None else rundir.optimizer_config(v.optimizer).get(key)


def table_alternatives(r: Results) -> list[str]:
    fmt = lambda x: "…" if x is None else ("diverged" if not math.isfinite(x) else f"{x:.4f}")  # noqa: E731
    rows = []
    for v in r.variants:
        c = r.plan.choices[v.id]
        if v.alternative is None or c.best_lr is None:
            continue
        (key, value), s0 = v.alternative, r.grid.seed
        d0, a0 = r.val.get((v.id, c.best_lr, s0, None)), r.val.get((v.id, c.best_lr, s0, v.alternative))
        diff = (
            f"{a0 - d0:+.4f}" if None not in (a0, d0) and math.isfinite(a0) and math.isfinite(d0) else "n/a"
        )
        default = f"{key} {fmt_num(default_value(r, v, key))}"
        chosen = {None: "…", True: f"{key} {fmt_num(value)}", False: default}[c.alt_won]
        both = (
            tables.over_seeds(list(r.finals(v, (c.best_lr, None)).values())),
            tables.over_seeds(list(r.finals(v, (c.best_lr, v.alternative)).values())) if c.alt_won else "—",
        )
        rows.append(
            [
                v.label,
                v.batch,
                fmt_lr(c.best_lr),
                default,
                fmt(d0),
                f"{key} {fmt_num(value)}",
                fmt(a0),
                diff,
                chosen,
                *both,
            ]
        )
    return tables.markdown(
        [
            "Variant",
            "B",
            "best lr",
            "default",
            "seed 0",
            "alternative",
            "seed 0",
            "Δ (alt − default), seed 0",
            "chosen",
            "default, all seeds",
            "alternative, all seeds",
        ],
        "lrrlrlrrlrr",
        rows,
    )


def table_timing(r: Results) -> list[str]:
    """Seconds per run by gradient passes a step and batch: training (time_s), the loop with its
    evaluations (wall_s), and per step."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for spec in r.plan.specs:
        rec = r.record.get(spec.key)
        if r.status.get(spec.key) == "done" and rec:
            passes = int(round(rec["grad_evals"] / rec["step"]))
            groups.setdefault((passes, spec.variant.batch), []).append(rec)
    rows = []
    for (passes, batch), recs in sorted(groups.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        times = [x["time_s"] for x in recs]
        rows.append(
            [
                passes,
                batch,
                len(recs),
                f"{np.median(times):.0f}",
                f"{min(times):.0f}–{max(times):.0f}",
                f"{np.median([x.get('wall_s', math.nan) for x in recs]):.0f}",
                f"{np.median([1000 * x['time_s'] / x['step'] for x in recs]):.0f}",
            ]
        )
    return tables.markdown(
        [
            "Gradient passes / step",
            "B",
            "Runs",
            "Train s (median)",
            "Train s (min–max)",
            "Loop s incl. evaluation (median)",
            "ms / step (median)",
        ],
        "rrrrrrr",
        rows,
    )


CSV_FIELDS = [
    "run",
    "optimizer",
    "label",
    "batch_seqs",
    "lr",
    "lr_factor",
    "seed",
    "alt_key",
    "alt_value",
    "phase",
    "status",
    "final_val_loss",
    "steps",
    "tokens",
    "grad_evals",
    "time_s",
    "wall_s",
    "paper_setting",
    "best_setting",
]


def csv_rows(r: Results) -> list[dict]:
    rows = []
    for spec in r.plan.specs:
        v, rec, val = spec.variant, r.record.get(spec.key) or {}, r.val.get(spec.key)
        rows.append(
            dict(
                run=spec.name,
                optimizer=v.optimizer,
                label=v.label,
                batch_seqs=v.batch,
                lr=spec.lr,
                lr_factor=round(spec.lr / v.centre, 4),
                seed=spec.seed,
                alt_key=spec.alt[0] if spec.alt else "",
                alt_value=spec.alt[1] if spec.alt else "",
                phase=spec.phase,
                status=r.status.get(spec.key, "missing"),
                final_val_loss="" if val is None or not math.isfinite(val) else round(val, 5),
                steps=rec.get("step", ""),
                tokens=rec.get("tokens", ""),
                grad_evals=rec.get("grad_evals", ""),
                time_s=rec.get("time_s", ""),
                wall_s=rec.get("wall_s", ""),
                paper_setting=int((spec.lr, spec.alt) == r.centre(v)),
                best_setting=int((spec.lr, spec.alt) == r.best(v)),
            )
        )
    return rows


# ----------------------------------------------------------------------------- figures and the report
def draw(sf: StudyFile, r: Results, out: Path) -> list[Path]:
    paths = []
    raw = sf.data.get("figures") or {}
    for name, fig in raw.items():
        check_keys(sf, fig, ("title", "variants"), f"figures.{name}.")
        vs = [r.by_id[i] if i in r.by_id else _unknown(sf, name, i) for i in fig.get("variants") or []]
        curves, settings, cfg = [], [], None
        for v in vs:
            found = [runs.load(r.folder / n) for n in r.spec_names(v, r.best(v))]
            if not found:
                continue
            cfg = cfg or found[0].config
            curves.append(runs.curve(found, v.label, v.optimizer))
            settings.append(f"{v.label} {setting_text(v, r.best(v))}")
        if len(curves) < 2:
            continue
        n = sorted({len(c.seeds) for c in curves})
        subtitle = (
            f"{runs.select(cfg, 'model.name')} model, {runs.select(cfg, 'data.name')} data, "
            f"B={vs[0].batch} x {runs.select(cfg, 'data.seq_len')} tokens, "
            f"{runs.select(cfg, 'train.steps')} steps; each at its best lr (× paper): "
            + ", ".join(settings)
            + f"; mean ± std over {'/'.join(map(str, n))} seeds"
        )
        paths += plots.comparison(curves, str(fig.get("title") or name), subtitle, out / f"{name}.png")
    panels: dict[tuple, list] = {}
    for v in r.variants:
        base = r.by_id.get(v.baseline) if v.baseline else v
        at = alt_of(v, r.plan.choices[v.id].best_tune) if v.tune else None
        pts = [(lr / v.centre, r.val.get((v.id, lr, r.grid.seed, at))) for lr in r.plan.choices[v.id].grid]
        line = (v.optimizer, v.label, [(f, x) for f, x in pts if x is not None and math.isfinite(x)])
        panels.setdefault((base.label, v.batch), []).append(line)
    paths += plots.lr_grid(
        [(f"{b} and its variants, B={batch}", lines) for (b, batch), lines in panels.items()],
        f"Learning-rate grid, final val. loss at seed {r.grid.seed}",
        out / "lr_grid.png",
    )
    return paths


def _unknown(sf: StudyFile, name: str, vid: str):
    raise sf.error(f"figures.{name}.variants", f"{vid!r} is not a variant of this study")


def results_of(sf: StudyFile) -> Results:
    grid, variants = read(sf)
    return Results(
        grid, sf.seeds, variants, make_plan(grid, sf.seeds, variants, read_outcome(sf.folder)), sf.folder
    )


def report_study(sf: StudyFile, out: Path | None = None, allow_incomplete: bool = False) -> dict:
    """tables.md, summary.csv and figures/ in `out` (default: beside the study file)."""
    out = out or sf.folder
    r = results_of(sf)
    out.mkdir(parents=True, exist_ok=True)
    figs = draw(sf, r, out / "figures")
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(csv_rows(r))
    s0 = r.grid.seed
    selected = "" if s0 in r.seeds else f", chosen at selection seed {s0}, reported at seeds {r.seeds}"
    md = [f"# {sf.title}", ""]
    if any(r.centre(v)[0] is not None for v in r.variants):
        md += ["## At the papers' hyperparameters", "", *table_at(r, r.centre), ""]
    md += [
        "## Each at its best (lr, and β/q if the alternative won)"
        if not r.budgeted
        else f"## Each at its best (lr and its tuned key{selected})",
        "",
        *table_at(r, r.best),
        "",
        f"## Learning-rate grid (final validation loss, seed {s0}; bold: the best)",
        "",
        *table_grid(r),
        "",
    ]
    if any(v.alternative for v in r.variants):
        md += ["## β / q (at the best lr)", "", *table_alternatives(r), ""]
    md += [
        "## Timing",
        "",
        *table_timing(r),
        "",
    ]
    (out / "tables.md").write_text("\n".join(md))
    return dict(figures=figs, tables=[out / "tables.md", out / "summary.csv"], markdown="\n".join(md))
