"""The tuned kind of study (study/tuned.py) through scripts/run_study.py: the planner (lr grid, phases, run
names, best-lr and β/q choices, grid-edge extension, divergence), the study file's checks, skipping finished
runs, the dry run, and the report, on fake run directories; and, marked slow, a toy study through the real
train.py."""

from __future__ import annotations

import csv
import json
import math

import pytest

from harness import rundir
from scripts import run_study
from study import launch
from study import tuned as pp

STEPS = 4
ALTERNATIVES = {"muon_mvr1": ("momentum", 0.9), "gluon_mvr1": ("beta", 0.95)}
GRID = pp.Grid(0, [1 / 3, 1.0, 3.0, 10.0], (0.1, 30.0))
SEEDS = [0, 1, 2]


def variant(opt: str, role: str = "large", batch: int = 16, alternatives=ALTERNATIVES) -> pp.Variant:
    centre = float(rundir.optimizer_config(opt)["lr"])
    vid = opt if role == "large" else f"{opt}@{role}"
    return pp.Variant(
        vid,
        opt,
        "proxy" if role == "large" else "proxy_small",
        batch,
        centre,
        None,
        alternatives.get(opt),
        rundir.optimizer_label(opt),
    )


def make_plan(vs, outcome, grid=GRID, seeds=SEEDS):
    return pp.make_plan(grid, seeds, vs, outcome)


def study_file(folder, variants: str, grid: str = "factors: [1/3, 1, 3, 10]", extra: str = ""):
    """A tuned study file in `folder` with these variant lines."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(
        f"kind: tuned\nseeds: [0, 1, 2]\noverrides: [train.steps={STEPS}]\n"
        f"grid: {{seed: 0, {grid}, extend: {{low: 1/10, high: 30}}}}\nvariants:\n{variants}{extra}"
    )
    return path


def fake_run(
    d,
    val: float,
    steps: int = STEPS,
    optimizer: str = "gluon",
    batch: int = 16,
    seed: int = 0,
    config: bool = True,
    complete: bool = True,
) -> None:
    """A run directory as train.py leaves it: metrics with val_loss every 2 steps ending at `val`, a summary,
    and (optionally) the config.yaml that study/runs.py reads."""
    d.mkdir(parents=True)
    last = steps if complete else steps - 1
    lines = []
    for s in range(1, last + 1):
        rec = dict(
            step=s,
            train_loss=val + 0.2,
            lr=1e-3,
            tokens=100 * s,
            data_tokens=100 * s,
            grad_evals=s,
            time_s=0.5 * s,
            wall_s=0.6 * s,
        )
        if s % 2 == 0 or s == steps:
            rec["val_loss"] = val + 0.1 * (steps - s)
        lines.append(json.dumps(rec) + "\n")
    (d / rundir.METRICS).write_text("".join(lines))
    if complete:
        rundir.write_summary(
            d,
            dict(
                completed=True,
                steps=steps,
                tokens=100 * steps,
                grad_evals=steps,
                time_s=0.5 * steps,
                final_val_loss=val,
            ),
        )
    if config:
        (d / rundir.CONFIG).write_text(
            f"model: {{name: proxy}}\ndata: {{name: shakespeare_bytes, seq_len: 128}}\n"
            f"optimizer: {{name: {optimizer}}}\nbatch: {{global_seqs: {batch}}}\nseed: {seed}\n"
            f"train: {{steps: {steps}, val_every: 2}}\n"
        )


def outcome_from(values: dict):
    """outcome(spec) from {(optimizer, lr, seed, alt): loss}; missing: not finished."""
    return lambda s: values.get((s.variant.optimizer, s.lr, s.seed, s.alt))


def names(plan) -> list[str]:
    return [s.name for s in plan.specs]


# ----------------------------------------------------------------------------- planner
def test_run_names_and_numbers():
    v = variant("gluon_mvr1")
    assert pp.Spec(v, 3.6e-4, 0).name == "gluon_mvr1_b16_lr3.6e-4_s0"
    assert pp.Spec(v, 1.08e-3, 2, ("beta", 0.95)).name == "gluon_mvr1_b16_lr1.08e-3_s2_beta0.95"
    assert pp.Spec(variant("muon", "small", 4), 0.03, 1).name == "muon_b4_lr3e-2_s1"
    assert pp.lr_value(3.6e-4, 1 / 3) == 1.2e-4 and pp.lr_value(3e-3, 1 / 3) == 1e-3
    assert pp.Spec(v, 3.6e-4, 0, phase="1 grid").key == pp.Spec(v, 3.6e-4, 0, phase="2 best lr").key


def test_phase1_grid_and_paper_seeds():
    vs = [variant("muon"), variant("gluon_mvr1"), variant("gluon", "small", 4)]
    plan = make_plan(vs, lambda spec: None)
    assert plan.choices[vs[0].id].grid == [1e-3, 3e-3, 9e-3, 3e-2]  # 3e-3 x {1/3, 1, 3, 10}
    assert plan.choices[vs[1].id].grid == [1.2e-4, 3.6e-4, 1.08e-3, 3.6e-3]  # 3.6e-4 x ...
    assert names(plan)[:6] == [
        "muon_b16_lr1e-3_s0",
        "muon_b16_lr3e-3_s0",
        "muon_b16_lr9e-3_s0",
        "muon_b16_lr3e-2_s0",
        "muon_b16_lr3e-3_s1",
        "muon_b16_lr3e-3_s2",
    ]
    assert names(plan)[-1] == "gluon_b4_lr3.6e-4_s2"
    assert len(plan.specs) == 18 and {s.phase for s in plan.specs} == {"1 grid", "1 paper lr"}
    assert plan.pending and plan.pending[0] == "muon: best lr, after 4 grid run(s) at seed 0"
    assert "gluon@small: best lr" in plan.pending[2]


def test_best_lr_then_seeds_and_the_alternative():
    v = variant("gluon_mvr1")
    grid = [1.2e-4, 3.6e-4, 1.08e-3, 3.6e-3]
    vals = {("gluon_mvr1", lr, 0, None): x for lr, x in zip(grid, [2.5, 2.3, 2.2, 2.4])}
    plan = make_plan([v], outcome_from(vals))
    assert (
        plan.choices[v.id].best_lr == 1.08e-3 and plan.choices[v.id].extension is None
    )  # interior: no extension
    phase2 = [s.name for s in plan.specs if s.phase == "2 best lr"]
    assert phase2 == ["gluon_mvr1_b16_lr1.08e-3_s1", "gluon_mvr1_b16_lr1.08e-3_s2"]
    assert names(plan)[-1] == "gluon_mvr1_b16_lr1.08e-3_s0_beta0.95"
    assert plan.specs[-1].phase == "3 alternative"
    assert plan.pending == ["gluon_mvr1: whether beta 0.95 wins"]

    lost = make_plan([v], outcome_from({**vals, ("gluon_mvr1", 1.08e-3, 0, ("beta", 0.95)): 2.25}))
    assert (
        lost.pending == [] and lost.choices[v.id].alt_won is False and len(lost.specs) == 9
    )  # 4 + 2 + 2 + 1
    won = make_plan([v], outcome_from({**vals, ("gluon_mvr1", 1.08e-3, 0, ("beta", 0.95)): 2.1}))
    assert won.pending == [] and won.choices[v.id].alt_won is True
    assert names(won)[-2:] == ["gluon_mvr1_b16_lr1.08e-3_s1_beta0.95", "gluon_mvr1_b16_lr1.08e-3_s2_beta0.95"]

    # best = the paper's lr: its seeds 1, 2 are the paper-lr runs, not planned twice; Gluon has no alternative
    g = variant("gluon")
    at_paper = make_plan(
        [g],
        outcome_from(
            {
                ("gluon", lr, 0, None): x
                for lr, x in zip([1.2e-4, 3.6e-4, 1.08e-3, 3.6e-3], [2.5, 2.1, 2.2, 2.4])
            }
        ),
    )
    assert at_paper.pending == [] and at_paper.choices[g.id].best_lr == 3.6e-4 and len(at_paper.specs) == 6


def test_grid_edge_extension_divergence_and_ties():
    m = variant("muon")
    grid = {("muon", lr, 0, None): x for lr, x in zip([1e-3, 3e-3, 9e-3, 3e-2], [2.6, 2.4, 2.3, 2.2])}
    plan = make_plan([m], outcome_from(grid))
    assert plan.choices[m.id].extension == 9e-2 and names(plan)[-1] == "muon_b16_lr9e-2_s0"
    assert plan.pending == ["muon: best lr, after the run beyond the grid's edge (9e-2)"]
    diverged = make_plan([m], outcome_from({**grid, ("muon", 9e-2, 0, None): math.inf}))
    assert (
        diverged.pending == [] and diverged.choices[m.id].best_lr == 3e-2
    )  # the diverged extension bounds it
    assert diverged.choices[m.id].grid == [1e-3, 3e-3, 9e-3, 3e-2, 9e-2]
    better = make_plan([m], outcome_from({**grid, ("muon", 9e-2, 0, None): 2.1}))
    assert (
        better.choices[m.id].best_lr == 9e-2 and better.choices[m.id].extension == 9e-2
    )  # extended once only

    low = {("muon", lr, 0, None): x for lr, x in zip([1e-3, 3e-3, 9e-3, 3e-2], [2.1, 2.4, 2.5, math.inf])}
    assert make_plan([m], outcome_from(low)).choices[m.id].extension == 3e-4  # x 1/10
    assert not make_plan([m], outcome_from(low), grid=pp.Grid(0, GRID.factors, None)).pending

    every = make_plan([m], outcome_from({k: math.inf for k in grid}))
    assert every.pending == ["muon: every lr of the grid diverged; widen grid.factors below them"]
    assert pp.argmin_lr({1e-3: 2.0, 9e-3: 2.0, 3e-3: 2.5}, 3e-3) in (1e-3, 9e-3)
    assert pp.argmin_lr({1e-3: 2.0, 3e-2: 2.0}, 3e-3) == 1e-3  # a tie goes to the lr nearer the paper's


def test_outcomes_from_run_directories_and_divergence(tmp_path):
    v = variant("gluon")
    fake_run(tmp_path / "gluon_b16_lr3.6e-4_s0", 2.25)
    fake_run(tmp_path / "gluon_b16_lr1.2e-4_s0", 2.5, complete=False)  # stopped early: not finished
    (tmp_path / "gluon_b16_lr3.6e-3_s0").mkdir()
    rundir.write_summary(
        tmp_path / "gluon_b16_lr3.6e-3_s0",
        {"completed": False, "status": rundir.STATUS_DIVERGED, "error": "non-finite"},
    )
    out = pp.read_outcome(tmp_path)
    assert out(pp.Spec(v, 3.6e-4, 0)) == 2.25
    assert out(pp.Spec(v, 1.2e-4, 0)) is None and out(pp.Spec(v, 1.08e-3, 0)) is None
    assert out(pp.Spec(v, 3.6e-3, 0)) == math.inf


def test_a_failed_run_is_diverged_only_when_its_summary_says_so(tmp_path):
    from study import cli

    run = launch.Run(run_dir=tmp_path / "r", overrides=[], steps=STEPS, label="gluon lr 3.6e-3")
    fake_run(run.run_dir, 5.0, complete=False)
    (run.run_dir / "ckpt").mkdir()
    # another failure: the log mentions a FloatingPointError, but the run did not record a divergence
    (run.run_dir / "launcher.out").write_text("Traceback ...\nFloatingPointError: from elsewhere\n")
    assert not cli.is_diverged(run, print)
    rundir.write_summary(
        run.run_dir,
        {
            "completed": False,
            "status": rundir.STATUS_DIVERGED,
            "steps": 3,
            "error": "non-finite training loss nan at step 4; nothing of this step was saved",
        },
    )
    assert cli.is_diverged(run, print)
    assert not (run.run_dir / "ckpt").exists()
    launch.state(run)
    assert run.status == "diverged" and run.detail.startswith("non-finite training loss nan at step 4")


# ----------------------------------------------------------------------------- the command
def test_dry_run_skips_finished_runs_and_plans_the_next_phase(tmp_path, capsys):
    results = tmp_path / "results"
    for lr, x in zip(["1.2e-4", "3.6e-4", "1.08e-3", "3.6e-3"], [2.5, 2.3, 2.2, 2.4]):
        fake_run(results / f"gluon_b16_lr{lr}_s0", x, config=False)
    path = study_file(
        results, "  gluon: {experiment: proxy}\n  gluon_mvr1@small: {experiment: proxy_small}\n"
    )
    assert run_study.main([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "14 runs known now (4 done, 0 diverged, 0 resume, 10 new)" in out
    assert f"done     gluon seed=0 (lr 1.08e-3, phase 1 grid) -> {results}/gluon_b16_lr1.08e-3_s0" in out
    assert f"new      gluon seed=1 (lr 1.08e-3, phase 2 best lr) -> {results}/gluon_b16_lr1.08e-3_s1" in out
    assert f"gluon_mvr1@small seed=0 (lr 1.2e-4, phase 1 grid) -> {results}/gluon_mvr1_b4_lr1.2e-4_s0" in out
    assert (
        "train.py experiment=proxy_small optimizer=gluon_mvr1 seed=0 optimizer.lr=0.00012 "
        "batch.global_seqs=4 batch.name=b4 train.steps=4 run_dir="
    ) in out
    assert "waiting on them: gluon_mvr1@small: best lr, after 4 grid run(s) at seed 0" in out
    assert sorted(p.name for p in results.iterdir()) == sorted(
        [f"gluon_b16_lr{lr}_s0" for lr in ["1.2e-4", "3.6e-4", "1.08e-3", "3.6e-3"]] + ["study.yaml"]
    )


@pytest.mark.parametrize(
    "variants,grid,message",
    [
        (
            "  gluon: {experiment: proxy, lr_factor: 2}\n",
            "factors: [1]",
            "variants.gluon.lr_factor: not a key",
        ),
        ("  gluon: {optimizer: gluon}\n", "factors: [1]", "variants.gluon.experiment: missing"),
        ("  sgd: {experiment: proxy}\n", "factors: [1]", "unknown optimizer 'sgd'"),
        ("  gluon: {experiment: proxy, baseline: muon}\n", "factors: [1]", "'muon' is not a variant"),
        (
            "  muon_mvr1: {experiment: proxy, alternative: {momentum: 0.95}}\n",
            "factors: [1]",
            "config's own value",
        ),
        ("  gluon: {experiment: proxy}\n", "factors: [1/0]", "grid.factors: '1/0' is not a number"),
        (
            "  gluon: {experiment: proxy}\n",
            "factor: [1]",
            "grid.factor: not a key here (did you mean 'factors'?)",
        ),
    ],
)
def test_a_bad_study_file_is_refused_before_any_work(tmp_path, capsys, variants, grid, message):
    path = study_file(tmp_path / "s", variants, grid)
    assert run_study.main([str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["study.yaml"]


def test_report_from_finished_runs(tmp_path, capsys):
    """A complete study on fake runs: the tables (numbers only), summary.csv and the figures."""
    results = tmp_path / "results"
    path = study_file(
        results,
        "  gluon: {experiment: proxy}\n"
        "  gluon_mvr1: {experiment: proxy, baseline: gluon, alternative: {beta: 0.95}}\n",
        extra="figures:\n  fig1: {title: x, variants: [gluon, gluon_mvr1]}\n"
        "  fig3: {title: y, variants: [gluon, gluon_mvr2]}\n",
    )
    vs = [variant("gluon"), variant("gluon_mvr1")]
    base = {1.2e-4: 2.40, 3.6e-4: 2.30, 1.08e-3: 2.20, 3.6e-3: 2.35}

    def loss(spec):  # Gluon-MVR-1 0.05 below Gluon on every seed; beta 0.95 better still
        x = base[spec.lr] + 0.01 * spec.seed
        if spec.variant.optimizer == "gluon_mvr1":
            x -= 0.05 + (0.02 if spec.alt else 0.0)
        return round(x, 4)

    for _ in range(5):  # fill in what the plan asks for until it is complete
        plan = make_plan(vs, pp.read_outcome(results))
        for s in plan.specs:
            if not (results / s.name).exists():
                fake_run(results / s.name, loss(s), optimizer=s.variant.optimizer, seed=s.seed)
    assert plan.pending == [] and len(plan.specs) == 8 + 11  # gluon 4+2+2; mvr1 4+2+2+1+2 (its beta won)
    assert run_study.main([str(path), "--report-only"]) == 2  # fig3 names a variant the study does not have
    assert "figures.fig3.variants: 'gluon_mvr2' is not a variant" in capsys.readouterr().err
    path.write_text(path.read_text().replace("  fig3: {title: y, variants: [gluon, gluon_mvr2]}\n", ""))
    assert run_study.main([str(path), "--report-only"]) == 0
    capsys.readouterr()
    md = (results / "tables.md").read_text()
    assert (
        "| Gluon-MVR-1 | 16 | 3.6e-4 (×1) | 2.2600 ± 0.0100 | 3 | -0.0500 ± 0.0000 vs Gluon | lower |"
    ) in md
    assert (
        "| Gluon-MVR-1 | 16 | 1.08e-3 (×3, beta 0.95) | 2.1400 ± 0.0100 | 3 | -0.0700 ± 0.0000 vs Gluon "
        "| lower |"
    ) in md
    assert "| Gluon | 16 | 3.6e-4 | 2.4000 | 2.3000 | **2.2000** | 2.3500 | 1.08e-3 |" in md
    assert (
        "| Gluon-MVR-1 | 16 | 1.08e-3 | beta 0.9 | 2.1500 | beta 0.95 | 2.1300 | -0.0200 | beta 0.95 |"
    ) in md
    assert all(ln.startswith(("#", "|")) for ln in md.splitlines() if ln)  # numbers only, no prose
    rows = list(csv.DictReader(open(results / "summary.csv")))
    assert len(rows) == len(plan.specs) and sum(r["best_setting"] == "1" for r in rows) == 6
    assert (results / "figures" / "fig1.png").exists() and (results / "figures" / "lr_grid.pdf").exists()


def test_report_refuses_an_unfinished_study(tmp_path, capsys):
    fake_run(tmp_path / "gluon_b16_lr3.6e-4_s0", 2.3, config=False)
    path = study_file(tmp_path, "  gluon: {experiment: proxy}\n")
    assert run_study.main([str(path), "--report-only"]) == 2
    err = capsys.readouterr().err
    assert "is not finished" in err and "gluon: best lr, after 3 grid run(s) at seed 0" in err


# ----------------------------------------------------------------------------- through train.py
@pytest.mark.slow
def test_toy_study_runs_resumes_and_reports(tmp_path, capsys):
    from helpers.trainer_utils import small_run_overrides, write_test_shards

    data = write_test_shards(tmp_path / "data")
    extra = ["model=tiny", "data=synthetic"] + [
        o
        for o in small_run_overrides(
            "unused", data, "unused", 2, **{"train.val_every": 1, "train.ckpt_every": 1}
        )
        if launch.override_key(o) not in ("optimizer", "run_dir", "batch.global_seqs", "batch.micro_seqs")
    ]
    results = tmp_path / "results"
    results.mkdir()
    path = results / "study.yaml"
    path.write_text(
        f"kind: tuned\nseeds: [0]\noverrides: {extra}\ngrid: {{seed: 0, factors: [1, 3]}}\n"
        "variants:\n  muon: {experiment: proxy, optimizer: muon}\n"
        "  muon_mvr1: {experiment: proxy, baseline: muon, alternative: {momentum: 0.9}}\n"
        "figures:\n  muon_mvr: {title: t, variants: [muon, muon_mvr1]}\n"
    )
    path.write_text(path.read_text().replace("experiment: proxy", "experiment: quickstart"))
    args = [str(path), "--parallel", "2", "--progress-every", "0"]
    assert run_study.main(args) == 0
    out = capsys.readouterr().out
    runs = sorted(p.name for p in results.iterdir() if p.is_dir() and p.name != "figures")
    assert len(runs) == 5  # 2 x 2 lrs, and muon_mvr1's momentum 0.9 at its best lr
    assert any(r.endswith("_s0_momentum0.9") for r in runs)
    for r in runs:  # normal run directories, without checkpoints or the launcher's log
        assert rundir.completion(results / r, 2)[0]
        assert not (results / r / "ckpt").exists() and not (results / r / "launcher.out").exists()
    assert "## Each at its best" in out and (results / "figures" / "muon_mvr.png").exists()
    assert run_study.main(args) == 0  # everything is done: nothing runs again
    assert "start [" not in capsys.readouterr().out
