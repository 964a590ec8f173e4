"""The statistics every study and script reports, in one place.

- mean ± std over seeds: the sample standard deviation (ddof 1); with one value the std is NaN.
- Δ paired by seed: for every seed both settings have, the difference of their values; its mean ± the std
  of those differences (same seed: same initialisation and batches, so the difference is the optimizer's).
- the verdict: "within noise" when |Δ| < 2 · std of the paired differences, else "lower" or "higher";
  "one seed" with a single pair, "n/a" with none or a non-finite value. This is the only verdict rule.
- the optimization track (modded-nanogpt, records/track_3_optimization): a configuration reaches the target
  when ``(3.28 − mean) · sqrt(n) ≥ 0.004``; it beats a baseline when
  ``((mean_base − mean) + 0.0045 · (steps_base − steps) / 100) / sqrt(1/n_base + 1/n) ≥ 0.004``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NOISE_SIGMAS = 2.0  # |Δ| below this many stds of the paired differences is "within noise"

TRACK_TARGET = 3.28  # the track's validation loss target
TRACK_MARGIN = 0.004  # 3.09 sigma of the track's assumed per-run sigma 0.0013 (p < .001)
TRACK_LOSS_PER_100_STEPS = 0.0045  # the track's exchange rate between steps and final loss


def finite(values) -> bool:
    return all(math.isfinite(v) for v in values)


def mean_std(values) -> tuple[float, float]:
    """(mean, sample std); NaN mean for no value, NaN std for fewer than two or a non-finite value."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 and finite(values) else math.nan
    return mean, std


def verdict(mean: float, std: float, n: int) -> str:
    """The one rule: "within noise" when |mean| < 2·std, else "lower" / "higher" ("one seed", "n/a")."""
    if n == 0 or not math.isfinite(mean):
        return "n/a"
    if n < 2:
        return "one seed"
    if abs(mean) < NOISE_SIGMAS * std:
        return "within noise"
    return "lower" if mean < 0 else "higher"


@dataclass
class Paired:
    """a − b paired by seed."""

    seeds: list[int]
    diffs: list[float]

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return mean_std(self.diffs)[0]

    @property
    def std(self) -> float:
        return mean_std(self.diffs)[1]

    @property
    def verdict(self) -> str:
        return verdict(self.mean, self.std, self.n) if finite(self.diffs) else "n/a"


def paired(a: dict[int, float], b: dict[int, float]) -> Paired:
    """a − b over the seeds both have (dicts seed -> value), in a's seed order."""
    seeds = [s for s in a if s in b]
    return Paired(seeds, [a[s] - b[s] for s in seeds])


# ----------------------------------------------------------------------------- the optimization track
def track_significance(mean_loss: float, n: int, target: float = TRACK_TARGET) -> float:
    """``(target − mean_loss) · sqrt(n)``: at least TRACK_MARGIN means the n runs reach below the target."""
    return (target - mean_loss) * math.sqrt(n)


def track_passes(statistic: float) -> bool:
    return statistic >= TRACK_MARGIN - 1e-12


def track_pairwise(base_mean: float, base_n: int, base_steps: int, mean: float, n: int, steps: int) -> float:
    """``((base_mean − mean) + 0.0045 · (base_steps − steps)/100) / sqrt(1/base_n + 1/n)``: at least
    TRACK_MARGIN means the configuration is better than the baseline beyond the noise."""
    gain = (base_mean - mean) + TRACK_LOSS_PER_100_STEPS * (base_steps - steps) / 100
    return gain / math.sqrt(1 / base_n + 1 / n)
