"""The figure style and the figures every study and script draws.

Style: colours (Okabe-Ito, then darker tones), dash patterns and markers taken in the order of
rundir.optimizer_names(), so one optimizer config looks alike in every figure (also in greyscale: any five
consecutive configs differ in dash, marker and colour); settings that share an optimizer config are styled
by their place instead. Figures are WIDTH (4.6) inches wide, so that printed in a single column (3.3 in)
no text is under 6 pt (tests/test_figures.py measures this on the saved files). Each figure is saved as PNG
and as PDF beside it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from harness import rundir
from study.runs import Curve, DeltaCurve, delta_curve

PALETTE = [
    "#000000",
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#D55E00",
    "#56B4E9",
    "#882255",
    "#7F7F7F",
    "#117733",
    "#332288",
    "#999933",
    "#AA4499",
    "#44AA99",
]
LINESTYLES = [
    "-",
    (0, (5, 1.5)),
    (0, (1, 1.2)),
    (0, (6, 1.5, 1.2, 1.5)),
    (0, (10, 2.5)),
    (0, (3, 1, 1, 1, 1, 1)),
    (0, (2, 3)),
]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "h", "<", "*", ">", "d", "p", "H"]
WIDTH = 4.6
RC = {
    "font.size": 10,
    "axes.labelsize": 10,
    "axes.titlesize": 10,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 9.5,
    "legend.title_fontsize": 9.5,
    "figure.titlesize": 10,
    "lines.linewidth": 1.6,
    "lines.markersize": 4.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "savefig.dpi": 200,
}


def style(optimizer: str, fallback: int | None = None) -> dict:
    """Line keywords (color, linestyle, marker): the optimizer's place in rundir.optimizer_names(), else
    `fallback`, else the first place after them."""
    names = rundir.optimizer_names()
    i = names.index(optimizer) if optimizer in names else (len(names) if fallback is None else fallback)
    return dict(
        color=PALETTE[i % len(PALETTE)],
        linestyle=LINESTYLES[i % len(LINESTYLES)],
        marker=MARKERS[i % len(MARKERS)],
    )


def styles(keys: list[str]) -> list[dict]:
    """One style per curve: by optimizer config where each curve has its own, else by place."""
    own = len(set(keys)) == len(keys)
    return [style(k) if own else style("", fallback=i) for i, k in enumerate(keys)]


def markevery(n: int, most: int = 15) -> int:
    """Every evaluation gets a marker, thinned to at most `most` per line on long runs."""
    return max(1, math.ceil(n / most))


def save(fig, png: Path) -> list[Path]:
    """Write the figure as PNG and as PDF (vector, fonts embedded) beside it; returns both paths."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    pdf = png.with_suffix(".pdf")
    fig.savefig(png, bbox_inches="tight", pad_inches=0.03)
    fig.savefig(pdf, bbox_inches="tight", pad_inches=0.03, metadata={"CreationDate": None})
    return [png, pdf]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def padded(lo: float, hi: float, hi_all: float) -> tuple[float, float]:
    if hi - lo < 1e-6:
        hi = hi_all
    pad = 0.05 * max(hi - lo, 1e-3)
    return lo - pad, hi + pad


def pack_lines(text: str, fits, breaks: str = r"(?<=[;,]) ") -> list[str]:
    """`text` in lines that `fits(line)` accepts, broken at the spaces `breaks` matches (by default those
    after a ';' or ','); a phrase too long for a line of its own is broken between its words."""
    lines: list[str] = []
    for phrase in re.split(breaks, text):
        if lines and fits(f"{lines[-1]} {phrase}"):
            lines[-1] = f"{lines[-1]} {phrase}"
        elif fits(phrase) or " " not in phrase:
            lines.append(phrase)
        else:
            lines += pack_lines(phrase, fits, breaks=" ")
    return lines


def fits(fig, line: str, fontsize: float, share: float = 0.97) -> bool:
    """Whether `line` at `fontsize` takes at most `share` of the figure's width."""
    probe = fig.text(0, 0, line, fontsize=fontsize)
    width = probe.get_window_extent(fig.canvas.get_renderer()).width
    probe.remove()
    return width <= share * fig.bbox.width


def time_axis(seconds: np.ndarray) -> tuple[float, str]:
    top = float(np.max(seconds)) if len(seconds) else 0.0
    if top >= 2 * 3600:
        return 3600.0, "training wall-clock (h)"
    if top >= 120:
        return 60.0, "training wall-clock (min)"
    return 1.0, "training wall-clock (s)"


def token_unit(n: float) -> tuple[float, str]:
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return scale, unit
    return 1.0, ""


def y_limits(curves: list[Curve]) -> tuple[float, float]:
    """From just below the best band to the highest mean after the first 10% of training."""
    lo = min(float(np.min(c.mean - c.std)) for c in curves)
    hi_all = max(float(np.max(c.mean + c.std)) for c in curves)
    late = [c.mean[c.step >= 0.1 * c.step[-1]] for c in curves]
    hi = max(float(np.max(x)) for x in late if len(x)) if any(len(x) for x in late) else hi_all
    return padded(lo, hi, hi_all)


def delta_limits(deltas: list[DeltaCurve]) -> tuple[float, float]:
    """Zero and every band after the first 10% of training."""
    lo, hi, hi_all = 0.0, 0.0, 0.0
    for d in deltas:
        late = d.step >= 0.1 * d.step[-1]
        lo = min(lo, float(np.min((d.mean - d.std)[late])), 0.0)
        hi = max(hi, float(np.max((d.mean + d.std)[late])))
        hi_all = max(hi_all, float(np.max(d.mean + d.std)))
    return padded(lo, hi, max(hi_all, 1e-3))


def legend_label(c: Curve) -> str:
    if len(c.seeds) > 1:
        return f"{c.label}: {c.mean[-1]:.3f} ± {c.std[-1]:.3f}"
    return f"{c.label}: {c.mean[-1]:.3f}"


def _legend_below(fig, handles, title: str, renderer) -> int:
    """A legend below the panels, in two columns if they fit the figure's width, else one; its columns."""
    for ncol in (2, 1):
        legend = fig.legend(
            handles=handles,
            loc="outside lower center",
            ncol=min(ncol, len(handles)),
            title=title,
            frameon=False,
            handlelength=3.2,
            columnspacing=1.2,
        )
        if ncol == 1 or legend.get_window_extent(renderer).width <= 0.99 * fig.bbox.width:
            return ncol
        legend.remove()
    return 1


def comparison(curves: list[Curve], title: str, subtitle: str, out: Path) -> list[Path]:
    """Four panels: validation loss against optimizer steps; its Δ to the first curve (the baseline),
    paired by seed; against tokens processed (counting extra gradient passes); against training wall-clock.
    Lines are means over seeds with a marker at each evaluation, bands ± the sample std (none for one
    seed). `subtitle` is phrases separated by ', ' and '; ', wrapped to the width. Writes PNG and PDF."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    base = curves[0]
    kws = styles([c.key for c in curves])
    t_scale, t_label = time_axis(np.concatenate([c.time_s for c in curves]))
    tok_scale, tok_unit = token_unit(max(float(c.tokens[-1]) for c in curves))
    ylo, yhi = y_limits(curves)
    deltas = [delta_curve(c, base) for c in curves[1:]]
    with plt.rc_context(RC):
        fig = plt.figure(figsize=(WIDTH, 5.6), layout="constrained")
        renderer = fig.canvas.get_renderer()
        lines = [
            title,
            *(pack_lines(subtitle, lambda ln: fits(fig, ln, RC["figure.titlesize"])) if subtitle else []),
        ]
        axes = fig.subplots(2, 2)
        (ax_step, ax_delta), (ax_tok, ax_time) = axes
        panels = [
            (ax_step, "step", 1.0, "optimizer step"),
            (
                ax_tok,
                "tokens",
                tok_scale,
                f"tokens processed ({tok_unit or 'tokens'}),\nincl. extra gradient passes",
            ),
            (ax_time, "time_s", t_scale, t_label),
        ]
        handles = []
        for ax, attr, scale, xlabel in panels:
            for c, kw in zip(curves, kws):
                x = getattr(c, attr) / scale
                (line,) = ax.plot(x, c.mean, markevery=markevery(len(x)), label=legend_label(c), **kw)
                if len(c.seeds) > 1:
                    ax.fill_between(x, c.mean - c.std, c.mean + c.std, color=kw["color"], alpha=0.18, lw=0)
                if ax is ax_step:
                    handles.append(line)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("validation loss")
            ax.set_ylim(ylo, yhi)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(5))
        ax_delta.axhline(0.0, **{k: v for k, v in kws[0].items() if k != "marker"}, lw=1.2)
        for d, kw in zip(deltas, kws[1:]):
            ax_delta.plot(d.step, d.mean, markevery=markevery(len(d.step)), **kw)
            if d.n > 1:
                ax_delta.fill_between(
                    d.step, d.mean - d.std, d.mean + d.std, color=kw["color"], alpha=0.18, lw=0
                )
        ax_delta.set_xlabel("optimizer step")
        ax_delta.set_ylabel(f"Δ val. loss\nvs {base.label}")
        if deltas:
            ax_delta.set_ylim(*delta_limits(deltas))
        ax_delta.xaxis.set_major_locator(MaxNLocator(4))
        ax_delta.yaxis.set_major_locator(MaxNLocator(5))
        for ax, letter in zip(axes.flat, "abcd"):
            ax.set_title(f"({letter})", loc="left", pad=3)
        fig.suptitle("\n".join(lines))
        legend_title = "final validation loss" + (
            " (mean ± std over seeds)" if any(len(c.seeds) > 1 for c in curves) else ""
        )
        ncol = _legend_below(fig, handles, legend_title, renderer)
        fig.set_figheight(4.3 + 0.19 * (len(lines) + 1 + math.ceil(len(handles) / ncol)))
        paths = save(fig, out)
        plt.close(fig)
    return paths


def deltas(pairs: list[DeltaCurve], xlabel: str, out: Path) -> list[Path]:
    """Δ curves (paired by seed, ± std) on one axis, a zero line, the legend below."""
    plt = pyplot()
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(WIDTH, 2.8), layout="constrained")
        for i, d in enumerate(pairs):
            kw = style("", fallback=i + 1)
            (line,) = ax.plot(d.step, d.mean, markevery=markevery(len(d.step)), label=d.label, **kw)
            if d.n > 1:
                ax.fill_between(d.step, d.mean - d.std, d.mean + d.std, color=kw["color"], alpha=0.2, lw=0)
        ax.axhline(0, color="grey", lw=0.6, ls=":")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Δ validation loss\n(paired by seed, ± std)")
        fig.legend(loc="outside lower center", ncol=1, frameon=False, handlelength=3.2)
        paths = save(fig, out)
        plt.close(fig)
    return paths


def lr_grid(
    panels: list[tuple[str, list[tuple[str, str, list[tuple[float, float]]]]]], title: str, out: Path
) -> list[Path]:
    """Final validation loss against lr / the centre lr: one panel per (panel title, [(optimizer, label,
    [(factor, loss)])]), stacked in one column, each legend to the right of its panel."""
    plt = pyplot()
    with plt.rc_context(RC):
        fig, axes = plt.subplots(
            len(panels), 1, figsize=(WIDTH, 0.6 + 1.9 * len(panels)), layout="constrained", squeeze=False
        )
        for ax, (name, lines) in zip(axes[:, 0], panels):
            for opt, label, pts in lines:
                if pts:
                    f, x = zip(*pts)
                    ax.plot(f, x, label=label, **style(opt))
            ax.set_xscale("log")
            ax.axvline(1.0, color="0.5", lw=0.8, ls=":")
            ax.set_ylabel("val. loss")
            ax.set_title(name)
            ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
        axes[-1, 0].set_xlabel("lr / paper lr")
        fig.suptitle(title)
        paths = save(fig, out)
        plt.close(fig)
    return paths


def track(groups: list[tuple[str, str, int, list[int], list[float]]], target: float, out: Path) -> list[Path]:
    """The optimization track's figure: mean validation loss against steps and against gradient evaluations;
    groups are (optimizer, label, passes a step, steps, means)."""
    plt = pyplot()
    with plt.rc_context(RC):
        fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 2.8), layout="constrained", sharey=True)
        kws = styles([g[0] for g in groups])
        for (_, label, passes, steps, mean), kw in zip(groups, kws):
            axes[0].plot(steps, mean, label=label, **kw)
            axes[1].plot([s * passes for s in steps], mean, **kw)
        for ax in axes:
            ax.axhline(target, color="grey", lw=0.6, ls=":")
        lo = min(min(min(g[4]) for g in groups) - 0.02, target - 0.02)
        axes[0].set_ylim(lo, lo + 0.5)
        axes[0].set_xlabel("optimizer step")
        axes[1].set_xlabel("gradient evaluations")
        axes[0].set_ylabel("validation loss")
        fig.legend(loc="outside lower center", ncol=1, frameon=False)
        paths = save(fig, out)
        plt.close(fig)
    return paths
