"""Number formats and markdown tables: how every table of every study writes its numbers."""

from __future__ import annotations

import math

from study.stats import Paired, mean_std


def fmt_lr(lr: float) -> str:
    """An lr in run names and tables, always as mantissa and exponent: 3.6e-4, 1e-3, 1.08e-3, 3e-2."""
    mant, exp = f"{lr:.2e}".split("e")
    return f"{mant.rstrip('0').rstrip('.')}e{int(exp)}"


def fmt_num(x: float) -> str:
    """A β or q setting: 0.95, 0.1 (3 significant digits)."""
    return f"{x:.3g}"


def fmt_factor(f: float) -> str:
    """×1/3, ×1, ×3, ×10, ×1/10."""
    if f < 1:
        inv = 1 / f
        return f"×1/{inv:.0f}" if abs(inv - round(inv)) < 1e-3 else f"×{f:.3g}"
    return f"×{f:.3g}"


def fmt_tokens(n: float) -> str:
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def pm(mean, std, digits: int = 4) -> str:
    """'mean ± std' ('mean' alone without a std, 'n/a' without a mean)."""
    if mean == "" or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if std == "" or std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def over_seeds(values: list[float], digits: int = 4) -> str:
    """Final losses over seeds: 'mean ± std', 'diverged (k of n seeds)', 'n/a'."""
    if not values:
        return "n/a"
    bad = sum(not math.isfinite(v) for v in values)
    if bad:
        return f"diverged ({bad} of {len(values)} seeds)"
    return pm(*mean_std(values), digits)


def delta(d: Paired, digits: int = 4) -> str:
    """A paired Δ: '+0.0053 ± 0.0041' (signed; 'n/a' when it cannot be computed)."""
    if not d.diffs or not all(map(math.isfinite, d.diffs)):
        return "n/a"
    return f"{d.mean:+.{digits}f} ± {d.std:.{digits}f}" if d.n > 1 else f"{d.mean:+.{digits}f}"


def markdown(header: list[str], align: str, rows: list[list]) -> list[str]:
    """A markdown table: `align` has one letter per column, 'l' (---) or 'r' (---:)."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "".join("---|" if a == "l" else "---:|" for a in align),
        *["| " + " | ".join(str(c) for c in row) + " |" for row in rows],
    ]
