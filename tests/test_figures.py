"""The figures kind of study (study/figures.py) and the figures of study/plots.py on small synthetic runs:
every figure (PNG and PDF, with a Δ-vs-baseline panel) and the summary are written, the numbers are the mean
and std over seeds, names come from the optimizer configs' `label:`, and a missing, unfinished or mismatched
run is a named error, through scripts/run_study.py. Every figure the engine draws is readable in print: its
text is at least 6 pt at the width it is printed, and nothing runs into anything else."""

from __future__ import annotations

import csv
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.trainer_utils import compose_cfg
from matplotlib.text import Text
from PIL import Image

import train
from harness import rundir
from scripts import compare as compare_cli
from scripts import run_study
from study import figures, plots, runs

REPO = Path(__file__).resolve().parents[1]
FIGURES = list(rundir.PAPER_FIGURES)
LARGE, SMALL, SEEDS, STEPS, VAL_EVERY = 16, 4, [0, 1, 2], 12, 4
BATCHES = {512: LARGE, 128: SMALL}
# every (optimizer, batch) the figures draw
VARIANTS = list(
    dict.fromkeys(
        (opt, batch)
        for f in FIGURES
        for batch in [figures.figure(f, BATCHES)[2]]
        for opt in figures.figure(f, BATCHES)[1]
    )
)


def passes(opt: str) -> int:
    """Gradient passes a step, as the trainer counts them (the optimizer the config builds): two for a
    reference gradient on another batch or at other parameters."""
    built = train.build_optimizer(compose_cfg([f"optimizer={opt}"]).optimizer, train.StandIn())
    return built.grad_evals_per_step


def final_val(opt: str, batch: int, seed: int) -> float:
    return 4.0 - 0.05 * len(opt) + 0.2 * (batch == SMALL) + 0.01 * seed


def write_run(
    results: Path,
    opt: str,
    batch: int,
    seed: int,
    steps: int = STEPS,
    upto: int | None = None,
    completed: bool = True,
    name: str | None = None,
    **cfg_extra,
) -> Path:
    """A run directory as train.py writes it, through rundir: config.yaml, metrics.jsonl, summary.json."""
    d = results / (name or rundir.run_name(opt, batch, seed))
    d.mkdir(parents=True)
    n = passes(opt)
    cfg = {
        "optimizer": {"name": opt},
        "batch": {"name": "bX", "global_seqs": batch},
        "seed": seed,
        "model": {"name": "tiny"},
        "data": {"name": "synthetic", "seq_len": 64},
        "train": {"steps": steps, "val_every": VAL_EVERY},
        "figure": {"name": "figX"},
    }
    for key, value in cfg_extra.items():
        section, leaf = key.split("__")
        cfg[section][leaf] = value
    (d / rundir.CONFIG).write_text(yaml.safe_dump(cfg))  # train.py's resolved config; rundir reads it
    for step in range(1, (upto or steps) + 1):
        rec = dict(
            step=step,
            train_loss=6.0 - step * 0.1,
            lr=1e-3,
            tokens=step * n * batch * 64,
            data_tokens=step * batch * 64,
            grad_evals=step * n,
            time_s=0.5 * step * n + 0.01 * seed,
            step_ms=500.0,
            wall_s=0.6 * step * n,
        )
        if step % VAL_EVERY == 0 or step == steps:
            rec["val_loss"] = final_val(opt, batch, seed) + (steps - step) * 0.05
        rundir.append_metrics(d, rec)
    if completed:
        last = rundir.last_record(d)
        rundir.write_summary(
            d,
            dict(
                completed=True,
                steps=steps,
                tokens=last["tokens"],
                grad_evals=last["grad_evals"],
                time_s=last["time_s"],
                final_val_loss=last.get("val_loss"),
            ),
        )
    return d


def write_results(results: Path) -> Path:
    for opt, batch in VARIANTS:
        for seed in SEEDS:
            write_run(results, opt, batch, seed)
    (results / "study.yaml").write_text(
        f"kind: figures\nfigures: {FIGURES}\nbatches: {{512: {LARGE}, 128: {SMALL}}}\nseeds: {SEEDS}\n"
    )
    return results


def build(results: Path, names=None, seeds=SEEDS, **kw):
    return figures.report(results, names or FIGURES, seeds, BATCHES, results / "figures", **kw)


def test_writes_every_figure_and_the_summary(tmp_path, capsys):
    results = write_results(tmp_path / "results")
    assert run_study.main([str(results / "study.yaml"), "--report-only"]) == 0
    out = results / "figures"
    for name in FIGURES:
        png = out / f"{name}.png"
        assert png.exists() and png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
        assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert len(rows) == len(VARIANTS) and set(rows[0]) == set(figures.CSV_FIELDS)
    by_key = {(r["optimizer"], int(r["batch_seqs"])): r for r in rows}
    assert set(by_key) == set(VARIANTS)
    assert by_key[("gluon", LARGE)]["figures"] == "fig1 fig3 fig4"  # the shared baseline: one row
    for opt, batch in VARIANTS:
        r, n = by_key[(opt, batch)], passes(opt)
        vals = [final_val(opt, batch, s) for s in SEEDS]
        assert int(r["n_seeds"]) == 3 and r["seeds"] == "0 1 2"
        assert float(r["final_val_loss_mean"]) == pytest.approx(np.mean(vals), abs=1e-5)
        assert float(r["final_val_loss_std"]) == pytest.approx(np.std(vals, ddof=1), abs=1e-5)
        assert int(r["tokens"]) == STEPS * n * batch * 64 and int(r["data_tokens"]) == STEPS * batch * 64
        assert int(r["grad_evals"]) == STEPS * n
        assert float(r["time_s_mean"]) == pytest.approx(0.5 * STEPS * n + 0.01, abs=0.01)
    printed = capsys.readouterr().out
    assert printed.startswith("| Optimizer | B (seqs) |") and "| Gluon-MVR-2 | 16 | fig3 | 3 |" in printed
    assert "| fig4 | Gluon-MVR-3 vs Gluon |" in printed and "| muon_mvr | MuonMVR (MVR3) vs Muon |" in printed
    assert (out / "summary.md").read_text() in printed


def test_curves_are_mean_and_std_over_seeds(tmp_path):
    results = tmp_path / "r"
    found = [runs.load(write_run(results, "gluon", LARGE, seed)) for seed in SEEDS]
    curve = runs.curve(found, "Gluon")
    assert list(curve.step) == [4, 8, 12]
    last = [final_val("gluon", LARGE, s) for s in SEEDS]
    assert curve.mean[-1] == pytest.approx(np.mean(last))
    assert curve.std[-1] == pytest.approx(np.std(last, ddof=1))
    assert curve.tokens[-1] == STEPS * LARGE * 64
    assert curve.time_s[-1] == pytest.approx(0.5 * STEPS + 0.01)


def test_figure_batches_come_from_the_experiment_configs():
    assert [figures.figure(f, {})[2] for f in FIGURES] == [512, 128, 512, 512, 512]
    assert [figures.figure(f, BATCHES)[2] for f in FIGURES] == [16, 4, 16, 16, 16]
    title, opts, _ = figures.figure("fig4", BATCHES)
    assert opts == ["gluon", "gluon_mvr3"] and "B=16" in title
    assert figures.figure("muon_mvr", {})[1] == ["muon", "muon_mvr1", "muon_mvr2", "muon_mvr3"]


def test_a_missing_run_is_an_error_naming_it(tmp_path, capsys):
    results = write_results(tmp_path / "results")
    shutil.rmtree(results / "gluon_mvr2_b16_s1")
    shutil.rmtree(results / "gluon_b4_s2")
    with pytest.raises(runs.RunError) as e:
        build(results)
    msg = str(e.value)
    assert "figure fig3" in msg and "optimizer=gluon_mvr2 batch=16 seed=1" in msg
    assert str(results / "gluon_mvr2_b16_s1" / "metrics.jsonl") in msg
    assert "figure fig2" in msg and "optimizer=gluon batch=4 seed=2" in msg  # every problem, not the first
    assert not (results / "figures" / "fig1.png").exists()  # nothing half-written
    assert run_study.main([str(results / "study.yaml"), "--report-only"]) == 2
    assert "gluon_mvr2_b16_s1" in capsys.readouterr().err


def test_unfinished_runs_fail_unless_allowed(tmp_path):
    results = tmp_path / "results"
    for seed in SEEDS:
        write_run(results, "gluon", SMALL, seed)
        write_run(results, "gluon_mvr1", SMALL, seed, upto=9 if seed == 1 else None, completed=seed != 1)
    with pytest.raises(runs.RunError, match=r"gluon_mvr1_b4_s1: metrics.jsonl stops at step 9 of 12"):
        build(results, ["fig2"])
    res = build(results, ["fig2"], allow_incomplete=True)
    assert res["figures"][0].exists()
    row = next(r for r in res["rows"] if r["optimizer"] == "gluon_mvr1")
    assert row["n_seeds"] == 3


def test_mismatched_runs_are_errors(tmp_path):
    results = tmp_path / "dup"
    for seed in SEEDS:
        write_run(results, "gluon", SMALL, seed)
        write_run(results, "gluon_mvr1", SMALL, seed)
    shutil.rmtree(results / "gluon_mvr1_b4_s2")
    write_run(results, "gluon_mvr1", SMALL, 2, steps=16)
    with pytest.raises(runs.RunError, match=r"differ in train\.steps"):
        build(results, ["fig2"])
    shutil.rmtree(results / "gluon_mvr1_b4_s2")
    write_run(results, "gluon_mvr1", SMALL, 2, model__name="small")
    with pytest.raises(runs.RunError, match=r"differ in model\.name"):
        build(results, ["fig2"])


def test_labels_come_from_the_optimizer_configs(tmp_path, monkeypatch):
    results = write_results(tmp_path / "results")
    res = build(results, ["muon_mvr"])
    assert [r["label"] for r in res["rows"]] == [
        rundir.optimizer_config(o)["label"] for o in ("muon", "muon_mvr1", "muon_mvr2", "muon_mvr3")
    ]
    monkeypatch.setattr(rundir, "optimizer_label", lambda name: f"<{name}>")
    res = build(results, ["fig3"])
    assert [r["label"] for r in res["rows"]] == ["<gluon>", "<gluon_mvr2>"]
    assert "| fig3 | <gluon_mvr2> vs <gluon> |" in res["markdown"]


def test_figure_has_a_delta_panel_markers_and_a_legend_outside(tmp_path, monkeypatch):
    results = tmp_path / "results"
    for seed in SEEDS:
        for opt in ("muon", "muon_mvr1", "muon_mvr2", "muon_mvr3"):
            write_run(results, opt, LARGE, seed)
    figs = []
    real_save = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, png: figs.append(fig) or real_save(fig, png))
    res = build(results, ["muon_mvr"])
    assert [p.suffix for p in res["figures"]] == [".png", ".pdf"]
    (fig,) = figs
    assert len(fig.axes) == 4 and not any(ax.get_legend() for ax in fig.axes)  # one legend, below them
    (legend,) = fig.legends
    assert [t.get_text().split(":")[0] for t in legend.get_texts()] == [
        "Muon",
        "MuonMVR (MVR1)",
        "MuonMVR (MVR2)",
        "MuonMVR (MVR3)",
    ]
    ax_loss, ax_delta = fig.axes[:2]
    assert ax_delta.get_ylabel() == "Δ val. loss\nvs Muon"
    evals = [4, 8, 12]
    for ax in (ax_loss, ax_delta):
        curves = [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "")]
        assert len(curves) == (4 if ax is ax_loss else 3)
        assert all(list(ln.get_xdata()) == evals for ln in curves)  # a marker at each evaluation
    for ln, opt in zip(
        [ln for ln in ax_delta.get_lines() if ln.get_marker() not in ("None", "")],
        ["muon_mvr1", "muon_mvr2", "muon_mvr3"],
    ):
        assert ln.get_ydata()[-1] == pytest.approx(final_val(opt, LARGE, 0) - final_val("muon", LARGE, 0))
    assert len(ax_delta.collections) == 3  # seed bands
    one = build(results, ["muon_mvr"], seeds=[0])
    assert one["figures"][0].exists() and len(figs[-1].axes[1].collections) == 0


def test_styles_follow_the_optimizer_order_and_differ_within_every_figure():
    names = rundir.optimizer_names()
    styles = [plots.style(n) for n in names]
    assert len({s["color"] for s in styles}) == len(names)
    assert plots.style(names[1]) == dict(
        color=plots.PALETTE[1], linestyle=plots.LINESTYLES[1], marker=plots.MARKERS[1]
    )
    for name in FIGURES:
        opts = figures.figure(name, {})[1]
        for key in ("color", "marker"):
            assert len({plots.style(o)[key] for o in opts}) == len(opts), (name, key)
        assert len({str(plots.style(o)["linestyle"]) for o in opts}) == len(opts), name  # greyscale-safe
    # settings of one optimizer config get a style each, by their place
    assert len({s["color"] for s in plots.styles(["muon", "muon", "muon"])}) == 3


# ----------------------------------------------------------------------------- readable in print
COLUMN, MIN_PT = 3.3, 6.0  # inches of one column of a two-column page; smallest readable text there


def capture(monkeypatch) -> list[dict]:
    """For every figure the scripts save (saving it as they do): its png path, the smallest font size of
    each kind of text in points at the saved width (print_sizes at 1 in: multiply by the printed width) and
    its collisions; measured at once, while the script's rc settings and canvas are still in place."""
    saved, real = [], plots.save

    def spy(fig, png):
        paths = real(fig, png)
        saved.append(
            dict(png=Path(png), sizes=print_sizes(fig, Path(png), 1.0), collisions=collisions(fig), fig=fig)
        )
        return paths

    monkeypatch.setattr(plots, "save", spy)  # every figure of the engine is saved through it
    return saved


def saved_width(png: Path) -> float:
    """The width in inches of the figure as saved (bbox_inches='tight'): its pixels over the PNG's dpi."""
    with Image.open(png) as im:
        return im.width / im.info["dpi"][0]


def drawn_texts(fig) -> list[Text]:
    """The texts a draw of `fig` shows: visible and not empty; tick labels only of ticks in view."""
    fig.canvas.draw()
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - 1e-9 * (hi - lo) <= tick.get_loc() <= hi + 1e-9 * (hi - lo):
                    hidden |= {id(tick.label1), id(tick.label2)}
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]


def legends(fig) -> list:
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def print_sizes(fig, png: Path, printed_in: float) -> dict[str, float]:
    """The smallest font size, in points as printed `printed_in` inches wide (size x printed width / saved
    width), of the tick labels, the axis labels, the legend text and any other text (titles)."""
    drawn = {id(t): t for t in drawn_texts(fig)}
    kinds = {
        "tick labels": [
            t
            for ax in fig.axes
            for t in [*ax.get_xticklabels(which="both"), *ax.get_yticklabels(which="both")]
        ],
        "axis labels": [t for ax in fig.axes for t in (ax.xaxis.label, ax.yaxis.label)],
        "legend": [t for leg in legends(fig) for t in [*leg.get_texts(), leg.get_title()]],
    }
    kinds = {k: [t for t in ts if id(t) in drawn] for k, ts in kinds.items()}
    assert all(kinds.values()), f"{png.name}: no drawn {[k for k, ts in kinds.items() if not ts]}"
    listed = {id(t) for ts in kinds.values() for t in ts}
    kinds["other text"] = [t for i, t in drawn.items() if i not in listed]
    scale = printed_in / saved_width(png)
    return {k: min(t.get_fontsize() for t in ts) * scale for k, ts in kinds.items() if ts}


def collisions(fig) -> list[str]:
    """What runs into what: two drawn texts whose boxes overlap (the suptitle and a panel's title, y-label
    or tick labels, a legend entry and an axis label, ...), a text or a legend over a panel's plotting area
    (these figures write nothing inside a panel), a legend over a text that is not its own."""
    texts = drawn_texts(fig)
    renderer = fig.canvas.get_renderer()

    def box(artist):  # half a pixel in from each side: touching is not overlapping
        return artist.get_window_extent(renderer).padded(-0.5)

    def name(artist) -> str:
        return repr(artist.get_text()[:40]) if isinstance(artist, Text) else type(artist).__name__

    if fig._suptitle is not None and fig._suptitle not in texts:
        return ["the suptitle is not drawn"]
    out = [f"{name(a)} / {name(b)}" for a, b in itertools.combinations(texts, 2) if box(a).overlaps(box(b))]
    for i, ax in enumerate(fig.axes):
        out += [f"{name(t)} / panel {i}" for t in [*texts, *legends(fig)] if box(t).overlaps(box(ax))]
    for leg in legends(fig):
        own = {id(t) for t in leg.findobj(Text)}
        out += [f"legend / {name(t)}" for t in texts if id(t) not in own and box(t).overlaps(box(leg))]
    return out


def assert_readable(saved: list[dict], printed_in: float) -> None:
    for fig in saved:
        sizes = {k: round(v * printed_in, 2) for k, v in fig["sizes"].items()}
        print(f"{fig['png'].name} printed {printed_in} in wide: {sizes}")
        small = {k: v for k, v in sizes.items() if v < MIN_PT}
        assert not small, f"{fig['png'].name} at {printed_in} in has text under {MIN_PT} pt: {small}"
        assert fig["collisions"] == [], fig["png"].name


def test_every_figure_is_readable_in_a_single_column(tmp_path, monkeypatch):
    """The five paper figures and a user's comparison (scripts/compare.py), printed one column (3.3 in)
    wide: tick labels, axis labels, legend and titles at least 6 pt, and nothing overlapping."""
    saved = capture(monkeypatch)
    results = write_results(tmp_path / "results")
    build(results)
    for opt in ("muon", "muon_mvr1"):
        write_run(
            tmp_path / "quickstart",
            opt,
            LARGE,
            0,
            figure__title=rundir.experiment_config("quickstart")["figure"]["title"],
        )
    assert (
        compare_cli.main([str(tmp_path / "quickstart"), "--out", str(tmp_path / "quickstart" / "loss")]) == 0
    )
    assert [f["png"].name for f in saved] == [f"{f}.png" for f in FIGURES] + ["loss.png"]
    assert_readable(saved, COLUMN)


@pytest.fixture(scope="module")
def proxy_figures(tmp_path_factory) -> dict[str, dict]:
    """scripts/run_study.py --report-only on the committed proxy study, written elsewhere: png name ->
    capture()'s record."""
    out = tmp_path_factory.mktemp("proxy")
    with pytest.MonkeyPatch.context() as mp:
        saved = capture(mp)
        assert (
            run_study.main(
                [str(REPO / "results" / "proxy" / "study.yaml"), "--report-only", "--out", str(out)]
            )
            == 0
        )
    return {f["png"].name: f for f in saved}


@pytest.mark.slow
def test_proxy_study_figures_are_readable(proxy_figures):
    """The proxy study's figures (the comparisons, the readings with the longest subtitle, the stacked lr
    grid) at one column (3.3 in); reading A is lettered beside B and C, as its study file labels it."""
    assert list(proxy_figures) == [f"{f}.png" for f in [*FIGURES, "gluon_mvr3_readings", "lr_grid"]]
    assert_readable(list(proxy_figures.values()), COLUMN)
    grid = proxy_figures["lr_grid.png"]["fig"]
    grid_labels = {t.get_text() for ax in grid.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
    assert {"Gluon-MVR-3 (A)", "Gluon-MVR-3 (B)", "Gluon-MVR-3 (C)"} <= grid_labels, grid_labels
    readings = proxy_figures["gluon_mvr3_readings.png"]["fig"]
    assert [t.get_text().split(":")[0] for t in readings.legends[0].get_texts()] == [
        "Gluon",
        "Gluon-MVR-3 (A)",
        "Gluon-MVR-3 (B)",
        "Gluon-MVR-3 (C)",
    ]
    assert "Gluon-MVR-3 (A) 1.2e-4" in readings._suptitle.get_text()


def test_a_long_subtitle_is_wrapped_between_phrases():
    lines = plots.pack_lines(
        "proxy model, shakespeare_bytes data, B=16 x 128 tokens, 150 steps; mean ± std",
        lambda line: len(line) <= 40,
    )
    assert lines == ["proxy model, shakespeare_bytes data,", "B=16 x 128 tokens, 150 steps; mean ± std"]
    assert plots.pack_lines("a phrase longer than any line, b", lambda line: len(line) <= 12) == [
        "a phrase",
        "longer than",
        "any line, b",
    ]
