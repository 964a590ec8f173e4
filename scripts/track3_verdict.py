"""The verdict of modded-nanogpt's optimization track on runs of `experiment=track3`.

    python scripts/track3_verdict.py runs/track3                       # every run folder under it
    python scripts/track3_verdict.py runs/track3 --baseline track3_muon --out runs/track3/verdict

The track's rules (records/track_3_optimization/README.md in KellerJordan/modded-nanogpt): a configuration
is valid at its step count when the mean final validation loss of its n non-cherry-picked runs satisfies
``(3.28 − mean) · sqrt(n) ≥ 0.004``; it may stop early only at a step chosen the same for all runs, which is
why the late evaluations (every 25 steps over the last 10%) are listed with the earliest that passes. Against
a baseline, a configuration is better when
``((mean_base − mean) + 0.0045 · (steps_base − steps) / 100) / sqrt(1/n_base + 1/n) ≥ 0.004``
(0.0045 loss per 100 steps is the track's measured exchange rate). A step may do one forward-backward:
an optimizer with more gradient passes a step is reported, marked outside the rules, and its curve is also
drawn against gradient evaluations.

Runs are grouped by optimizer and step count; runs of one group that trained differently otherwise (other
than the seed) are an error naming them. Prints a markdown report and writes <out>/verdict.md and
<out>/track3.{png,pdf} (out defaults to the first folder given).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import rundir
from harness.config import flat_config, resume_free
from scripts.figure_style import RC, WIDTH, pyplot, save, style

TARGET = 3.28  # the track's validation loss target
MARGIN = 0.004  # 3.09 sigma of the track's assumed per-run sigma 0.0013 (p < .001)
LOSS_PER_100_STEPS = 0.0045  # the track's exchange rate between steps and final loss
EXIT_REFUSED = 2


class VerdictError(RuntimeError):
    """The runs cannot be judged as given; the message names the run and the fix."""


# ----------------------------------------------------------------------------- the track's formulas
def significance(mean_loss: float, n: int, target: float = TARGET) -> float:
    """``(target − mean_loss) · sqrt(n)``: at least MARGIN means the n runs reach below the target."""
    return (target - mean_loss) * math.sqrt(n)


def reaches_target(mean_loss: float, n: int, target: float = TARGET) -> bool:
    return significance(mean_loss, n, target) >= MARGIN - 1e-12


def pairwise(base_mean: float, base_n: int, base_steps: int, mean: float, n: int, steps: int) -> float:
    """``((base_mean − mean) + 0.0045 · (base_steps − steps)/100) / sqrt(1/base_n + 1/n)``: at least MARGIN
    means the configuration is better than the baseline beyond the noise."""
    gain = (base_mean - mean) + LOSS_PER_100_STEPS * (base_steps - steps) / 100
    return gain / math.sqrt(1 / base_n + 1 / n)


# ----------------------------------------------------------------------------- runs
@dataclass
class Run:
    path: Path
    optimizer: str
    steps: int
    seed: int
    passes: int  # gradient passes a step
    config: dict
    val: dict[int, float]  # step -> validation loss


def load_run(path: Path) -> Run:
    cfg = rundir.read_config(path)
    if cfg is None:
        raise VerdictError(f"{path} has no {rundir.CONFIG}: is it a run directory of train.py?")
    steps = int(cfg["train"]["steps"])
    done, why = rundir.completion(path, steps)
    if not done:
        raise VerdictError(f"{path} is not a finished run ({why}); finish it (rerun its command) or move it")
    records = rundir.read_metrics(path)
    val = {int(r["step"]): float(r["val_loss"]) for r in records if r.get("val_loss") is not None}
    last = records[-1]
    passes = int(round(last["grad_evals"] / last["step"])) if last.get("grad_evals") else 1
    return Run(path, cfg["optimizer"]["name"], steps, int(cfg["seed"]), passes, cfg, val)


def find_runs(folders: list[Path]) -> list[Run]:
    paths = []
    for folder in folders:
        if not folder.exists():
            raise VerdictError(f"{folder} does not exist")
        paths += sorted(m.parent for m in folder.rglob(rundir.METRICS))
    if not paths:
        raise VerdictError(f"no run under {', '.join(map(str, folders))} (no {rundir.METRICS} found)")
    return [load_run(p) for p in paths]


@dataclass
class Group:
    optimizer: str
    steps: int
    runs: list[Run]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def passes(self) -> int:
        return max(r.passes for r in self.runs)

    def finals(self) -> np.ndarray:
        return np.array([r.val[r.steps] for r in self.runs])

    def late_steps(self) -> list[int]:
        """The evaluations every run has over the last 10% of the steps (the track's late cadence)."""
        common = set.intersection(*[set(r.val) for r in self.runs])
        return sorted(s for s in common if s >= 0.9 * self.steps)

    def mean_at(self, step: int) -> float:
        return float(np.mean([r.val[step] for r in self.runs]))


def trained_differently(a: Run, b: Run) -> list[str]:
    fa, fb = flat_config(a.config), flat_config(b.config)
    keys = sorted(k for k in set(fa) | set(fb)
                  if not resume_free(k) and k != "seed" and fa.get(k) != fb.get(k))
    return [f"{k}: {fa.get(k)!r} vs {fb.get(k)!r}" for k in keys]


def group_runs(runs: list[Run]) -> list[Group]:
    groups: dict[tuple[str, int], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.optimizer, run.steps), []).append(run)
    for (opt, steps), members in groups.items():
        seeds = [r.seed for r in members]
        if len(set(seeds)) != len(seeds):
            raise VerdictError(f"{opt} at {steps} steps has two runs of one seed: "
                               f"{', '.join(str(r.path) for r in members)}; keep one of each")
        for other in members[1:]:
            diff = trained_differently(members[0], other)
            if diff:
                raise VerdictError(f"{members[0].path} and {other.path} ({opt}, {steps} steps) trained "
                                   f"differently: {'; '.join(diff[:5])}. Give them different optimizer names "
                                   "(a config of their own) or judge them separately")
    return [Group(o, s, sorted(rs, key=lambda r: r.seed)) for (o, s), rs in sorted(groups.items())]


# ----------------------------------------------------------------------------- the report
def report(groups: list[Group], baseline: str | None) -> str:
    lines = ["| optimizer | steps | passes/step | n | final val loss | (3.28 − mean)·√n | reaches 3.28 | "
             "earliest late step that passes |", "|---|---:|---:|---:|---:|---:|---|---:|"]
    for g in groups:
        f = g.finals()
        std = f"{np.std(f, ddof=1):.4f}" if g.n > 1 else "n/a"
        stat = significance(float(f.mean()), g.n)
        earliest = next((s for s in g.late_steps() if reaches_target(g.mean_at(s), g.n)), None)
        rules = "" if g.passes == 1 else f" (outside the track's rules: {g.passes} passes a step)"
        lines.append(f"| {rundir.optimizer_label(g.optimizer)}{rules} | {g.steps} | {g.passes} | {g.n} | "
                     f"{f.mean():.4f} ± {std} | {stat:+.5f} | {'yes' if stat >= MARGIN - 1e-12 else 'no'} | "
                     f"{earliest if earliest is not None else '—'} |")
    lines.append("")
    lines.append("Late evaluations (mean over runs): "
                 + "; ".join(f"{g.optimizer}@{g.steps}: " + ", ".join(f"{s} {g.mean_at(s):.4f}"
                                                                     for s in g.late_steps())
                             for g in groups))
    base = [g for g in groups if g.optimizer == baseline]
    if baseline is not None and not base:
        raise VerdictError(f"baseline {baseline!r} has no runs here; runs of: "
                           f"{', '.join(sorted({g.optimizer for g in groups}))}")
    if base:
        b = base[0]
        lines += ["", f"Pairwise against {rundir.optimizer_label(b.optimizer)} at {b.steps} steps "
                  f"(n = {b.n}): better when the statistic is ≥ {MARGIN}.", "",
                  "| optimizer | steps | statistic | better than the baseline |", "|---|---:|---:|---|"]
        for g in groups:
            if g is b:
                continue
            s = pairwise(float(b.finals().mean()), b.n, b.steps, float(g.finals().mean()), g.n, g.steps)
            lines.append(f"| {rundir.optimizer_label(g.optimizer)} | {g.steps} | {s:+.5f} | "
                         f"{'yes' if s >= MARGIN - 1e-12 else 'no'} |")
    return "\n".join(lines) + "\n"


def plot(groups: list[Group], out: Path) -> list[Path]:
    plt = pyplot()
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 2.8), layout="constrained", sharey=True)
        for i, g in enumerate(groups):
            steps = sorted(set.intersection(*[set(r.val) for r in g.runs]))
            mean = [g.mean_at(s) for s in steps]
            kw = style(g.optimizer, fallback=i)
            label = f"{rundir.optimizer_label(g.optimizer)} ({g.steps}, n={g.n})"
            axes[0].plot(steps, mean, label=label, **kw)
            axes[1].plot([s * g.passes for s in steps], mean, **kw)
        for ax in axes:
            ax.axhline(TARGET, color="grey", lw=0.6, ls=":")
        lo = min(min(g.finals().min() for g in groups) - 0.02, TARGET - 0.02)
        axes[0].set_ylim(lo, lo + 0.5)
        axes[0].set_xlabel("optimizer step")
        axes[1].set_xlabel("gradient evaluations")
        axes[0].set_ylabel("validation loss")
        fig.legend(loc="outside lower center", ncol=1, frameon=False)
        paths = save(fig, out / "track3.png")
        plt.close(fig)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="run directories or folders holding them")
    ap.add_argument("--baseline", default="track3_muon",
                    help="optimizer config the others are compared with (default: track3_muon, if run)")
    ap.add_argument("--out", type=Path, default=None, help="where verdict.md and the figure go")
    args = ap.parse_args(argv)
    try:
        groups = group_runs(find_runs(args.folders))
        names = {g.optimizer for g in groups}
        baseline = args.baseline if args.baseline in names or args.baseline != "track3_muon" else None
        text = report(groups, baseline)
    except VerdictError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    out = args.out or args.folders[0]
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdict.md").write_text(text)
    print(text)
    for p in [out / "verdict.md", *plot(groups, out)]:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
