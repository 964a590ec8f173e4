"""Rebuild the papers' validation-loss figures from run metrics, with mean +- std over seeds.

    python scripts/make_figures.py                                  # results/, B=512/128, the seeds found
    python scripts/make_figures.py --results results/small --large-batch 16 --small-batch 4 --seeds 0 1 2

Figures are the paper-figure experiments (rundir.figure_experiments(); their optimizers, title and batch come
from configs/experiment/<name>.yaml):
    fig1      the Gluon-MVR paper's Fig. 1: Gluon vs Gluon-MVR-1, large batch (B=512)
    fig2      the Gluon-MVR paper's Fig. 2: the same, small batch (B=128)
    fig3      the Gluon-MVR paper's Fig. 3: Gluon vs Gluon-MVR-2, large batch
    fig4      the Gluon-MVR paper's Fig. 4: Gluon-MVR-3 (lr 3.6e-4, alpha 0.8, q 0.5) against Gluon
    muon_mvr  the MuonMVR paper: Muon vs MuonMVR MVR1 / MVR2 / MVR3, large batch

Reads the run directories under --results through harness/rundir.py (metrics.jsonl, with the config.yaml and
summary.json beside it to know which optimizer, global batch and seed the run is, and whether it finished).
Each figure has four panels: validation loss against optimizer steps (as in the papers); its difference to
the figure's baseline (the first of figure.optimizers), paired by seed; validation loss against tokens
processed (counting the extra gradient passes of two-pass estimators); and against training wall-clock
(time_s: excludes evaluation and checkpoints; the x position is the mean over seeds). Lines are means over
seeds with a marker at each evaluation; bands are mean +- sample std over seeds (none for one seed).
Optimizers are named by their config's `label:` (readings of one method drawn side by side are all
lettered: "Gluon-MVR-3 (A)" beside "(B)", "(C)") and drawn in a colour, dash pattern and marker fixed by
their place in rundir.optimizer_names(), so every figure draws one optimizer alike, also in greyscale.
Figures are WIDTH (4.6) inches wide, so that printed in a single column (3.3 in) no text is under 6 pt.

A run that a figure needs and that is missing, incomplete, or trained on a different setting than the
other runs of its figure is an error naming it; nothing is dropped silently. Writes <out>/<figure>.png and
.pdf, <out>/summary.csv and <out>/summary.md (out defaults to <results>/figures), and prints the markdown
summary.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import rundir
from harness.config import config_choices
from scripts.figure_style import RC, WIDTH, fits, markevery, pack_lines, padded, pyplot, save, style

REPO = Path(__file__).resolve().parents[1]

# settings every run of one figure must share
SHARED_KEYS = ("model.name", "data.name", "data.seq_len", "train.steps", "train.val_every")


EXIT_REFUSED = 2  # the figures cannot be built as asked; the message names the fix


class FigureError(RuntimeError):
    """A figure cannot be built as asked: a run is missing, incomplete or inconsistent."""


# ----------------------------------------------------------------------------- figure definitions
@dataclass
class FigureSpec:
    name: str
    title: str
    optimizers: list[str]
    batch: int  # global batch in sequences


def figure_spec(name: str, large_batch: int | None, small_batch: int | None) -> FigureSpec:
    """The figure an experiment config defines, at its batch (the papers' 512 / 128 replaced by
    large_batch / small_batch when given)."""
    try:
        exp = rundir.experiment_config(name)
        batch = rundir.experiment_batch(name)
    except ValueError as e:
        raise FigureError(str(e)) from None
    scaled = {"large": large_batch, "small": small_batch}.get(rundir.BATCH_ROLES.get(batch, ""))
    if scaled is not None:
        batch = scaled
    fig = exp.get("figure") or {}
    title = re.sub(r"B=\d+", f"B={batch}", str(fig.get("title") or name))
    return FigureSpec(name=name, title=title, optimizers=list(fig.get("optimizers") or []), batch=int(batch))


# ----------------------------------------------------------------------------- runs
@dataclass
class Run:
    path: Path  # run directory
    optimizer: str
    batch: int
    seed: int
    config: dict
    records: list[dict]
    why_unfinished: str  # "" for a finished run (rundir.completion)

    @property
    def steps(self) -> int:
        return int(self.config["train"]["steps"])

    def val(self) -> list[dict]:
        return [r for r in self.records if r.get("val_loss") is not None]

    def problem(self) -> str | None:
        """Why this run is not a finished run, or None."""
        return self.why_unfinished or None


def select(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def load_run(run_dir: Path) -> Run:
    cfg = rundir.read_config(run_dir)
    if cfg is None:
        raise FigureError(f"{run_dir / rundir.METRICS} has no {rundir.CONFIG} beside it: which "
                          f"optimizer/batch/seed is it? Move it out of --results or restore its config")
    try:
        records = rundir.read_metrics(run_dir)
        key = (select(cfg, "optimizer.name"), int(select(cfg, "batch.global_seqs")), int(select(cfg, "seed")))
    except (ValueError, TypeError) as e:
        raise FigureError(f"{run_dir}: {e}") from None
    steps = select(cfg, "train.steps")
    _, why = rundir.completion(run_dir, int(steps) if steps is not None else None)
    return Run(path=run_dir, optimizer=key[0], batch=key[1], seed=key[2], config=cfg, records=records,
               why_unfinished=why)


def index_runs(results: Path, skip: Path | None = None) -> dict[tuple[str, int, int], Run]:
    """The runs scripts/sweep.py writes: every ``<results>/<run>/metrics.jsonl`` (sub-folders of a run's
    folder are other studies and are not read), keyed by (optimizer, global batch, seed); a key taken
    twice is an error. A run whose config records an experiment that is no paper figure (the proxy
    study, the quick start) is passed over with a note."""
    if not results.is_dir():
        raise FigureError(f"results directory {results} does not exist")
    others = set(config_choices("experiment")) - set(rundir.figure_experiments())  # proxy, quickstart, ...
    runs: dict[tuple[str, int, int], Run] = {}
    passed: dict[str, int] = {}
    for metrics in sorted(results.glob(f"*/{rundir.METRICS}")):
        if skip is not None and skip in metrics.parents:
            continue
        run = load_run(metrics.parent)
        experiment = select(run.config, "figure.name")
        if experiment in others:
            passed[experiment] = passed.get(experiment, 0) + 1
            continue
        key = (run.optimizer, run.batch, run.seed)
        if key in runs:
            raise FigureError(f"two runs of {run.optimizer}, B={run.batch}, seed {run.seed}: "
                              f"{runs[key].path} and {run.path}; point --results at a directory with one")
        runs[key] = run
    for experiment, n in passed.items():
        print(f"note: {n} run(s) under {results} are of experiment {experiment}, not a paper figure: "
              "not read", file=sys.stderr)
    return runs


def how_to_fix(results: Path) -> str:
    """The last paragraph of a refusal: how to make the runs, and where else under results runs lie."""
    text = (f"Missing runs: make them with `python scripts/sweep.py --results {results} --seeds ...` "
            "(docs/figures.md); incomplete ones: rerun the same sweep, which resumes them.")
    elsewhere = [str(f) for f in run_folders(results)]
    if elsewhere:
        text += (f" Runs in sub-folders are not read; the folders under {results} that hold runs are "
                 f"{', '.join(elsewhere)}: point --results at one (the committed CPU study: --results "
                 "results/small --large-batch 16 --small-batch 4 --seeds 0 1 2).")
    return text


def run_folders(results: Path) -> list[Path]:
    """The sub-folders of results (to any depth) that hold runs themselves: where --results could point."""
    return sorted({m.parent.parent for m in results.glob(f"*/**/{rundir.METRICS}")} - {results})


def expected_path(results: Path, optimizer: str, batch: int, seed: int) -> Path:
    """Where scripts/sweep.py puts this run's metrics."""
    return results / rundir.run_name(optimizer, batch, seed) / rundir.METRICS


def gather(spec: FigureSpec, runs: dict, results: Path, seeds: list[int] | None,
           allow_incomplete: bool) -> dict[str, list[Run]]:
    """optimizer -> its runs (one per seed) for this figure, or FigureError naming what is wrong."""
    if seeds is None:  # the seeds present for any variant of this figure, then demanded of all
        seeds = sorted({s for (o, b, s) in runs if o in spec.optimizers and b == spec.batch})
        if not seeds:
            example = expected_path(results, spec.optimizers[0], spec.batch, 0)
            raise FigureError(f"figure {spec.name} needs {', '.join(spec.optimizers)} at B={spec.batch}, and "
                              f"{results} holds no run of any of them (expected e.g. {example})")
    missing, broken, out = [], [], {}
    for opt in spec.optimizers:
        out[opt] = []
        for seed in seeds:
            run = runs.get((opt, spec.batch, seed))
            if run is None:
                missing.append(f"  optimizer={opt} batch={spec.batch} seed={seed}: expected "
                               f"{expected_path(results, opt, spec.batch, seed)}")
                continue
            why = run.problem()
            if why and not (allow_incomplete and run.val()):
                broken.append(f"  optimizer={opt} batch={spec.batch} seed={seed} at {run.path}: {why}")
                continue
            if why:
                print(f"warning: figure {spec.name} plots an incomplete run ({run.path}: {why})",
                      file=sys.stderr)
            out[opt].append(run)
    if missing or broken:
        lines = [f"figure {spec.name} ({spec.title}) cannot be built:"]
        if missing:
            lines += ["missing runs:", *missing]
        if broken:
            lines += ["incomplete runs (finish them with scripts/sweep.py, or pass --allow-incomplete):",
                      *broken]
        raise FigureError("\n".join(lines))
    every = [r for rs in out.values() for r in rs]
    for key in SHARED_KEYS:
        values = {str(select(r.config, key)) for r in every}
        if len(values) > 1:
            detail = ", ".join(f"{r.path.name}: {select(r.config, key)}" for r in every)
            raise FigureError(f"figure {spec.name} mixes runs with different {key} ({detail})")
    return out


@dataclass
class Curve:
    optimizer: str
    seeds: list[int]
    step: np.ndarray
    tokens: np.ndarray
    time_s: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    finals: list[dict] = field(default_factory=list)  # the last record of each seed
    per_seed: np.ndarray | None = None  # validation loss, one row per seed (in `seeds` order)


def aggregate(optimizer: str, runs: list[Run]) -> Curve:
    """Validation loss on the evaluation steps all seeds share; mean and sample std over seeds."""
    common = sorted(set.intersection(*[{r["step"] for r in run.val()} for run in runs]))
    if not common:
        raise FigureError(f"{optimizer}: its seeds share no evaluation step ({[str(r.path) for r in runs]})")
    by_step = [{r["step"]: r for r in run.val()} for run in runs]
    val = np.array([[m[s]["val_loss"] for s in common] for m in by_step])
    tokens = np.array([[m[s]["tokens"] for s in common] for m in by_step], dtype=float)
    time_s = np.array([[m[s]["time_s"] for s in common] for m in by_step], dtype=float)
    std = val.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(common))
    return Curve(optimizer=optimizer, seeds=[r.seed for r in runs], step=np.array(common),
                 tokens=tokens.mean(axis=0), time_s=time_s.mean(axis=0), mean=val.mean(axis=0), std=std,
                 finals=[run.records[-1] for run in runs], per_seed=val)


# ----------------------------------------------------------------------------- plotting
def time_axis(seconds: np.ndarray) -> tuple[float, str]:
    top = float(np.max(seconds)) if len(seconds) else 0.0
    if top >= 2 * 3600:
        return 3600.0, "training wall-clock (h)"
    if top >= 120:
        return 60.0, "training wall-clock (min)"
    return 1.0, "training wall-clock (s)"


def y_limits(curves: list[Curve]) -> tuple[float, float]:
    """From just below the best band to the highest mean after the first 10% of training (early losses
    would otherwise flatten the part the papers compare)."""
    lo = min(float(np.min(c.mean - c.std)) for c in curves)
    hi_all = max(float(np.max(c.mean + c.std)) for c in curves)
    late = [c.mean[c.step >= 0.1 * c.step[-1]] for c in curves]
    hi = max(float(np.max(x)) for x in late if len(x)) if any(len(x) for x in late) else hi_all
    return padded(lo, hi, hi_all)


@dataclass
class Delta:
    """Validation loss minus the baseline's, paired by seed, on the evaluation steps both have."""
    optimizer: str
    step: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: int  # seeds paired


def delta(curve: Curve, base: Curve) -> Delta:
    steps = [s for s in curve.step if s in set(base.step)]
    ci, bi = [list(curve.step).index(s) for s in steps], [list(base.step).index(s) for s in steps]
    shared = [s for s in curve.seeds if s in base.seeds]
    if shared:  # the same seed: the same initialisation and batches, so the difference is the optimizer's
        d = np.array([curve.per_seed[curve.seeds.index(s)][ci] - base.per_seed[base.seeds.index(s)][bi]
                      for s in shared])
    else:  # no seed in common: difference of the means
        d = (curve.mean[ci] - base.mean[bi])[None, :]
    std = d.std(axis=0, ddof=1) if len(d) > 1 else np.zeros(len(steps))
    return Delta(curve.optimizer, np.array(steps), d.mean(axis=0), std, len(d))


def delta_limits(deltas: list[Delta]) -> tuple[float, float]:
    """Zero and every band after the first 10% of training."""
    lo, hi, hi_all = 0.0, 0.0, 0.0
    for d in deltas:
        late = d.step >= 0.1 * d.step[-1]
        lo = min(lo, float(np.min((d.mean - d.std)[late])), 0.0)
        hi = max(hi, float(np.max((d.mean + d.std)[late])))
        hi_all = max(hi_all, float(np.max(d.mean + d.std)))
    return padded(lo, hi, max(hi_all, 1e-3))


def figure_labels(optimizers: list[str]) -> dict[str, str]:
    """How one figure names its optimizers: each config's `label:`, except that readings of one method drawn
    side by side are all lettered. The configs letter the alternative readings ("Gluon-MVR-3 (B)", "(C)")
    and leave the first one plain ("Gluon-MVR-3", reading A, as every other figure and table names it);
    beside lettered siblings the plain one takes the first letter they leave free: "Gluon-MVR-3 (A)"."""
    plain = {o: rundir.optimizer_label(o) for o in optimizers}
    out = dict(plain)
    for opt, label in plain.items():
        taken = {m.group(1) for other in plain.values()
                 if (m := re.fullmatch(re.escape(label) + r" \(([A-Z])\)", other))}
        if taken:
            out[opt] = f"{label} ({min(set('ABCDEFGHIJKLMNOPQRSTUVWXYZ') - taken)})"
    return out


def legend_label(c: Curve, label: str) -> str:
    if len(c.seeds) > 1:
        return f"{label}: {c.mean[-1]:.3f} ± {c.std[-1]:.3f}"
    return f"{label}: {c.mean[-1]:.3f}"


def plot_figure(spec: FigureSpec, curves: list[Curve], subtitle: str, out: Path,
                labels: dict[str, str] | None = None) -> list[Path]:
    """Four panels (loss vs steps, Δ vs the baseline, loss vs tokens, loss vs wall-clock) in two columns
    WIDTH inches wide, a title and a legend below them; writes `out` (PNG) and its PDF, returns both paths.

    `subtitle` is phrases separated by ', ' and '; ', wrapped between phrases to the figure's width.
    `labels` names the optimizers (default: figure_labels of the curves'); a subtitle that names them
    should use the same names."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    labels = labels or figure_labels([c.optimizer for c in curves])
    base = curves[0]
    t_scale, t_label = time_axis(np.concatenate([c.time_s for c in curves]))
    tok_scale, tok_unit = token_unit(max(float(c.tokens[-1]) for c in curves))
    ylo, yhi = y_limits(curves)
    deltas = [delta(c, base) for c in curves[1:]]
    with plt.rc_context(RC):
        fig = plt.figure(figsize=(WIDTH, 5.6), layout="constrained")
        renderer = fig.canvas.get_renderer()
        title = [spec.title, *pack_lines(subtitle, lambda line: fits(fig, line, RC["figure.titlesize"]))]
        axes = fig.subplots(2, 2)
        (ax_step, ax_delta), (ax_tok, ax_time) = axes
        panels = [(ax_step, "step", 1.0, "optimizer step"),
                  (ax_tok, "tokens", tok_scale, f"tokens processed ({tok_unit or 'tokens'}),\n"
                                                "incl. extra gradient passes"),
                  (ax_time, "time_s", t_scale, t_label)]
        handles = []
        for ax, attr, scale, xlabel in panels:
            for c in curves:
                kw = style(c.optimizer)
                x = getattr(c, attr) / scale
                (line,) = ax.plot(x, c.mean, markevery=markevery(len(x)),
                                  label=legend_label(c, labels[c.optimizer]), **kw)
                if len(c.seeds) > 1:
                    ax.fill_between(x, c.mean - c.std, c.mean + c.std, color=kw["color"], alpha=0.18, lw=0)
                if ax is ax_step:
                    handles.append(line)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("validation loss")
            ax.set_ylim(ylo, yhi)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(5))
        # Δ panel: the baseline is the zero line, in its own style
        ax_delta.axhline(0.0, **{k: v for k, v in style(base.optimizer).items() if k != "marker"}, lw=1.2)
        for d in deltas:
            kw = style(d.optimizer)
            ax_delta.plot(d.step, d.mean, markevery=markevery(len(d.step)), **kw)
            if d.n > 1:
                ax_delta.fill_between(d.step, d.mean - d.std, d.mean + d.std, color=kw["color"], alpha=0.18,
                                      lw=0)
        ax_delta.set_xlabel("optimizer step")
        ax_delta.set_ylabel(f"Δ val. loss\nvs {labels[base.optimizer]}")  # in two lines: within the panel
        ax_delta.set_ylim(*delta_limits(deltas))
        ax_delta.xaxis.set_major_locator(MaxNLocator(4))
        ax_delta.yaxis.set_major_locator(MaxNLocator(5))
        for ax, letter in zip(axes.flat, "abcd"):
            ax.set_title(f"({letter})", loc="left", pad=3)
        fig.suptitle("\n".join(title))
        legend_title = "final validation loss" + (" (mean ± std over seeds)"
                                                  if any(len(c.seeds) > 1 for c in curves) else "")
        for ncol in (2, 1):  # two columns if they fit in the figure's width, else one
            legend = fig.legend(handles=handles, loc="outside lower center", ncol=min(ncol, len(handles)),
                                title=legend_title, frameon=False, handlelength=3.2, columnspacing=1.2)
            if ncol == 1 or legend.get_window_extent(renderer).width <= 0.99 * fig.bbox.width:
                break
            legend.remove()
        # the panels keep their height whatever the title's and the legend's lines take
        fig.set_figheight(4.3 + 0.19 * (len(title) + 1 + math.ceil(len(handles) / ncol)))
        paths = save(fig, out)
        plt.close(fig)
    return paths


# ----------------------------------------------------------------------------- summary
CSV_FIELDS = ["optimizer", "label", "batch_seqs", "figures", "n_seeds", "seeds", "steps",
              "final_val_loss_mean", "final_val_loss_std", "tokens", "data_tokens", "grad_evals",
              "time_s_mean", "time_s_std", "wall_s_mean"]


def summary_row(curve: Curve, batch: int, figures: list[str]) -> dict:
    finals = curve.finals
    val = np.array([f["val_loss"] for f in finals if "val_loss" in f])
    t = np.array([f["time_s"] for f in finals], dtype=float)
    n = len(finals)
    return dict(
        optimizer=curve.optimizer, label=rundir.optimizer_label(curve.optimizer), batch_seqs=batch,
        figures=" ".join(figures), n_seeds=n, seeds=" ".join(str(s) for s in curve.seeds),
        steps=int(max(f["step"] for f in finals)),
        final_val_loss_mean=round(float(val.mean()), 5) if len(val) else "",
        final_val_loss_std=round(float(val.std(ddof=1)), 5) if len(val) > 1 else "",
        tokens=int(np.mean([f["tokens"] for f in finals])),
        data_tokens=int(np.mean([f.get("data_tokens", f["tokens"]) for f in finals])),
        grad_evals=int(np.mean([f["grad_evals"] for f in finals])),
        time_s_mean=round(float(t.mean()), 2), time_s_std=round(float(t.std(ddof=1)), 2) if n > 1 else "",
        wall_s_mean=round(float(np.mean([f.get("wall_s", math.nan) for f in finals])), 2),
    )


def pm(mean, std, digits=4) -> str:
    if mean == "":
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std != "" else f"{mean:.{digits}f}"


def token_unit(n: float) -> tuple[float, str]:
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return scale, unit
    return 1.0, ""


def fmt_tokens(n: float) -> str:
    scale, unit = token_unit(n)
    return f"{n / scale:.3g}{unit}"


def markdown(rows: list[dict], per_figure: list[tuple[FigureSpec, list[Curve]]]) -> str:
    lines = ["| Optimizer | B (seqs) | Figures | Seeds | Final val loss (mean ± std) | Tokens processed | "
             "Gradient evals | Train time (s) |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['batch_seqs']} | {r['figures']} | {r['n_seeds']} | "
                     f"{pm(r['final_val_loss_mean'], r['final_val_loss_std'])} | {fmt_tokens(r['tokens'])} | "
                     f"{r['grad_evals']} | {pm(r['time_s_mean'], r['time_s_std'], 1)} |")
    lines += ["", "| Figure | Variant | Δ final val loss vs baseline | Tokens × baseline | Time × baseline |",
              "|---|---|---:|---:|---:|"]
    for spec, curves in per_figure:
        base = curves[0]
        for c in curves[1:]:
            d = c.mean[-1] - base.mean[-1]
            tok = c.tokens[-1] / base.tokens[-1]
            tim = c.time_s[-1] / base.time_s[-1] if base.time_s[-1] > 0 else math.nan
            lines.append(f"| {spec.name} | {rundir.optimizer_label(c.optimizer)} vs "
                         f"{rundir.optimizer_label(base.optimizer)} | {d:+.4f} | {tok:.2f} | {tim:.2f} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main
def build(results: Path, figures: list[str], seeds: list[int] | None = None, large_batch: int | None = None,
          small_batch: int | None = None, out: Path | None = None, allow_incomplete: bool = False) -> dict:
    """Write every figure (PNG and PDF), summary.csv and summary.md; returns
    {'pngs', 'pdfs', 'csv', 'md', 'markdown', 'rows'}."""
    out = out or results / "figures"
    specs = [figure_spec(f, large_batch, small_batch) for f in figures]
    runs = index_runs(results, skip=out)
    errors, built = [], []
    for spec in specs:
        try:
            built.append((spec, gather(spec, runs, results, seeds, allow_incomplete)))
        except FigureError as e:
            errors.append(str(e))
    if errors:  # report every figure's problems at once, before writing anything
        raise FigureError("\n\n".join([*errors, how_to_fix(results)]))

    pngs, pdfs, per_figure, variants = [], [], [], {}
    for spec, by_opt in built:
        curves = [aggregate(opt, rs) for opt, rs in by_opt.items()]
        first = by_opt[spec.optimizers[0]][0].config
        n_seeds = sorted({len(rs) for rs in by_opt.values()})
        subtitle = (f"{select(first, 'model.name')} model, {select(first, 'data.name')}, "
                    f"{select(first, 'train.steps')} steps of {spec.batch}×{select(first, 'data.seq_len')} "
                    f"tokens, {'/'.join(map(str, n_seeds))} seeds")
        png, pdf = plot_figure(spec, curves, subtitle, out / f"{spec.name}.png")
        pngs.append(png)
        pdfs.append(pdf)
        per_figure.append((spec, curves))
        for c in curves:
            key = (c.optimizer, spec.batch)
            if key not in variants:
                variants[key] = (c, [])
            variants[key][1].append(spec.name)

    rows = [summary_row(c, b, figs) for (_, b), (c, figs) in variants.items()]
    csv_path = out / "summary.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    md = markdown(rows, per_figure)
    md_path = out / "summary.md"
    md_path.write_text(md)
    return dict(pngs=pngs, pdfs=pdfs, csv=csv_path, md=md_path, markdown=md, rows=rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    figures = rundir.figure_experiments()
    ap.add_argument("--results", type=Path, default=Path("results"),
                    help="the folder scripts/sweep.py wrote: <results>/*/metrics.jsonl (default: results)")
    ap.add_argument("--figures", nargs="+", default=figures, help=f"default: {' '.join(figures)}")
    ap.add_argument("--seeds", nargs="+", type=int, default=None,
                    help="seeds every variant must have (default: every seed any variant of a figure has)")
    ap.add_argument("--large-batch", type=int, default=None,
                    help="global batch (sequences) of the B=512 figures (default 512)")
    ap.add_argument("--small-batch", type=int, default=None,
                    help="global batch (sequences) of the B=128 figure (default 128)")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: <results>/figures)")
    ap.add_argument("--allow-incomplete", action="store_true",
                    help="plot unfinished runs up to where they are (with a warning) instead of failing")
    args = ap.parse_args(argv)
    try:
        res = build(args.results, args.figures, args.seeds, args.large_batch, args.small_batch, args.out,
                    args.allow_incomplete)
    except FigureError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    print(res["markdown"])
    for p in [*res["pngs"], *res["pdfs"], res["csv"], res["md"]]:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
