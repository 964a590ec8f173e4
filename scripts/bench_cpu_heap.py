"""Does keeping freed CPU memory (harness/memory.py) stop a training run from re-faulting its buffers?

Runs the same `python train.py ...` command with MVR_CPU_HEAP=release (glibc's own behaviour) and
MVR_CPU_HEAP=retain (the default), alternating, --repeats times each, and prints side by side: the
median step time the run recorded, user and system CPU seconds of the process (getrusage of the child),
minor page faults per step (the whole process, start-up included, divided by the steps) and the final
validation loss, which must be identical. Defaults: the quick start's shapes on synthetic data.

    python scripts/bench_cpu_heap.py                       # 30 quick-start steps, muon
    python scripts/bench_cpu_heap.py --steps 20 -- optimizer=muon_mvr2 train.val_every=10
    python scripts/bench_cpu_heap.py --base "" --steps 150 -- experiment=proxy optimizer=gluon_mvr1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, from a plain checkout too
from study import cli, launch  # noqa: E402

BASE = [
    "experiment=quickstart",
    "data=synthetic",
    "optimizer=muon",
    "train.val_every=0",
    "train.ckpt_every=0",
    "data.val_tokens=4096",
]
MODES = ("release", "retain")


def run_once(mode: str, overrides: list[str], steps: int, run_dir: Path) -> dict:
    """One training run through the launcher; its CPU times and faults from getrusage(RUSAGE_CHILDREN)."""
    argv = launch.train_argv(
        [*overrides, f"train.steps={steps}", f"train.log_every={steps}", f"run_dir={run_dir}", "resume=never"]
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    log = run_dir.parent / f"{run_dir.name}.out"
    rc, _, error = launch.run_one(argv, log, env=launch.environment(extra={"MVR_CPU_HEAP": mode}))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({rc}): {error}\n{launch.tail(log, 4000)}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return dict(
        step_ms=summary["median_step_ms"],
        user_s=after.ru_utime - before.ru_utime,
        sys_s=after.ru_stime - before.ru_stime,
        faults_per_step=(after.ru_minflt - before.ru_minflt) / steps,
        val_loss=summary["final_val_loss"],
    )


def main(argv=None) -> dict:
    argv, extra = cli.split_passthrough(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=1, help="runs per mode, alternating release/retain")
    ap.add_argument(
        "--base",
        default=" ".join(BASE),
        help="overrides before those after `--` (default: the quick start's shapes on "
        "synthetic data; '' for none)",
    )
    args = ap.parse_args(argv)
    extra = args.base.split() + extra

    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="bench-cpu-heap-") as tmp:
        for r in range(args.repeats):
            for mode in MODES:
                runs[mode].append(run_once(mode, extra, args.steps, Path(tmp) / f"{mode}_{r}"))
                print(f"[{mode} {r + 1}/{args.repeats}] {runs[mode][-1]}", flush=True)

    med = {m: {k: statistics.median(run[k] for run in runs[m]) for k in runs[m][0]} for m in MODES}
    print(f"\n{args.steps} steps of train.py {' '.join(extra)}  (median of {args.repeats} run(s))")
    print(
        f"{'MVR_CPU_HEAP':<13}{'ms/step':>9}{'user s':>9}{'sys s':>8}{'sys/user':>10}{'faults/step':>13}"
        f"  final val loss"
    )
    for m in MODES:
        x = med[m]
        ratio = x["sys_s"] / x["user_s"]
        print(
            f"{m:<13}{x['step_ms']:>9.0f}{x['user_s']:>9.1f}{x['sys_s']:>8.1f}{ratio:>10.1%}"
            f"{x['faults_per_step']:>13,.0f}  {x['val_loss']!r}"
        )
    speedup = med["release"]["step_ms"] / med["retain"]["step_ms"]
    same = all(a["val_loss"] == b["val_loss"] for a, b in zip(runs["release"], runs["retain"]))
    print(f"retain is {speedup:.2f}x faster per step; final losses {'identical' if same else 'DIFFER'}")
    return dict(modes=med, speedup=speedup, identical=same)


if __name__ == "__main__":
    main()
