"""Launch runs: experiments × optimizers × seeds, skipping finished runs and resuming unfinished ones.

    python scripts/sweep.py --seeds 0 1 2 --nproc 8          # the papers' five figures, torchrun x 8
    python scripts/sweep.py --experiments fig1 fig3 --seeds 0 1 2        # some of them, one process each
    python scripts/sweep.py --experiments quickstart --optimizers muon my_qhm --seeds 0 1 --results runs/mine
    python scripts/sweep.py ... --dry-run                                # the plan and the commands

Each experiment (configs/experiment/<name>.yaml; by default the papers' five figures, harness/rundir.py
PAPER_FIGURES) contributes the optimizers of its `figure.optimizers` (or those given with --optimizers) at
every seed. A run is named by what it trains: ``<results>/<optimizer>_b<global batch>_s<seed>``, so a
baseline several figures share runs once; two planned runs that would share a directory must resolve to
the same config. --large-batch / --small-batch replace the papers' 512 / 128 sequences. The plan is the
`figures` kind of study (study/figures.py): a committed study states the same in its study file and runs
with scripts/run_study.py; then `python scripts/compare.py <results>` draws any set of finished runs.

Before launching, each run directory is classified (study/launch.py `state`): done (skipped), resume (a
checkpoint: rerun with resume=auto, which continues from it) or new; a directory holding a run of another
config is an error. Each process's output goes to <run_dir>/launcher.out; a failed run makes the exit code 1.

Slurm (or any scheduler): the plan is deterministic, so a job array runs one planned run per task:
    N=$(python scripts/sweep.py <same args> --count)
    sbatch --array=0-$((N-1)) --gpus-per-node=8 --wrap \\
        "python scripts/sweep.py <same args> --nproc 8 --task-index \\$SLURM_ARRAY_TASK_ID"
or feed `--print-commands` (one shell command per run still to do) to your own submission script.
--drop-ckpt removes the checkpoints (and launcher.out) of every finished run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, from a plain checkout
from harness import rundir  # noqa: E402
from study import cli, figures, launch, spec  # noqa: E402


def parse_args(argv=None):
    argv, extra = cli.split_passthrough(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--experiments",
        nargs="+",
        default=list(rundir.PAPER_FIGURES),
        help=f"experiment configs (default, the papers' figures: {' '.join(rundir.PAPER_FIGURES)})",
    )
    ap.add_argument(
        "--optimizers",
        nargs="+",
        default=None,
        help="optimizers to run under every experiment (default: its figure.optimizers)",
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="parent of the run directories <optimizer>_b<B>_s<seed> (default: results)",
    )
    ap.add_argument("--large-batch", type=int, default=None, help="global batch replacing the papers' 512")
    ap.add_argument("--small-batch", type=int, default=None, help="global batch replacing the papers' 128")
    ap.add_argument("--drop-ckpt", action="store_true", help="delete <run_dir>/ckpt of every finished run")
    cli.add_launch_arguments(ap)
    args = ap.parse_args(argv)
    cli.check_launch_arguments(ap, args)
    args.extra = extra
    args.batches = {k: v for k, v in ((512, args.large_batch), (128, args.small_batch)) if v is not None}
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    say = cli.sayer("sweep")
    results = (args.results if args.results.is_absolute() else Path.cwd() / args.results).resolve()
    try:
        with launch.Composer() as composer:
            planned = figures.plan(
                args.experiments, args.seeds, args.optimizers, results, args.extra, args.batches, composer
            )
        return cli.drive(lambda: (planned, []), args, say, tidy=args.drop_ckpt)
    except (spec.SpecError, launch.LaunchError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
