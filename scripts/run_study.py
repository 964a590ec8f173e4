"""Run a study from its study file, then rebuild its tables and figures from the finished runs.

    python scripts/run_study.py results/proxy/study.yaml --parallel 2      # run what is missing, then report
    python scripts/run_study.py results/proxy/study.yaml --report-only     # tables and figures only
    python scripts/run_study.py results/proxy/study.yaml --dry-run         # what is done, what is next
    python scripts/run_study.py results/small/study.yaml --report-only --out /tmp/small   # written elsewhere

A study file (results/<study>/study.yaml) is data: its kind (figures, tuned, settings), runs, grids, seeds
and comparisons; study/spec.py and the kind's module (study/figures.py, study/tuned.py, study/settings.py)
document its keys. Finished runs are skipped and interrupted ones resume, so the same command continues a
study; a finished run keeps config.yaml, metrics.jsonl, summary.json and train.log (its checkpoints and
the launcher's log go). Exit 1: a run failed (not by divergence); exit 2: the study file or its runs
cannot be used as they are (the message names the file, key or run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, from a plain checkout
from study import cli, figures, launch, runs, settings, spec, tuned

KINDS = {"figures": figures, "tuned": tuned, "settings": settings}


def load(path: Path) -> spec.StudyFile:
    return spec.load(path, {name: module.KEYS for name, module in KINDS.items()})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", type=Path, help="the study file, e.g. results/proxy/study.yaml")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the tables and figures")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the tables and figures go (default: beside the study file)",
    )
    ap.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="figures kind: draw unfinished runs up to where they are",
    )
    cli.add_launch_arguments(ap, parallel=2, progress_every=120.0)
    args = ap.parse_args(argv)
    cli.check_launch_arguments(ap, args)
    say = cli.sayer("study")
    try:
        sf = load(args.study)
        kind = KINDS[sf.kind]
        if not args.report_only:
            with launch.Composer() as composer:
                rc = cli.drive(lambda: kind.plan_study(sf, composer), args, say, tidy=True)
            if rc or args.dry_run or args.count or args.print_commands or args.task_index is not None:
                return rc
        out = kind.report_study(sf, args.out, args.allow_incomplete)
    except (spec.SpecError, runs.RunError, launch.LaunchError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume (finished runs are kept)", file=sys.stderr)
        return 130
    print(out["markdown"])
    for p in [*out["tables"], *out["figures"]]:
        say(f"wrote {launch.display_path(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
