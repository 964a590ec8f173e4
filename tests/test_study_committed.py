"""The committed studies are data: results/small, proxy, proxy_ext, proxy_equal(_600) each regenerate their
tables byte for byte from their study.yaml and the committed run folders (scripts/run_study.py
--report-only, written elsewhere; the figures are redrawn, their bytes depend on the matplotlib build), their
tables hold numbers only (the prose is in each study's README), and every run their study files plan is
committed and finished."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_figures import COLUMN, assert_readable, capture

from scripts import run_study

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
TABLES = {
    "small": ["figures/summary.csv", "figures/summary.md"],
    "proxy": ["tables.md", "summary.csv"],
    "proxy_ext": ["tables.md"],
    "proxy_equal": ["tables.md", "summary.csv"],
    "proxy_equal_600": ["tables.md", "summary.csv"],
}


@pytest.mark.parametrize("study", list(TABLES))
def test_tables_regenerate_byte_for_byte(study, tmp_path, monkeypatch, capsys):
    saved = capture(monkeypatch) if study == "proxy_ext" else None  # measuring a figure draws it again
    assert run_study.main([str(RESULTS / study / "study.yaml"), "--report-only", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    for name in TABLES[study]:
        assert (tmp_path / name).read_bytes() == (RESULTS / study / name).read_bytes(), f"{study}/{name}"
        if name.endswith(".md"):  # numbers only: headings and table rows
            lines = [ln for ln in (tmp_path / name).read_text().splitlines() if ln]
            assert all(ln.startswith(("#", "|")) for ln in lines), name
    drawn = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert drawn == sorted(
        p.relative_to(RESULTS / study).as_posix() for p in (RESULTS / study).rglob("*.png")
    )
    if study == "proxy_ext":
        assert_readable(saved, COLUMN)  # the horizon figure


@pytest.mark.slow
@pytest.mark.parametrize("study", ["small", "proxy_ext"])  # proxy_equal*: the tables above need every run
def test_every_planned_run_is_committed_and_finished(study, capsys):
    assert run_study.main([str(RESULTS / study / "study.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ", 0 resume, 0 new)" in out and "waiting" not in out
