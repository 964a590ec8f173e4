"""A comparison of any finished (or running) runs: settings averaged over seeds, one figure and one table.

Runs are grouped into settings by their configs (study/runs.py: the same config apart from the seed and the
resume-free keys), labelled from their optimizer configs' `label`, drawn one style per setting; the first
setting (or the one named as baseline) is the baseline of the Δ panel and of the table's paired Δ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from study import plots, runs, tables
from study.stats import paired


def compare(paths: list[Path], out: Path, title: str | None = None, baseline: str | None = None) -> dict:
    """Figure <out>.png/.pdf and table <out>.md of the runs at or under `paths`; RunError naming a problem."""
    found = runs.find(paths)
    for r in found:
        if r.why_unfinished:
            if not r.val():
                raise runs.RunError(
                    f"{r.path} has no evaluation yet ({r.why_unfinished}); leave it out or wait"
                )
            print(
                f"note: {r.path} is unfinished ({r.why_unfinished}): drawn up to where it is", file=sys.stderr
            )
    groups = runs.settings(found)
    if baseline is not None:
        names = [g.label for g in groups]
        if baseline not in names:
            raise runs.RunError(f"--baseline {baseline!r} is none of the settings: {', '.join(names)}")
        groups.sort(key=lambda g: g.label != baseline)
    curves = [runs.curve(g.runs, g.label, g.optimizer) for g in groups]
    titles = {str(runs.select(r.config, "figure.title") or "") for r in found}
    title = title or (titles.pop() if len(titles) == 1 and "" not in titles else "Validation loss")
    cfg = found[0].config
    n = sorted({len(c.seeds) for c in curves})
    subtitle = (
        f"{runs.select(cfg, 'model.name')} model, {runs.select(cfg, 'data.name')} data, "
        f"{'/'.join(map(str, n))} seed{'s' if n != [1] else ''} a setting"
    )
    figures = plots.comparison(curves, title, subtitle, out.with_suffix(".png"))
    base = curves[0]
    rows = []
    for c in curves:
        finals = dict(zip(c.seeds, c.per_seed[:, -1]))
        d = paired(finals, dict(zip(base.seeds, base.per_seed[:, -1])))
        rows.append(
            [
                c.label,
                " ".join(map(str, c.seeds)),
                int(c.step[-1]),
                tables.over_seeds(list(finals.values())),
                "(baseline)" if c is base else tables.delta(d),
                "" if c is base else d.verdict,
                tables.fmt_tokens(c.tokens[-1]),
                f"{c.time_s[-1]:.0f}",
            ]
        )
    md = (
        "\n".join(
            tables.markdown(
                [
                    "setting",
                    "seeds",
                    "step",
                    "val loss (mean ± std)",
                    f"Δ vs {base.label} (paired)",
                    "verdict",
                    "tokens",
                    "train time (s)",
                ],
                "llrrrlrr",
                rows,
            )
        )
        + "\n"
    )
    out.with_suffix(".md").write_text(md)
    return dict(figures=figures, tables=[out.with_suffix(".md")], markdown=md)
