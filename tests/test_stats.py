"""study/stats.py: mean ± std, the paired-by-seed Δ, the one verdict rule (its boundary |Δ| = 2·std
exactly), and the optimization track's tests on the track's own worked examples."""

import math

import numpy as np
import pytest

from study import stats, tables


def test_mean_std_is_the_sample_std():
    assert stats.mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, np.std([1, 2, 4], ddof=1)))
    mean, std = stats.mean_std([2.5])
    assert mean == 2.5 and math.isnan(std)
    assert all(math.isnan(x) for x in stats.mean_std([]))
    assert math.isnan(stats.mean_std([1.0, math.inf])[1])


def test_paired_delta_is_over_the_shared_seeds():
    d = stats.paired({0: 2.0, 1: 2.5, 2: 3.0}, {2: 2.0, 0: 1.5, 3: 9.0})
    assert d.seeds == [0, 2] and d.diffs == [0.5, 1.0]
    assert (d.mean, d.std) == pytest.approx((0.75, np.std([0.5, 1.0], ddof=1)))


def test_the_verdict_rule_and_its_boundary():
    # |Δ| = 2·std exactly is NOT within noise (within noise is strictly below): diffs 0, 2 -> mean 1, std √2
    assert stats.verdict(2.0, 1.0, 3) == "higher" and stats.verdict(-2.0, 1.0, 3) == "lower"
    assert stats.verdict(1.999, 1.0, 3) == "within noise" and stats.verdict(-1.999, 1.0, 3) == "within noise"
    assert stats.verdict(0.5, 0.0, 3) == "higher"
    assert stats.verdict(0.5, math.nan, 1) == "one seed" and stats.verdict(math.nan, 1.0, 3) == "n/a"
    assert stats.paired({0: 0.0, 1: 2.0}, {0: 0.0, 1: 0.0}).verdict == "within noise"  # 1 < 2·1.414
    assert stats.paired({0: 1.0, 1: 2.0}, {0: 0.0, 1: 0.0}).verdict == "higher"  # 1.5 > 2·0.707
    assert stats.paired({0: 1.0, 1: 1.0}, {0: 0.0, 1: 0.0}).verdict == "higher"  # std 0
    assert stats.paired({0: math.inf, 1: 1.0}, {0: 0.0, 1: 0.0}).verdict == "n/a"
    assert tables.delta(stats.paired({0: 2.0, 1: 2.1}, {0: 1.9, 1: 1.9})) == "+0.1500 ± 0.0707"


def test_the_tracks_significance_rule_on_its_own_results():
    sig = stats.track_significance
    assert stats.track_passes(sig(3.2787, 10))  # result #36, the tuned baseline
    assert sig(3.2787, 10) == pytest.approx(0.00411, abs=1e-5)
    assert not stats.track_passes(sig(3.2777, 1))  # result #1
    assert stats.track_passes(sig(3.276, 1)) and stats.track_passes(sig(3.278, 4))  # the README's examples


def test_the_tracks_pairwise_rule_on_its_worked_examples():
    pw = stats.track_pairwise
    assert pw(3.2785, 16, 100, 3.2785, 10, 85) == pytest.approx(0.00167, abs=1e-5)  # #13 vs #11
    assert pw(3.2778, 10, 140, 3.2785, 16, 100) == pytest.approx(0.0027, abs=1e-4)  # #13 vs #8
    assert pw(3.2788, 20, 150, 3.2790, 20, 100) == pytest.approx(0.00648, abs=1e-5)  # #12 vs #6


def test_number_formats():
    assert [tables.fmt_lr(x) for x in (1e-3, 3.6e-4, 1.2e-4, 9e-3)] == ["1e-3", "3.6e-4", "1.2e-4", "9e-3"]
    assert [tables.fmt_factor(f) for f in (1 / 3, 0.1, 1.0, 30.0)] == ["×1/3", "×1/10", "×1", "×30"]
    assert tables.over_seeds([1.0, math.inf]) == "diverged (1 of 2 seeds)"
    assert tables.pm(2.0, "") == "2.0000" and tables.pm("", "") == "n/a"
