"""The verdict of modded-nanogpt's optimization track on runs of `experiment=track3`.

    python scripts/track3_verdict.py runs/track3                       # every run folder under it
    python scripts/track3_verdict.py runs/track3 --baseline track3_muon --out runs/track3/verdict

The track's rules (records/track_3_optimization/README.md in KellerJordan/modded-nanogpt; the formulas are
study/stats.py's): a configuration is valid at its step count when the mean final validation loss of its n
non-cherry-picked runs satisfies ``(3.28 − mean) · sqrt(n) ≥ 0.004``; it may stop early only at a step chosen
the same for all runs, which is why the late evaluations (every 25 steps over the last 10%) are listed with
the earliest that passes. Against a baseline, a configuration is better when
``((mean_base − mean) + 0.0045 · (steps_base − steps) / 100) / sqrt(1/n_base + 1/n) ≥ 0.004``.

Runs are grouped into settings (study/runs.py: the same config apart from the seed); each setting is one
configuration, named by its optimizer config's label. Only configurations that follow the track are judged:
what `experiment=track3` composes (configs/experiment/track3.yaml: model, data and its order, batch, the
validation slice, the schedule; one forward-backward a step) is the protocol, the optimizer, seed and step
count are the entrant's (study/protocol.py). The others are listed with the first key that differs; those
that differ only in their gradient passes a step are still drawn, also against gradient evaluations.
Prints a markdown report and writes <out>/verdict.md and <out>/track3.{png,pdf} (out defaults to the first
folder given). Exit 2: runs that cannot be read, or none that follows the track.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, from a plain checkout too
from study import plots, protocol, runs, stats, tables  # noqa: E402

EXIT_REFUSED = 2
EXPERIMENT = "track3"  # configs/experiment/track3.yaml: the track's protocol


class Config:
    """One configuration of the track: a setting's runs (finished), their final and late evaluations."""

    def __init__(self, setting: runs.Setting, track: protocol.Protocol):
        self.setting, self.runs = setting, setting.runs
        self.label, self.optimizer, self.steps = setting.label, setting.optimizer, self.runs[0].steps
        self.n, self.passes = len(self.runs), max(r.passes for r in self.runs)
        self.val = [r.val() for r in self.runs]
        diffs = (protocol.first_difference(track, r.config, r.passes) for r in self.runs)
        self.difference = next((d for d in diffs if d is not None), None)  # None: it follows the track

    @property
    def drawn(self) -> bool:
        """Trained as the track says, perhaps with more gradient passes a step (its figure shows those)."""
        return self.difference is None or self.difference.key == protocol.PASSES

    def finals(self) -> list[float]:
        return [v[self.steps] for v in self.val]

    def late_steps(self) -> list[int]:
        """The evaluations every run has over the last 10% of the steps (the track's late cadence)."""
        common = set.intersection(*[set(v) for v in self.val])
        return sorted(s for s in common if s >= 0.9 * self.steps)

    def mean_at(self, step: int) -> float:
        return float(np.mean([v[step] for v in self.val]))


def configurations(folders: list[Path]) -> list[Config]:
    found = runs.find(folders)
    for r in found:
        if r.why_unfinished:
            raise runs.RunError(f"{r.path} is not a finished run ({r.why_unfinished}); finish it or move it")
    track = protocol.protocol(EXPERIMENT)
    return [Config(s, track) for s in runs.settings(found)]


def show(value) -> str:
    return "null" if value is None else str(value)


def not_judged(configs: list[Config]) -> list[str]:
    """A table of the configurations that do not follow the track, each with the first key that differs."""
    rows = [
        [c.label, c.steps, c.n, c.difference.key, show(c.difference.expected), show(c.difference.found)]
        for c in configs
        if c.difference is not None
    ]
    return tables.markdown(["optimizer", "steps", "n", "key", "the track's", "found"], "lrrlll", rows)


def report(every: list[Config], baseline: str | None) -> str:
    configs = [c for c in every if c.difference is None]
    source = f"experiment={EXPERIMENT} (configs/experiment/{EXPERIMENT}.yaml)"
    if not configs:
        why = "\n".join(not_judged(every))
        raise runs.RunError(f"no run here follows {source}; the first key each differs in:\n{why}")
    rows = []
    for c in configs:
        mean, std = stats.mean_std(c.finals())
        stat = stats.track_significance(mean, c.n)
        earliest = next(
            (s for s in c.late_steps() if stats.track_passes(stats.track_significance(c.mean_at(s), c.n))),
            None,
        )
        rows.append(
            [
                c.label,
                c.steps,
                c.n,
                tables.pm(mean, std),
                f"{stat:+.5f}",
                "yes" if stats.track_passes(stat) else "no",
                earliest if earliest is not None else "—",
            ]
        )
    lines = tables.markdown(
        [
            "optimizer",
            "steps",
            "n",
            "final val loss",
            "(3.28 − mean)·√n",
            "reaches 3.28",
            "earliest late step that passes",
        ],
        "lrrrrlr",
        rows,
    )
    lines += [
        "",
        "Late evaluations (mean over runs): "
        + "; ".join(
            f"{c.optimizer}@{c.steps}: " + ", ".join(f"{s} {c.mean_at(s):.4f}" for s in c.late_steps())
            for c in configs
        ),
    ]
    base = next((c for c in configs if baseline in (c.optimizer, c.label)), None)
    if baseline is not None and base is None:
        off = next((c for c in every if baseline in (c.optimizer, c.label)), None)
        if off is not None:
            d = off.difference
            raise runs.RunError(
                f"baseline {baseline!r} does not follow experiment={EXPERIMENT}: {d.key} is "
                f"{show(d.found)}, the track's is {show(d.expected)}; choose another with --baseline"
            )
        raise runs.RunError(
            f"baseline {baseline!r} has no runs here; runs of: {', '.join(c.label for c in configs)}"
        )
    if base is not None:
        rows = []
        for c in configs:
            if c is not base:
                s = stats.track_pairwise(
                    float(np.mean(base.finals())),
                    base.n,
                    base.steps,
                    float(np.mean(c.finals())),
                    c.n,
                    c.steps,
                )
                rows.append([c.label, c.steps, f"{s:+.5f}", "yes" if stats.track_passes(s) else "no"])
        lines += [
            "",
            f"Pairwise against {base.label} at {base.steps} steps (n = {base.n}): better when the "
            f"statistic is ≥ {stats.TRACK_MARGIN}.",
            "",
            *tables.markdown(["optimizer", "steps", "statistic", "better than the baseline"], "lrrl", rows),
        ]
    if len(configs) < len(every):
        lines += ["", f"Not judged: these runs do not follow {source}; the first key that differs:", ""]
        lines += not_judged(every)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="run directories or folders holding them")
    ap.add_argument(
        "--baseline",
        default="track3_muon",
        help="optimizer config (or label) the others are compared with (default: track3_muon, if run)",
    )
    ap.add_argument("--out", type=Path, default=None, help="where verdict.md and the figure go")
    args = ap.parse_args(argv)
    try:
        configs = configurations(args.folders)
        names = {c.optimizer for c in configs if c.difference is None}
        names |= {c.label for c in configs if c.difference is None}
        baseline = args.baseline if args.baseline in names or args.baseline != "track3_muon" else None
        text = report(configs, baseline)
    except runs.RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    out = args.out or args.folders[0]
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdict.md").write_text(text)
    print(text)
    groups = [
        (c.optimizer, f"{c.label} ({c.steps}, n={c.n}{note})", c.passes, steps, [c.mean_at(s) for s in steps])
        for c in configs
        if c.drawn
        for steps in [sorted(set.intersection(*[set(v) for v in c.val]))]
        for note in ["" if c.difference is None else f"; {c.passes} passes a step, not judged"]
    ]
    for p in [out / "verdict.md", *plots.track(groups, stats.TRACK_TARGET, out / "track3.png")]:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
