"""Plot validation (and training) loss of finished or running runs into one figure, as PNG and PDF.

    python scripts/plot_runs.py runs/quickstart/muon_s0 runs/quickstart/muon_mvr1_s0 \
        --out runs/quickstart/loss.png          # also writes runs/quickstart/loss.pdf

Reads each run directory through harness/rundir.py. A run is named by its optimizer's `label:` and its
seed when its config.yaml says them (else by the directory name), and drawn in that optimizer's colour,
dash pattern and marker (scripts/figure_style.py's; in list order when two runs share an optimizer).
Markers are the evaluations (val_loss); the faint line is the training loss as a moving mean over about 4%
of the run, in the run's dash pattern. The y-range holds every evaluation and the smoothed training loss
after the first 5% of the steps, so only the first steps' loss (about ln 50257 = 10.8) runs off the top.
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


def smoothed(values: list[float], window: int) -> np.ndarray:
    """The moving mean over ``window`` records (shorter at both ends): the training loss of one batch at a
    time is noisy enough to hide which curve is which."""
    x = np.asarray(values, dtype=float)
    if window <= 1 or len(x) < 3:
        return x
    kernel = np.ones(window)
    return np.convolve(x, kernel, mode="same") / np.convolve(np.ones_like(x), kernel, mode="same")


def train_window(records: list[dict]) -> int:
    """Records per moving mean: about 4% of the run, odd, at least 1."""
    return max(1, len(records) // 25) | 1


def y_range(runs: list[list[dict]]) -> tuple[float, float]:
    """Every validation point and the smoothed training loss after the first 5% of the steps: only the
    first few steps' loss (about ln 50257 = 10.8) runs off the top, instead of flattening the rest."""
    last = max(r["step"] for rec in runs for r in rec)
    bounds = [r["val_loss"] for rec in runs for r in rec if r.get("val_loss") is not None]
    for rec in runs:
        kept = [r for r in rec if r.get("train_loss") is not None]
        smooth = smoothed([r["train_loss"] for r in kept], train_window(kept))
        bounds += [float(v) for r, v in zip(kept, smooth) if r["step"] >= 0.05 * last]
    if not bounds:  # a run that has barely started: all of it
        every = [r for rec in runs for r in rec]
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
            kept = [r for r in rec if r.get("train_loss") is not None]
            ax.plot([r["step"] for r in kept], smoothed([r["train_loss"] for r in kept], train_window(kept)),
                    color=kw["color"], linestyle=kw["linestyle"], lw=0.9, alpha=0.45)
            val = [r for r in rec if r.get("val_loss") is not None]
            if val:
                label += f" (val {val[-1]['val_loss']:.3f} at step {val[-1]['step']})"
            ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], markevery=markevery(len(val)),
                    label=label, **kw)
        ax.set_ylim(*y_range([rec for rec, _ in loaded]))
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss (markers: validation,\nfaint: training, moving mean)")
        size = RC["axes.titlesize"]
        ax.set_title("\n".join(pack_lines(title, lambda line: fits(fig, line, size))))
        fig.legend(loc="outside lower center", ncol=1, frameon=False, handlelength=3.2)
        for path in save(fig, args.out):
            print(f"wrote {path}")
        plt.close(fig)


if __name__ == "__main__":
    main()
