"""Figure style shared by every script that draws (make_figures.py, plot_runs.py, proxy_study.py):
sizes, fonts, colours, dash patterns and markers per optimizer, line packing for titles, and saving.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from harness import rundir

# Colours (Okabe-Ito, then darker tones), dash patterns and markers, taken in the order of
# rundir.optimizer_names(): the i-th optimizer gets entry i of each list (modulo its length), so a variant
# looks the same in every figure. Five dash patterns: any five consecutive optimizers (a family and its
# variants) differ in dash, marker and colour, so they stay apart in greyscale.
PALETTE = ["#000000", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#882255",
           "#7F7F7F", "#117733", "#332288", "#999933", "#AA4499", "#44AA99"]
LINESTYLES = ["-", (0, (5, 1.5)), (0, (1, 1.2)), (0, (6, 1.5, 1.2, 1.5)), (0, (10, 2.5)),
              (0, (3, 1, 1, 1, 1, 1)), (0, (2, 3))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "h", "<", "*", ">", "d", "p", "H"]
# Sized for a single column: a figure is at most WIDTH inches wide, so printed 3.3 in wide its smallest
# text (9.5 pt) is still 9.5 x 3.3 / 4.6 = 6.8 pt (tests/test_figures.py measures this on the saved files).
WIDTH = 4.6
RC = {"font.size": 10, "axes.labelsize": 10, "axes.titlesize": 10, "xtick.labelsize": 9.5,
      "ytick.labelsize": 9.5, "legend.fontsize": 9.5, "legend.title_fontsize": 9.5, "figure.titlesize": 10,
      "lines.linewidth": 1.6, "lines.markersize": 4.5, "axes.grid": True, "grid.alpha": 0.3,
      "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": 200}


def style(optimizer: str, fallback: int | None = None) -> dict:
    """Line keywords (color, linestyle, marker) of an optimizer: its place in rundir.optimizer_names(),
    else `fallback`, else the first place after them."""
    names = rundir.optimizer_names()
    i = names.index(optimizer) if optimizer in names else (len(names) if fallback is None else fallback)
    return dict(color=PALETTE[i % len(PALETTE)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                marker=MARKERS[i % len(MARKERS)])


def markevery(n: int, most: int = 15) -> int:
    """Every evaluation gets a marker, thinned to at most `most` per line on long runs."""
    return max(1, math.ceil(n / most))


def save(fig, png: Path) -> list[Path]:
    """Write the figure as PNG and as PDF (vector, fonts embedded) beside it; returns both paths."""
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
    after a ';' or ',', so that no phrase such as "150 steps" or "Gluon 3.6e-4 (×1)" is split); a phrase too
    long for a line of its own is broken between its words."""
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
