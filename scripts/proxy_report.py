"""The proxy study's report (scripts/proxy_study.py is its command): results read from the run
directories, statistics paired by seed, the tables of tables.md, the paragraph generated from the numbers,
summary.csv and the figures.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import rundir
from scripts import figure_style as fs
from scripts import make_figures as mf
from scripts.proxy_plan import (
    ALTERNATIVES,
    FIGURES,
    READINGS,
    Plan,
    Spec,
    StudyError,
    Variant,
    diverged,
    fmt_factor,
    fmt_lr,
    fmt_num,
    lr_value,
)


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
