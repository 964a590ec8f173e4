"""Plot validation (and training) loss of finished or running runs into one PNG.

    python scripts/plot_runs.py runs/quickstart/muon_s0 runs/quickstart/muon_mvr1_s0 \
        --out runs/quickstart/loss.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a run directory of train.py?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run directories (each with metrics.jsonl)")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in args.runs:
        rec = read_metrics(run)
        label = run.name
        line, = ax.plot([r["step"] for r in rec], [r["train_loss"] for r in rec], alpha=0.25, lw=0.8)
        val = [r for r in rec if "val_loss" in r]
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", color=line.get_color(),
                label=f"{label} (val {val[-1]['val_loss']:.3f})" if val else label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (faint: train, markers: validation)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
