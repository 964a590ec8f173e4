"""Plot validation (and training) loss of finished or running runs into one figure, as PNG and PDF.

    python scripts/plot_runs.py runs/quickstart/muon_s0 runs/quickstart/muon_mvr1_s0 \
        --out runs/quickstart/loss.png          # also writes runs/quickstart/loss.pdf

Reads each run directory through harness/rundir.py. A run is named by its optimizer's `label:` and its
seed when its config.yaml says them (else by the directory name), and drawn in that optimizer's colour,
dash pattern and marker (scripts/figure_style.py's; in list order when two runs share an optimizer).
Markers are the evaluations (val_loss); the faint line is the training loss. The y-range shows the curves
after the first 10-20% of training, so the first steps' loss (about ln 50257 = 10.8) does not flatten them.
The title is --title, else the runs' shared figure.title, else a generic one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from harness import rundir
from scripts.figure_style import RC, WIDTH, fits, markevery, pack_lines, padded, pyplot, save, style

REPO = Path(__file__).resolve().parents[1]


def load(run_dir: Path) -> tuple[list[dict], dict]:
    """(records, config) of a run directory; a missing or empty metrics.jsonl is an error naming it."""
    path = Path(run_dir) / rundir.METRICS
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist: is {run_dir} a run directory of train.py?")
    records = rundir.read_metrics(run_dir)
    if not records:
        raise SystemExit(f"error: {path} holds no record yet; plot it once the run has done a step")
    return records, rundir.read_config(run_dir) or {}


def y_range(runs: list[list[dict]]) -> tuple[float, float]:
    """The validation points after the first 10% of the steps and the bulk (1st-99th percentile) of the
    training loss after the first 20%: the steep start runs off the top instead of flattening the rest."""
    last = max(r["step"] for rec in runs for r in rec)
    every = [r for rec in runs for r in rec]
    val = [r["val_loss"] for r in every if r.get("val_loss") is not None and r["step"] >= 0.1 * last]
    train = [r["train_loss"] for r in every if r.get("train_loss") is not None and r["step"] >= 0.2 * last]
    bounds = val + ([float(np.percentile(train, 1)), float(np.percentile(train, 99))] if train else [])
    if not bounds:  # a run that has barely started: all of it
        bounds = [r[k] for r in every for k in ("train_loss", "val_loss") if r.get(k) is not None]
    return padded(min(bounds), max(bounds), max(bounds))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run directories (each with metrics.jsonl)")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write (the PDF goes beside it)")
    ap.add_argument("--title", default=None, help="figure title (default: the runs' figure.title)")
    args = ap.parse_args(argv)

    loaded = [load(run) for run in args.runs]
    optimizers = [(cfg.get("optimizer") or {}).get("name") for _, cfg in loaded]
    own_styles = len(set(optimizers)) == len(optimizers) and None not in optimizers
    titles = {(cfg.get("figure") or {}).get("title") for _, cfg in loaded}
    title = args.title or (titles.pop() if len(titles) == 1 and None not in titles and "" not in titles
                           else "Validation and training loss")

    plt = pyplot()
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(WIDTH, 3.6), layout="constrained")  # a single column's fonts
        for i, (run, (rec, cfg), opt) in enumerate(zip(args.runs, loaded, optimizers)):
            kw = style(opt) if own_styles else style("", fallback=i)
            label = f"{rundir.optimizer_label(opt)}, seed {cfg.get('seed')}" if opt else run.name
            ax.plot([r["step"] for r in rec], [r["train_loss"] for r in rec], color=kw["color"], lw=0.8,
                    alpha=0.3)
            val = [r for r in rec if r.get("val_loss") is not None]
            if val:
                label += f" (val {val[-1]['val_loss']:.3f} at step {val[-1]['step']})"
            ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], markevery=markevery(len(val)),
                    label=label, **kw)
        ax.set_ylim(*y_range([rec for rec, _ in loaded]))
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss (markers: validation,\nfaint: training)")
        size = RC["axes.titlesize"]
        ax.set_title("\n".join(pack_lines(title, lambda line: fits(fig, line, size))))
        fig.legend(loc="outside lower center", ncol=1, frameon=False, handlelength=3.2)
        for path in save(fig, args.out):
            print(f"wrote {path}")
        plt.close(fig)


if __name__ == "__main__":
    main()
