"""Rebuild the papers' validation-loss figures from run metrics, with mean +- std over seeds.

    python scripts/make_figures.py                                  # results/, B=512/128, the seeds found
    python scripts/make_figures.py --results results/small --large-batch 16 --small-batch 4 --seeds 0 1 2

Figures (their optimizers and batch come from configs/experiment/<name>.yaml):
    fig1      seed 001 Fig. 1: Gluon vs Gluon-MVR-1, large batch (B=512)
    fig2      seed 001 Fig. 2: the same, small batch (B=128)
    fig3      seed 001 Fig. 3: Gluon vs Gluon-MVR-2, large batch
    fig4      seed 001 Fig. 4: Gluon-MVR-3 (lr 3.6e-4, alpha 0.8, q 0.5) against Gluon, large batch
    muon_mvr  seed 000: Muon vs MuonMVR MVR1 / MVR2 / MVR3, large batch

Reads only <results>/**/metrics.jsonl, with the config.yaml (and summary.json) beside each to know which
optimizer, global batch and seed the run is. Each figure has three panels: validation loss against
optimizer steps (as in the papers), against tokens processed (counting the extra gradient passes of
two-pass estimators) and against training wall-clock (time_s: excludes evaluation and checkpoints; the
x position is the mean over seeds). Bands are mean +- std (sample std) over seeds.

A run that a figure needs and that is missing, incomplete, or trained on a different setting than the
other runs of its figure is an error naming it; nothing is dropped silently. Writes
<out>/<figure>.png, <out>/summary.csv and <out>/summary.md (out defaults to <results>/figures), and
prints the markdown summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIGURES = ["fig1", "fig2", "fig3", "fig4", "muon_mvr"]
BATCH_ROLES = {"b512": "large", "b128": "small"}  # the same mapping as scripts/sweep.py
LABELS = {
    "adamw": "AdamW", "muon": "Muon", "muon_mvr1": "MuonMVR (MVR1)", "muon_mvr2": "MuonMVR (MVR2)",
    "muon_mvr3": "MuonMVR (MVR3)", "gluon": "Gluon", "gluon_mvr1": "Gluon-MVR-1", "gluon_mvr2": "Gluon-MVR-2",
    "gluon_mvr3": "Gluon-MVR-3",
}
COLORS = {"muon": "k", "gluon": "k", "adamw": "tab:gray", "muon_mvr1": "tab:blue", "gluon_mvr1": "tab:blue",
          "muon_mvr2": "tab:orange", "gluon_mvr2": "tab:orange", "muon_mvr3": "tab:green",
          "gluon_mvr3": "tab:green"}
# settings every run of one figure must share
SHARED_KEYS = ("model.name", "data.name", "data.seq_len", "train.steps", "train.val_every")


class FigureError(RuntimeError):
    """A figure cannot be built as asked: a run is missing, incomplete or inconsistent."""


# ----------------------------------------------------------------------------- figure definitions
@dataclass
class FigureSpec:
    name: str
    title: str
    optimizers: list[str]
    batch: int  # global batch in sequences


def figure_spec(name: str, large_batch: int | None, small_batch: int | None,
                configs: Path = REPO / "configs") -> FigureSpec:
    from omegaconf import OmegaConf

    path = configs / "experiment" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (configs / "experiment").glob("*.yaml"))
        raise FigureError(f"no experiment config {path}; known: {known}")
    exp = OmegaConf.load(path)
    batch_name = None
    for entry in exp.get("defaults", []):
        if isinstance(entry, dict) or OmegaConf.is_dict(entry):
            for k, v in dict(entry).items():
                if k.replace("override", "").strip() in ("/batch", "batch"):
                    batch_name = v
    batch = OmegaConf.select(exp, "batch.global_seqs")
    if batch is None and batch_name is not None:
        batch = OmegaConf.load(configs / "batch" / f"{batch_name}.yaml").global_seqs
    role = BATCH_ROLES.get(batch_name or "")
    scaled = {"large": large_batch, "small": small_batch}.get(role or "")
    if scaled is not None:
        batch = scaled
    if batch is None:
        raise FigureError(f"{path} sets no batch; cannot tell which runs figure {name} needs")
    fig = exp.get("figure", {})
    title = re.sub(r"B=\d+", f"B={batch}", str(fig.get("title", name)))
    return FigureSpec(name=name, title=title, optimizers=list(fig.get("optimizers", [])), batch=int(batch))


# ----------------------------------------------------------------------------- runs
@dataclass
class Run:
    path: Path  # run directory
    optimizer: str
    batch: int
    seed: int
    config: dict
    records: list[dict]
    completed: bool

    @property
    def steps(self) -> int:
        return int(self.config["train"]["steps"])

    def val(self) -> list[dict]:
        return [r for r in self.records if r.get("val_loss") is not None]

    def problem(self) -> str | None:
        """Why this run is not a finished run, or None."""
        if not self.records:
            return "metrics.jsonl is empty"
        last = self.records[-1]["step"]
        if last != self.steps:
            return f"metrics.jsonl stops at step {last} of {self.steps}"
        if "val_loss" not in self.records[-1]:
            return f"step {self.steps} has no val_loss"
        if not self.completed:
            return "summary.json is missing or does not say completed"
        return None


def select(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def load_run(metrics: Path) -> Run:
    from omegaconf import OmegaConf

    d = metrics.parent
    cfg_path = d / "config.yaml"
    if not cfg_path.exists():
        raise FigureError(f"{metrics} has no config.yaml beside it: which optimizer/batch/seed is it?")
    cfg = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=False)
    records = []
    for i, line in enumerate(metrics.read_text().splitlines()):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise FigureError(f"{metrics} line {i + 1} is not JSON ({e})") from None
    summary = d / "summary.json"
    completed = summary.exists() and json.loads(summary.read_text() or "{}").get("completed") is True
    return Run(path=d, optimizer=cfg["optimizer"]["name"], batch=int(cfg["batch"]["global_seqs"]),
               seed=int(cfg["seed"]), config=cfg, records=records, completed=completed)


def index_runs(results: Path, skip: Path | None = None) -> dict[tuple[str, int, int], Run]:
    """Every run under results, keyed by (optimizer, global batch, seed); a key taken twice is an error."""
    if not results.is_dir():
        raise FigureError(f"results directory {results} does not exist")
    runs: dict[tuple[str, int, int], Run] = {}
    for metrics in sorted(results.rglob("metrics.jsonl")):
        if skip is not None and skip in metrics.parents:
            continue
        run = load_run(metrics)
        key = (run.optimizer, run.batch, run.seed)
        if key in runs:
            raise FigureError(f"two runs of {run.optimizer}, B={run.batch}, seed {run.seed}: "
                              f"{runs[key].path} and {run.path}; point --results at a directory with one")
        runs[key] = run
    return runs


def expected_path(results: Path, optimizer: str, batch: int, seed: int) -> Path:
    """Where scripts/sweep.py puts this run."""
    return results / f"{optimizer}_b{batch}_s{seed}" / "metrics.jsonl"


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
                 finals=[run.records[-1] for run in runs])


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
    if hi - lo < 1e-6:
        hi = hi_all
    pad = 0.05 * max(hi - lo, 1e-3)
    return lo - pad, hi + pad


def plot_figure(spec: FigureSpec, curves: list[Curve], subtitle: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_scale, t_label = time_axis(np.concatenate([c.time_s for c in curves]))
    tok_scale, tok_unit = token_unit(max(float(c.tokens[-1]) for c in curves))
    axes_spec = [("step", 1.0, "optimizer step"),
                 ("tokens", tok_scale, f"tokens processed, incl. extra passes ({tok_unit or 'tokens'})"),
                 ("time_s", t_scale, t_label)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), sharey=True)
    ylo, yhi = y_limits(curves)
    for ax, (attr, scale, xlabel) in zip(axes, axes_spec):
        for c in curves:
            x = getattr(c, attr) / scale
            color = COLORS.get(c.optimizer)
            n = len(c.seeds)
            label = f"{LABELS.get(c.optimizer, c.optimizer)} ({c.mean[-1]:.3f}" + \
                (f" ± {c.std[-1]:.3f}, {n} seeds)" if n > 1 else ", 1 seed)")
            ax.plot(x, c.mean, "-", color=color, lw=1.6, label=label)
            if n > 1:
                ax.fill_between(x, c.mean - c.std, c.mean + c.std, color=color, alpha=0.2, lw=0)
        ax.set_xlabel(xlabel)
        ax.set_ylim(ylo, yhi)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation loss")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{spec.title}\n{subtitle}", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)


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
        optimizer=curve.optimizer, label=LABELS.get(curve.optimizer, curve.optimizer), batch_seqs=batch,
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
            lines.append(f"| {spec.name} | {LABELS.get(c.optimizer, c.optimizer)} vs "
                         f"{LABELS.get(base.optimizer, base.optimizer)} | {d:+.4f} | {tok:.2f} | {tim:.2f} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main
def build(results: Path, figures: list[str], seeds: list[int] | None = None, large_batch: int | None = None,
          small_batch: int | None = None, out: Path | None = None, allow_incomplete: bool = False,
          configs: Path = REPO / "configs") -> dict:
    """Write every figure, summary.csv and summary.md; returns {'pngs', 'csv', 'md', 'markdown', 'rows'}."""
    out = out or results / "figures"
    specs = [figure_spec(f, large_batch, small_batch, configs) for f in figures]
    runs = index_runs(results, skip=out)
    errors, built = [], []
    for spec in specs:
        try:
            built.append((spec, gather(spec, runs, results, seeds, allow_incomplete)))
        except FigureError as e:
            errors.append(str(e))
    if errors:  # report every figure's problems at once, before writing anything
        raise FigureError("\n\n".join(errors))

    pngs, per_figure, variants = [], [], {}
    for spec, by_opt in built:
        curves = [aggregate(opt, rs) for opt, rs in by_opt.items()]
        first = by_opt[spec.optimizers[0]][0].config
        n_seeds = sorted({len(rs) for rs in by_opt.values()})
        subtitle = (f"{select(first, 'model.name')} model, {select(first, 'data.name')} data, "
                    f"B={spec.batch} x {select(first, 'data.seq_len')} tokens, "
                    f"{select(first, 'train.steps')} steps; "
                    f"mean ± std over {'/'.join(map(str, n_seeds))} seeds")
        png = out / f"{spec.name}.png"
        plot_figure(spec, curves, subtitle, png)
        pngs.append(png)
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
    return dict(pngs=pngs, csv=csv_path, md=md_path, markdown=md, rows=rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results"), help="searched for **/metrics.jsonl")
    ap.add_argument("--figures", nargs="+", default=FIGURES, help=f"default: {' '.join(FIGURES)}")
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
        return 1
    print(res["markdown"])
    for p in [*res["pngs"], res["csv"], res["md"]]:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
