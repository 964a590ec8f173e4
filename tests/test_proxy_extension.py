"""scripts/proxy_extension.py: the committed extension of the proxy study is complete, its report
regenerates byte for byte from the committed runs, its horizon figure is readable at one column, and its
paired statistics are the ones the table prints."""

import numpy as np
import pytest
from test_figures import COLUMN, assert_readable, capture

from scripts import figure_style as fs
from scripts import proxy_extension as pe

COMMITTED = pe.OUT / "tables.md"


def test_every_planned_run_is_committed_and_finished(capsys):
    assert pe.main(["--dry-run"]) == 0
    assert capsys.readouterr().out.strip().endswith("0 run(s) to do")


def test_the_report_regenerates_from_the_committed_runs(tmp_path, monkeypatch):
    saved = capture(monkeypatch)
    monkeypatch.setattr(pe, "save", fs.save)  # the spy capture() put in place
    assert pe.main(["--report-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "tables.md").read_text() == COMMITTED.read_text()
    assert [f["png"].name for f in saved] == ["horizon.png"]
    assert_readable(saved, COLUMN)


def test_paired_deltas_are_means_and_stds_of_per_seed_differences():
    a, b = pe.BY_NAME["gluon_constrained"], pe.BY_NAME["gluon"]
    d = [pe.final(a, s) - pe.final(b, s) for s in pe.SEEDS]
    assert pe.paired(a, b) == pytest.approx((np.mean(d), np.std(d, ddof=1)))
    m, sd = pe.paired(a, b)
    assert f"| {a.label} | {b.label} | {m:+.4f} ± {sd:.4f} | {pe.verdict(m, sd)} |" in COMMITTED.read_text()
