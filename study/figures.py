"""Kind `figures`: experiment configs, each drawn as one figure of its `figure.optimizers`, every optimizer
at every seed (the papers' five figures; results/small at a small scale). Study file keys:

    figures     the experiment configs (configs/experiment/<name>.yaml), e.g. [fig1, fig2, fig3, muon_mvr]
    batches     the papers' global batches replaced, e.g. {512: 16, 128: 4} (default: none replaced)
    optimizers  optional: these optimizers under every experiment instead of its figure.optimizers

A run is named by what it trains, not by the figure it appears in: ``<optimizer>_b<global batch>_s<seed>``
(rundir.run_name), so a baseline several figures share runs once. Two figures that would share a run
directory must resolve to the same config. Outputs, in <folder>/figures/: one figure per experiment (loss
against steps, its Δ to the first optimizer paired by seed, against tokens, against wall-clock), summary.csv
(one row per optimizer and batch) and summary.md (its table, and the Δ of each figure's final means).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np

from harness import rundir
from study import launch, plots, runs, tables
from study.spec import SpecError, StudyFile

KEYS = ("figures", "batches", "optimizers")
MANAGED = ("experiment", "optimizer", "seed", "run_dir", "run_name")  # what the plan sets itself
SHARED = ("model.name", "data.name", "data.seq_len", "train.steps", "train.val_every")  # alike in a figure
CSV_FIELDS = [
    "optimizer",
    "label",
    "batch_seqs",
    "figures",
    "n_seeds",
    "seeds",
    "steps",
    "final_val_loss_mean",
    "final_val_loss_std",
    "tokens",
    "data_tokens",
    "grad_evals",
    "time_s_mean",
    "time_s_std",
    "wall_s_mean",
]


def batches_of(sf: StudyFile) -> dict[int, int]:
    raw = sf.data.get("batches") or {}
    try:
        return {int(k): int(v) for k, v in raw.items()}
    except (AttributeError, TypeError, ValueError):
        raise sf.error(
            "batches", f"{raw!r}: give a mapping of whole numbers, e.g. {{512: 16, 128: 4}}"
        ) from None


def figure(
    name: str, batches: dict[int, int], optimizers: list[str] | None = None
) -> tuple[str, list[str], int]:
    """(title, optimizers, global batch) of the figure an experiment config defines."""
    exp = rundir.experiment_config(name)
    paper = rundir.experiment_batch(name)
    batch = batches.get(paper, paper)
    fig = exp.get("figure") or {}
    opts = list(optimizers or fig.get("optimizers") or [])
    if not opts:
        raise ValueError(f"experiment {name} lists no figure.optimizers; give the optimizers to run")
    return re.sub(r"B=\d+", f"B={batch}", str(fig.get("title") or name)), opts, batch


# ----------------------------------------------------------------------------- the plan
def plan(
    experiments: list[str],
    seeds: list[int],
    optimizers: list[str] | None,
    results: Path,
    extra: list[str],
    batches: dict[int, int],
    composer,
) -> list[launch.Run]:
    """The deduplicated runs, in a stable order (experiment, optimizer, seed as given), each composed as
    train.py will see it."""
    clash = sorted({launch.override_key(o) for o in extra} & set(MANAGED))
    if clash:
        raise SpecError(
            f"the plan sets {clash} itself; name experiments, optimizers and seeds instead of "
            "passing them as overrides"
        )
    planned: dict[Path, launch.Run] = {}
    shared: dict[Path, list[str]] = {}
    for exp in experiments:
        _, opts, batch = figure(exp, batches, optimizers)
        paper = rundir.experiment_batch(exp)
        scale = [f"batch.global_seqs={batch}"] if batch != paper else []
        for opt in opts:
            for seed in seeds:
                ov = [f"experiment={exp}", f"optimizer={opt}", f"seed={seed}", *extra, *scale]
                cfg = composer(ov)
                b = cfg["batch"]["global_seqs"]
                run_dir = results / rundir.run_name(cfg["optimizer"]["name"], b, seed)
                cfg["run_dir"] = launch.display_path(run_dir)
                if run_dir in planned:
                    diff = launch.config_diff(planned[run_dir].config, cfg)
                    if diff:
                        raise SpecError(
                            f"{shared[run_dir][0]} and {exp} both need {cfg['run_dir']} ({opt}, "
                            f"B={b}, seed {seed}) but resolve to different configs: "
                            + "; ".join(diff[:6])
                            + ". Run them into different folders."
                        )
                    shared[run_dir].append(exp)
                    continue
                shared[run_dir] = [exp]
                planned[run_dir] = launch.Run(
                    run_dir, [*ov, f"run_dir={cfg['run_dir']}"], int(cfg["train"]["steps"]), cfg
                )
    out = list(planned.values())
    for i, run in enumerate(out):
        cfg = run.config
        run.index = i
        run.label = (
            f"{cfg['optimizer']['name']} B={cfg['batch']['global_seqs']} seed={cfg['seed']} "
            f"({'/'.join(shared[run.run_dir])})"
        )
    return out


def plan_study(sf: StudyFile, composer) -> tuple[list[launch.Run], list[str]]:
    """Every run of the study (none waits on another)."""
    return plan(
        list(sf.data["figures"]),
        sf.seeds,
        sf.data.get("optimizers"),
        sf.folder,
        sf.overrides,
        batches_of(sf),
        composer,
    ), []


# ----------------------------------------------------------------------------- the report
def summary_row(curve: runs.Curve, batch: int, figures: list[str]) -> dict:
    finals = curve.finals
    val = np.array([f["val_loss"] for f in finals if "val_loss" in f])
    t = np.array([f["time_s"] for f in finals], dtype=float)
    n = len(finals)
    return dict(
        optimizer=curve.key,
        label=curve.label,
        batch_seqs=batch,
        figures=" ".join(figures),
        n_seeds=n,
        seeds=" ".join(str(s) for s in curve.seeds),
        steps=int(max(f["step"] for f in finals)),
        final_val_loss_mean=round(float(val.mean()), 5) if len(val) else "",
        final_val_loss_std=round(float(val.std(ddof=1)), 5) if len(val) > 1 else "",
        tokens=int(np.mean([f["tokens"] for f in finals])),
        data_tokens=int(np.mean([f.get("data_tokens", f["tokens"]) for f in finals])),
        grad_evals=int(np.mean([f["grad_evals"] for f in finals])),
        time_s_mean=round(float(t.mean()), 2),
        time_s_std=round(float(t.std(ddof=1)), 2) if n > 1 else "",
        wall_s_mean=round(float(np.mean([f.get("wall_s", math.nan) for f in finals])), 2),
    )


def summary_md(rows: list[dict], per_figure: list[tuple[str, list[runs.Curve]]]) -> str:
    lines = tables.markdown(
        [
            "Optimizer",
            "B (seqs)",
            "Figures",
            "Seeds",
            "Final val loss (mean ± std)",
            "Tokens processed",
            "Gradient evals",
            "Train time (s)",
        ],
        "lrlrrrrr",
        [
            [
                r["label"],
                r["batch_seqs"],
                r["figures"],
                r["n_seeds"],
                tables.pm(r["final_val_loss_mean"], r["final_val_loss_std"]),
                tables.fmt_tokens(r["tokens"]),
                r["grad_evals"],
                tables.pm(r["time_s_mean"], r["time_s_std"], 1),
            ]
            for r in rows
        ],
    )
    deltas = []
    for name, curves in per_figure:
        base = curves[0]
        for c in curves[1:]:
            tim = c.time_s[-1] / base.time_s[-1] if base.time_s[-1] > 0 else math.nan
            deltas.append(
                [
                    name,
                    f"{c.label} vs {base.label}",
                    f"{c.mean[-1] - base.mean[-1]:+.4f}",
                    f"{c.tokens[-1] / base.tokens[-1]:.2f}",
                    f"{tim:.2f}",
                ]
            )
    lines += [
        "",
        *tables.markdown(
            ["Figure", "Variant", "Δ final val loss vs baseline", "Tokens × baseline", "Time × baseline"],
            "llrrr",
            deltas,
        ),
    ]
    return "\n".join(lines) + "\n"


def gather(
    results: Path, name: str, opts: list[str], batch: int, seeds: list[int], allow_incomplete: bool
) -> tuple[dict[str, list[runs.Run]], list[str]]:
    """optimizer -> its runs for one figure, and every problem found (missing, unfinished, mismatched)."""
    problems, out = [], {}
    for opt in opts:
        out[opt] = []
        for seed in seeds:
            d = results / rundir.run_name(opt, batch, seed)
            if not (d / rundir.METRICS).exists():
                problems.append(
                    f"  missing: optimizer={opt} batch={batch} seed={seed}: expected {d / rundir.METRICS}"
                )
                continue
            run = runs.load(d)
            if run.why_unfinished and not (allow_incomplete and run.val()):
                problems.append(
                    f"  unfinished: optimizer={opt} batch={batch} seed={seed} at {d}: {run.why_unfinished}"
                )
                continue
            out[opt].append(run)
    every = [r for rs in out.values() for r in rs]
    for key in SHARED:
        if len({str(runs.select(r.config, key)) for r in every}) > 1:
            detail = ", ".join(f"{r.path.name}: {runs.select(r.config, key)}" for r in every)
            problems.append(f"  the runs differ in {key} ({detail})")
    return out, problems


def report(
    results: Path,
    figures: list[str],
    seeds: list[int],
    batches: dict[int, int],
    out: Path,
    optimizers: list[str] | None = None,
    allow_incomplete: bool = False,
) -> dict:
    """Every figure (PNG and PDF), summary.csv and summary.md from the finished runs; a missing,
    unfinished or mismatched run is a RunError naming every one, before anything is written."""
    built, errors = [], []
    for name in figures:
        title, opts, batch = figure(name, batches, optimizers)
        by_opt, problems = gather(results, name, opts, batch, seeds, allow_incomplete)
        if problems:
            errors.append(f"figure {name} ({title}) cannot be built:\n" + "\n".join(problems))
        built.append((name, title, batch, by_opt))
    if errors:
        raise runs.RunError(
            "\n\n".join(errors) + f"\n\nMake or finish the runs: python scripts/sweep.py "
            f"--results {results} ... (rerunning it resumes unfinished ones)."
        )
    paths, per_figure, variants = [], [], {}
    for name, title, batch, by_opt in built:
        curves = [runs.curve(rs, rs[0].label) for rs in by_opt.values()]
        cfg = next(iter(by_opt.values()))[0].config
        n_seeds = sorted({len(rs) for rs in by_opt.values()})
        subtitle = (
            f"{runs.select(cfg, 'model.name')} model, {runs.select(cfg, 'data.name')}, "
            f"{runs.select(cfg, 'train.steps')} steps of {batch}×{runs.select(cfg, 'data.seq_len')} "
            f"tokens, {'/'.join(map(str, n_seeds))} seeds"
        )
        paths += plots.comparison(curves, title, subtitle, out / f"{name}.png")
        per_figure.append((name, curves))
        for c in curves:
            variants.setdefault((c.key, batch), (c, []))[1].append(name)
    rows = [summary_row(c, b, figs) for (_, b), (c, figs) in variants.items()]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    md = summary_md(rows, per_figure)
    (out / "summary.md").write_text(md)
    return dict(figures=paths, tables=[out / "summary.csv", out / "summary.md"], markdown=md, rows=rows)


def report_study(sf: StudyFile, out: Path | None = None, allow_incomplete: bool = False) -> dict:
    """The figures, summary.csv and summary.md in <out>/figures (default: beside the study file)."""
    return report(
        sf.folder,
        list(sf.data["figures"]),
        sf.seeds,
        batches_of(sf),
        (out or sf.folder) / "figures",
        sf.data.get("optimizers"),
        allow_incomplete,
    )
