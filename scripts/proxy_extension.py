"""The proxy study's extension: the readings and baselines a reviewer asks for next, on the same model, data
and protocol as results/proxy/ (experiment=proxy, B=16, 3 seeds), compared with that study's runs.

    python scripts/proxy_extension.py                 # run what is missing (2 at a time), then the report
    python scripts/proxy_extension.py --report-only   # tables.md and the horizon figure from the runs
    python scripts/proxy_extension.py --dry-run       # the plan and what is done

Four questions, each setting at the best learning rate of results/proxy/'s grid (no new grid):
1. constrained Scion (`optimizer.constrained=true`) for Gluon, Gluon-MVR-1 and Gluon-MVR-2, at the lr of
   their unconstrained form;
2. Muon at momentum 0.9 (tuned MuonMVR preferred 0.9), at Muon's lr, and MuonMVR's Δ against the better Muon;
3. Gluon-MVR-1 with plain momentum on the embedding/head (MVR on the hidden matrices only, at Gluon-MVR-1's
   lr) and the reverse (MVR on the embedding/head only, at Gluon's lr: the hidden matrices, 96% of the
   parameters, take Gluon's momentum);
4. the horizon: 600-step runs (4x, the same schedule shape) of Gluon, Gluon-MVR-1, Gluon-MVR-2, Muon and
   MuonMVR (MVR1), each at its 150-step best, with the paired Δ against step.

Runs go to results/proxy_ext/<name>_s<seed>/ (finished ones are skipped, interrupted ones resume);
the 150-step references are read from results/proxy/. Δ is paired by seed: mean ± std of the 3 differences;
"lower"/"higher" when |mean| > 2·std, else "within noise".
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import rundir
from scripts.figure_style import RC, WIDTH, pyplot, save

REPO = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
BASE = REPO / "results" / "proxy"
OUT = REPO / "results" / "proxy_ext"
HORIZON = 600
HIDDEN_ONLY = "+optimizer.groups.embed={variant: gluon}"  # Gluon-MVR-1's MVR on the hidden matrices only


@dataclass(frozen=True)
class Setting:
    """One configuration of the study: a name, its optimizer and lr, and overrides."""

    name: str
    label: str
    optimizer: str
    lr: str
    extra: tuple[str, ...] = ()
    steps: int = 150
    base: str | None = None  # a results/proxy/ run name prefix (before _s<seed>) that already holds it

    def run_dir(self, seed: int) -> Path:
        if self.base is not None:
            return BASE / f"{self.base}_s{seed}"
        return OUT / f"{self.name}_s{seed}"

    def overrides(self, seed: int) -> list[str]:
        return ["experiment=proxy", f"optimizer={self.optimizer}", f"optimizer.lr={self.lr}", f"seed={seed}",
                f"train.steps={self.steps}", f"run_dir={self.run_dir(seed)}", *self.extra]


# the 150-step references in results/proxy/ (their names: <optimizer>_b16_lr<lr>_s<seed>[_<alt>])
GLUON = Setting("gluon", "Gluon", "gluon", "3.6e-4", base="gluon_b16_lr3.6e-4")
GLUON_MVR1 = Setting("gluon_mvr1", "Gluon-MVR-1", "gluon_mvr1", "1.2e-4", base="gluon_mvr1_b16_lr1.2e-4")
GLUON_MVR2 = Setting("gluon_mvr2", "Gluon-MVR-2", "gluon_mvr2", "3.6e-4", base="gluon_mvr2_b16_lr3.6e-4")
MUON = Setting("muon", "Muon (momentum 0.95)", "muon", "9e-3", base="muon_b16_lr9e-3")


class AltRef(Setting):
    """A results/proxy/ alternative-setting run: <base>_s<seed>_<alt>."""

    def run_dir(self, seed: int) -> Path:
        head, alt = self.base.rsplit("|", 1)
        return BASE / f"{head}_s{seed}_{alt}"


MUON_MVR1 = AltRef("muon_mvr1", "MuonMVR (MVR1, momentum 0.9)", "muon_mvr1", "9e-3",
                   base="muon_mvr1_b16_lr9e-3|momentum0.9")
MUON_MVR2 = AltRef("muon_mvr2", "MuonMVR (MVR2, momentum 0.9)", "muon_mvr2", "9e-3",
                   base="muon_mvr2_b16_lr9e-3|momentum0.9")

CONSTRAINED = "optimizer.constrained=true"
NEW = [
    Setting("gluon_constrained", "Gluon, constrained", "gluon_constrained", "3.6e-4"),
    Setting("gluon_mvr1_constrained", "Gluon-MVR-1, constrained", "gluon_mvr1", "1.2e-4", (CONSTRAINED,)),
    Setting("gluon_mvr2_constrained", "Gluon-MVR-2, constrained", "gluon_mvr2", "3.6e-4", (CONSTRAINED,)),
    Setting("muon_m0.9", "Muon (momentum 0.9)", "muon", "9e-3", ("optimizer.momentum=0.9",)),
    Setting("gluon_mvr1_hidden_only", "Gluon-MVR-1, MVR on hidden matrices only", "gluon_mvr1", "1.2e-4",
            (HIDDEN_ONLY,)),
    Setting("gluon_mvr1_embed_only", "Gluon-MVR-1, MVR on embedding/head only", "gluon", "3.6e-4",
            ("optimizer.reference=prev_params", "+optimizer.groups.embed={variant: mvr1}")),
]
LONG = [
    Setting(f"{s.name}_600", s.label, s.optimizer, s.lr, s.extra + (("optimizer.momentum=0.9",)
            if s is MUON_MVR1 else ()) + ("train.ckpt_every=200",), steps=HORIZON)
    for s in (GLUON, GLUON_MVR1, GLUON_MVR2, MUON, MUON_MVR1)
]
BY_NAME = {s.name: s for s in [GLUON, GLUON_MVR1, GLUON_MVR2, MUON, MUON_MVR1, MUON_MVR2, *NEW, *LONG]}

# (setting, baseline, question)
COMPARISONS = [
    ("gluon_constrained", "gluon", "constrained vs unconstrained Scion"),
    ("gluon_mvr1_constrained", "gluon_mvr1", "constrained vs unconstrained Scion"),
    ("gluon_mvr2_constrained", "gluon_mvr2", "constrained vs unconstrained Scion"),
    ("gluon_mvr1_constrained", "gluon_constrained", "Gluon-MVR vs Gluon, both constrained"),
    ("gluon_mvr2_constrained", "gluon_constrained", "Gluon-MVR vs Gluon, both constrained"),
    ("muon_m0.9", "muon", "Muon's momentum 0.9 vs 0.95"),
    ("gluon_mvr1_hidden_only", "gluon", "where Gluon-MVR-1 loses"),
    ("gluon_mvr1_embed_only", "gluon", "where Gluon-MVR-1 loses"),
    ("gluon_mvr1", "gluon", "where Gluon-MVR-1 loses (both parts, results/proxy)"),
]
HORIZON_PAIRS = [("gluon_mvr1_600", "gluon_600"), ("gluon_mvr2_600", "gluon_600"),
                 ("muon_mvr1_600", "muon_600")]


# ----------------------------------------------------------------------------- running
def pending() -> list[tuple[Setting, int]]:
    todo = []
    for s in [*NEW, *LONG]:
        for seed in SEEDS:
            done, _ = rundir.completion(s.run_dir(seed), s.steps)
            if not done:
                todo.append((s, seed))
    return todo


def run_all(todo: list[tuple[Setting, int]], parallel: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled",
               HF_HUB_OFFLINE="1")
    queue, running, start = list(todo), [], time.time()
    while queue or running:
        while queue and len(running) < parallel:
            s, seed = queue.pop(0)
            s.run_dir(seed).parent.mkdir(parents=True, exist_ok=True)
            log = open(OUT / f".{s.name}_s{seed}.out", "w")
            cmd = [sys.executable, str(REPO / "train.py"), *s.overrides(seed), "train.log_every=50"]
            running.append((s, seed, subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log), log))
        time.sleep(1.0)
        for item in list(running):
            s, seed, proc, log = item
            if proc.poll() is None:
                continue
            log.close()
            running.remove(item)
            state = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {log.name})"
            left = len(queue) + len(running)
            print(f"[ext {time.time() - start:6.0f} s] {s.name} seed {seed}: {state}; {left} to go",
                  flush=True)
            if proc.returncode != 0:
                raise SystemExit(1)
            shutil.rmtree(s.run_dir(seed) / rundir.CKPT, ignore_errors=True)  # committed runs: no checkpoints
            Path(log.name).unlink()


# ----------------------------------------------------------------------------- the report
def curve(s: Setting, seed: int) -> dict[int, float]:
    return {int(r["step"]): float(r["val_loss"]) for r in rundir.read_metrics(s.run_dir(seed))
            if r.get("val_loss") is not None}


def final(s: Setting, seed: int) -> float:
    return curve(s, seed)[s.steps]


def train_time(s: Setting) -> float:
    return float(np.mean([rundir.read_summary(s.run_dir(seed))["time_s"] for seed in SEEDS]))


def paired(a: Setting, b: Setting, step: int | None = None) -> tuple[float, float]:
    d = [(curve(a, s)[step or a.steps] - curve(b, s)[step or b.steps]) for s in SEEDS]
    return float(np.mean(d)), float(np.std(d, ddof=1))


def verdict(mean: float, std: float) -> str:
    return "within noise" if abs(mean) <= 2 * std else ("lower" if mean < 0 else "higher")


def finals_text(s: Setting) -> str:
    v = [final(s, seed) for seed in SEEDS]
    return f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f}"


def report() -> str:
    lines = ["# The proxy study, extended", "",
             "Generated by `python scripts/proxy_extension.py --report-only` from the runs in this folder "
             "and in `results/proxy/`. Same model, data and protocol as `results/proxy/` (150 steps of "
             "16 × 128 bytes, "
             "B = 16); each setting at the best lr of that study's grid; 3 seeds; Δ is paired by seed "
             "(mean ± std of the 3 differences).", "",
             "## Settings", "", "| setting | optimizer, lr, overrides | steps | final val loss (3 seeds) | "
             "train time (s, mean) |", "|---|---|---:|---:|---:|"]
    for s in [GLUON, GLUON_MVR1, GLUON_MVR2, MUON, MUON_MVR1, MUON_MVR2, *NEW, *LONG]:
        where = f"`results/proxy/` ({s.optimizer})" if s.base else " ".join(f"`{o}`" for o in
                                                                          (s.optimizer, s.lr, *s.extra))
        lines.append(f"| {s.label} ({s.name}) | {where}{'' if not s.base else ', lr ' + s.lr} | {s.steps} | "
                     f"{finals_text(s)} | {train_time(s):.0f} |")
    lines += ["", "## Comparisons (150 steps)", "",
              "| question | setting | vs | Δ final val loss | verdict |",
              "|---|---|---|---:|---|"]
    for a, b, question in COMPARISONS:
        m, sd = paired(BY_NAME[a], BY_NAME[b])
        lines.append(f"| {question} | {BY_NAME[a].label} | {BY_NAME[b].label} | {m:+.4f} ± {sd:.4f} | "
                     f"{verdict(m, sd)} |")
    best_muon = min((MUON, BY_NAME["muon_m0.9"]), key=lambda s: np.mean([final(s, x) for x in SEEDS]))
    lines += ["", f"The better Muon is {best_muon.label}. MuonMVR against it:", "",
              "| setting | vs | Δ final val loss | verdict |", "|---|---|---:|---|"]
    for mvr in (MUON_MVR1, MUON_MVR2):
        m, sd = paired(mvr, best_muon)
        lines.append(f"| {mvr.label} | {best_muon.label} | {m:+.4f} ± {sd:.4f} | {verdict(m, sd)} |")
    lines += ["", f"## The horizon ({HORIZON} steps, the same schedule shape)", "",
              "| setting | vs | Δ at 150 steps (own runs) | Δ at 300 | Δ at 600 | verdict at 600 |",
              "|---|---|---:|---:|---:|---|"]
    for a, b in HORIZON_PAIRS:
        A, B = BY_NAME[a], BY_NAME[b]
        short = paired(BY_NAME[a.removesuffix("_600")], BY_NAME[b.removesuffix("_600")])
        mid, end = paired(A, B, 300), paired(A, B, HORIZON)
        cells = " | ".join(f"{m:+.4f} ± {sd:.4f}" for m, sd in (short, mid, end))
        lines.append(f"| {A.label} | {B.label} | {cells} | {verdict(*end)} |")
    lines += ["", "The 150-step column compares the 150-step runs, whose warm-down starts earlier; the other "
              "columns compare points of the 600-step runs (horizon.png draws all of them).", ""]
    return "\n".join(lines)


def plot_horizon(png: Path) -> list[Path]:
    plt = pyplot()
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(WIDTH, 2.8), layout="constrained")
        for i, (a, b) in enumerate(HORIZON_PAIRS):
            A, B = BY_NAME[a], BY_NAME[b]
            steps = sorted(set.intersection(*[set(curve(A, s)) & set(curve(B, s)) for s in SEEDS]))
            d = np.array([[curve(A, s)[t] - curve(B, s)[t] for t in steps] for s in SEEDS])
            mean, sd = d.mean(0), d.std(0, ddof=1)
            line, = ax.plot(steps, mean, marker="os^"[i], markersize=3, label=f"{A.label} − {B.label}")
            ax.fill_between(steps, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, lw=0)
        ax.axhline(0, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("optimizer step (600-step runs)")
        ax.set_ylabel("Δ validation loss\n(paired by seed, ± std)")
        fig.legend(loc="outside lower center", ncol=1, frameon=False)
        paths = save(fig, png)
        plt.close(fig)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT, help="where tables.md and horizon.{png,pdf} go")
    args = ap.parse_args(argv)
    todo = pending()
    if args.dry_run:
        for s, seed in todo:
            print(" ".join(["python train.py", *s.overrides(seed)]))
        print(f"{len(todo)} run(s) to do")
        return 0
    if todo and not args.report_only:
        OUT.mkdir(parents=True, exist_ok=True)
        run_all(todo, args.parallel)
    elif todo:
        print(f"error: {len(todo)} run(s) are missing or unfinished (e.g. {todo[0][0].run_dir(todo[0][1])}); "
              "run `python scripts/proxy_extension.py` first", file=sys.stderr)
        return 2
    text = report()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tables.md").write_text(text)
    print(text)
    for p in plot_horizon(args.out / "horizon.png"):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
