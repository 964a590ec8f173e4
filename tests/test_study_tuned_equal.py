"""Equal tuning budgets in the tuned kind (study/tuned.py): a selection seed that is not reported, the grid
over lr × one optimizer key (2-D argmin, each axis widened once at an edge), the tuning budget derived from
the plan and printed in the tables, the refusal of a key the optimizer config does not set, and the dry run
of the committed study file results/proxy_equal/study.yaml."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from test_study_tuned import fake_run, variant

from scripts import run_study
from study import tuned as pp

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2]
GRID = pp.Grid(100, [1 / 3, 1.0, 3.0, 10.0], (0.1, 30.0))
MOMENTUM = pp.Tune("momentum", (0.85, 0.9, 0.95), (0.8, 0.98))
MUON_LRS = [1e-3, 3e-3, 9e-3, 3e-2]


def tuned(opt: str, tune: pp.Tune = MOMENTUM, baseline: str | None = None) -> pp.Variant:
    return dataclasses.replace(variant(opt, alternatives={}), tune=tune, baseline=baseline)


def outcome(values: dict, default=None):
    """outcome(spec) from {(lr, tuned value): loss} at the selection seed; other seeds: `default`."""

    def f(spec):
        if spec.seed != GRID.seed:
            return default
        return values.get((spec.lr, spec.alt[1] if spec.alt else None))

    return f


def surface(best: tuple, low: float = 2.0) -> dict:
    """A loss over the 4 × 3 grid, lowest at `best`, rising with the distance from it."""
    return {
        (lr, t): low + abs(math.log(lr / best[0])) / 10 + abs(t - best[1])
        for lr in MUON_LRS
        for t in MOMENTUM.values
    }


def test_the_selection_seed_only_selects_and_the_grid_is_lr_by_key():
    m = tuned("muon")
    first = pp.make_plan(GRID, SEEDS, [m], lambda spec: None)
    assert len(first.specs) == 12 and {s.seed for s in first.specs} == {100}  # no paper-lr runs at 0, 1, 2
    assert {(s.lr, s.alt) for s in first.specs} == {
        (lr, ("momentum", t)) for lr in MUON_LRS for t in (0.85, 0.9, 0.95)
    }
    assert first.specs[0].name == "muon_b16_lr1e-3_s100_momentum0.85"
    assert first.pending == ["muon: best lr and momentum, after 12 grid run(s) at seed 100"]

    inside = pp.make_plan(GRID, SEEDS, [m], outcome(surface((3e-3, 0.9))))
    c = inside.choices[m.id]
    assert (c.best_lr, c.best_tune, c.extension, c.tune_extension) == (3e-3, 0.9, None, None)
    assert inside.pending == [] and len(inside.specs) == 15
    assert [s.name for s in inside.specs[-3:]] == [f"muon_b16_lr3e-3_s{s}_momentum0.9" for s in SEEDS]
    assert {s.phase for s in inside.specs[-3:]} == {"2 best lr"}
    assert pp.budget(m, GRID, c) == "lr ×4 × momentum ×3 at seed 100: 12 runs"

    # a selection seed among the seeds reports too: the grid seed's own run is not planned twice
    at0 = pp.make_plan(
        dataclasses.replace(GRID, seed=0),
        SEEDS,
        [m],
        lambda s: surface((3e-3, 0.9))[s.lr, s.alt[1]] if s.seed == 0 else None,
    )
    assert [s.seed for s in at0.specs].count(0) == 12 and len(at0.specs) == 14


def test_each_axis_is_widened_once_at_its_edge():
    m = tuned("muon")
    corner = surface((3e-2, 0.95))
    plan = pp.make_plan(GRID, SEEDS, [m], outcome(corner))
    edge = [(s.lr, s.alt, s.phase) for s in plan.specs[12:]]
    assert edge == [(9e-2, ("momentum", 0.95), "1b grid edge"), (3e-2, ("momentum", 0.98), "1b grid edge")]
    assert plan.pending == [
        "muon: best lr, after the run beyond the grid's edge (9e-2) and the run beyond the momentum edge "
        "(0.98)"
    ]
    done = pp.make_plan(GRID, SEEDS, [m], outcome({**corner, (9e-2, 0.95): math.inf, (3e-2, 0.98): 1.5}))
    c = done.choices[m.id]
    assert (c.best_lr, c.best_tune) == (3e-2, 0.98) and done.pending == []
    assert c.grid == [*MUON_LRS, 9e-2] and c.tune_grid == [0.85, 0.9, 0.95, 0.98]
    assert len(done.specs) == 12 + 2 + 3  # 0.98 is an edge now, but each axis widens once only
    assert done.specs[-1].name == "muon_b16_lr3e-2_s2_momentum0.98"
    assert pp.budget(m, GRID, c) == "lr ×4 (+1 edge) × momentum ×3 (+1 edge) at seed 100: 14 runs"

    low = pp.make_plan(GRID, SEEDS, [m], outcome(surface((3e-3, 0.85))))  # only the key's low edge
    assert [(s.lr, s.alt) for s in low.specs[12:]] == [(3e-3, ("momentum", 0.8))]
    assert low.choices[m.id].extension is None and low.choices[m.id].tune_extension == 0.8
    no_ext = dataclasses.replace(m, tune=dataclasses.replace(MOMENTUM, extend=None))
    assert len(pp.make_plan(GRID, SEEDS, [no_ext], outcome(surface((3e-3, 0.85)))).specs) == 15


def test_the_2d_argmin_and_its_ties():
    flat = {(lr, t): 2.0 for lr in MUON_LRS for t in MOMENTUM.values}
    assert pp.argmin_point(flat, 3e-3, MOMENTUM) == (3e-3, 0.9)  # the centre lr, then the middle value
    assert pp.argmin_point({**flat, (9e-3, 0.85): 1.9}, 3e-3, MOMENTUM) == (9e-3, 0.85)
    assert pp.argmin_point({(1e-3, None): 2.0, (3e-2, None): 2.0}, 3e-3, None) == (1e-3, None)


def equal_study(folder: Path, variants: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(
        "kind: tuned\nseeds: [0, 1, 2]\noverrides: [train.steps=4]\n"
        "grid: {seed: 100, factors: [1/3, 1, 3, 10], extend: {low: 1/10, high: 30}}\n"
        f"variants:\n{variants}"
    )
    return path


@pytest.mark.parametrize(
    "variants,message",
    [
        (
            "  muon: {experiment: proxy, tune: {q: [0.1, 0.5]}}\n",
            "variants.muon.tune.q: configs/optimizer/muon.yaml does not set 'q'; "
            "tune one of the keys it sets: lr, momentum, gamma, clip, reference",
        ),
        ("  gluon: {experiment: proxy, tune: {momentum: [0.9]}}\n", "variants.gluon.tune.momentum: "),
        (
            "  gluon_mvr1: {experiment: proxy, tune: {beta: [0.9]}, alternative: {beta: 0.95}}\n",
            "variants.gluon_mvr1.tune: give tune or alternative, not both",
        ),
        (
            "  gluon: {experiment: proxy, tune: {beta: {values: [0.85, 0.9], "
            "extend: {low: 0.9, high: 0.98}}}}\n",
            "variants.gluon.tune.beta.extend: {low: 0.9, high: 0.98} must lie below and above",
        ),
        ("  gluon: {experiment: proxy, tune: {beta: [0.9, 0.9]}}\n", "the values must be distinct"),
        (
            "  gluon: {experiment: proxy, tune: {beta: {value: [0.9]}}}\n",
            "variants.gluon.tune.beta.value: not a key here (did you mean 'values'?)",
        ),
    ],
)
def test_a_tune_key_the_config_does_not_set_is_refused(tmp_path, capsys, variants, message):
    path = equal_study(tmp_path / "s", variants)
    assert run_study.main([str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["study.yaml"]


def test_report_averages_only_the_reported_seeds_and_states_the_budget(tmp_path, capsys):
    results = tmp_path / "results"
    path = equal_study(
        results,
        "  muon: {experiment: proxy, tune: {momentum: {values: [0.85, 0.9, 0.95], "
        "extend: {low: 0.8, high: 0.98}}}}\n"
        "  muon_mvr1: {experiment: proxy, baseline: muon, tune: {momentum: [0.85, 0.9, 0.95]}}\n",
    )
    vs = [tuned("muon"), tuned("muon_mvr1", pp.Tune("momentum", (0.85, 0.9, 0.95)), "muon")]

    def loss(spec):  # the selection seed is far lower: a leak into the means would show
        x = surface((3e-3, 0.9))[spec.lr, spec.alt[1]]
        x += -1.0 if spec.seed == 100 else 0.01 * spec.seed
        return round(x - (0.05 if spec.variant.optimizer == "muon_mvr1" else 0.0), 4)

    for _ in range(3):
        plan = pp.make_plan(GRID, SEEDS, vs, pp.read_outcome(results))
        for s in plan.specs:
            if not (results / s.name).exists():
                fake_run(results / s.name, loss(s), optimizer=s.variant.optimizer, seed=s.seed)
    assert plan.pending == [] and len(plan.specs) == 2 * (12 + 3)
    assert run_study.main([str(path), "--report-only"]) == 0
    capsys.readouterr()
    md = (results / "tables.md").read_text()
    assert "At the papers' hyperparameters" not in md and "β / q" not in md
    assert "chosen at selection seed 100, reported at seeds [0, 1, 2]" in md
    assert (
        "| MuonMVR (MVR1) | 16 | 3e-3 (×1, momentum 0.9) | 1.9600 ± 0.0100 | 3 | -0.0500 ± 0.0000 vs Muon "
        "| lower "
        "| 2 | lr ×4 × momentum ×3 at seed 100: 12 runs |"
    ) in md
    assert (
        "| Muon, momentum 0.9 | 16 | 3e-3 | 1.1099 | **1.0000** | 1.1099 | 1.2303 | 3e-3, momentum 0.9 |"
        in md
    )
    assert "| Muon, momentum 0.85 |" in md and "| Tuning budget |" in md


def committed_copy(tmp_path: Path, study: str) -> Path:
    """results/<study>/study.yaml as committed, copied to plan it elsewhere (its own folder holds runs)."""
    (tmp_path / study).mkdir()
    path = tmp_path / study / "study.yaml"
    path.write_text((ROOT / "results" / study / "study.yaml").read_text())
    return path


def test_dry_run_plans_the_committed_equal_study(tmp_path, capsys):
    path = committed_copy(tmp_path, "proxy_equal")
    assert run_study.main([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "72 runs known now (0 done, 0 diverged, 0 resume, 72 new)" in out  # 6 variants × 4 lr × 3 values
    assert "muon_mvr2 seed=100 (lr 3e-2, momentum 0.95, phase 1 grid)" in out
    assert "gluon_mvr2 seed=100 (lr 1.2e-4, beta 0.85, phase 1 grid)" in out
    assert "gluon_mvr2: best lr and beta, after 12 grid run(s) at seed 100" in out
    assert " seed=0 " not in out and sorted(p.name for p in path.parent.iterdir()) == ["study.yaml"]


def test_steps_per_variant_compares_per_gradient_evaluation(tmp_path, capsys):
    """results/proxy_equal_600/study.yaml: MVR2 (two passes a step) runs half the steps of Muon and MVR1, each
    run name says so, and a study that also sets train.steps in its overrides is refused."""
    path = committed_copy(tmp_path, "proxy_equal_600")
    assert run_study.main([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "27 runs known now (0 done, 0 diverged, 0 resume, 27 new)" in out  # 3 variants × 3 lr × 3 values
    assert "optimizer=muon_mvr2 seed=100 optimizer.lr=0.003 optimizer.momentum=0.9" in out
    assert "train.steps=300 run_dir=" in out and "muon_mvr2_300steps_b16_lr3e-3_s100_momentum0.9" in out
    assert "muon_600steps_b16_lr1e-3_s100_momentum0.85" in out
    both = path.read_text().replace("overrides: [train.log_every=50]", "overrides: [train.steps=100]")
    path.write_text(both)
    assert run_study.main([str(path), "--dry-run"]) == 2
    assert "variants.muon.steps: the study's overrides set train.steps too" in capsys.readouterr().err
