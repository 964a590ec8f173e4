"""Kind `settings`: named settings at every seed, and the paired comparisons between them. Study file keys:

    studies       name -> another study file (relative to this one) whose runs and choices settings name
    settings      name -> one setting, in one of three forms:
                    best_of: <study>/<variant>   that study's runs of the variant at its best setting (its
                                                 rule applied to its finished runs), read there, not rerun
                    optimizer: <config>, lr: <number> or {best_of: <study>/<variant>} (that variant's best
                                                 lr), overrides: [...], steps: <train.steps>
                    like: <setting>              the optimizer, lr and overrides of another setting (for a
                                                 best_of one, its winning alternative too), with this
                                                 entry's steps and overrides added
                  and label (default: the optimizer config's). New runs: <folder>/<name>_s<seed>.
    comparisons   [{question, setting, baseline}]: the paired Δ of the final validation loss and its verdict
    against_best  {among: [settings], settings: [settings]}: each compared with the one of `among` with the
                  lower mean final loss
    horizon       {steps: [...], pairs: [{setting, baseline, short: [setting, baseline]}]}: the paired Δ of
                  long runs at those steps, beside that of a shorter pair; drawn in horizon.png

Outputs beside the study file: tables.md and horizon.png/.pdf.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import rundir
from study import launch, plots, runs, spec, tables, tuned
from study.spec import StudyFile, check_keys
from study.stats import paired

KEYS = ("studies", "settings", "comparisons", "against_best", "horizon")
SETTING_KEYS = ("best_of", "optimizer", "lr", "overrides", "steps", "like", "label")


@dataclass
class Setting:
    name: str
    label: str
    optimizer: str
    lr: float
    extra: list[str]  # overrides beyond optimizer and lr (an alternative included)
    steps: int
    dirs: list[Path] | None = None  # runs read elsewhere (best_of); None: <folder>/<name>_s<seed>
    where: str = ""  # the study folder a best_of setting is read from

    def run_dirs(self, folder: Path, seeds: list[int]) -> list[Path]:
        return self.dirs if self.dirs is not None else [folder / f"{self.name}_s{s}" for s in seeds]


class Study:
    """A settings study read from its file: its settings resolved against the studies it names."""

    def __init__(self, sf: StudyFile):
        self.sf, self.seeds, self.folder = sf, sf.seeds, sf.folder
        self._others: dict[str, tuned.Results] = {}
        raw = sf.data.get("settings") or {}
        check_keys(sf, raw, list(raw), "settings.")
        self.settings: dict[str, Setting] = {}
        for name, entry in raw.items():
            check_keys(sf, entry, SETTING_KEYS, f"settings.{name}.")
            self.settings[name] = self._setting(name, entry)

    def other(self, ref: str, key: str) -> tuple[tuned.Results, tuned.Variant]:
        """The study and variant `<study>/<variant>` names (the other study must be finished)."""
        study, _, vid = str(ref).partition("/")
        files = self.sf.data.get("studies") or {}
        if study not in files:
            raise self.sf.error(key, f"{ref!r}: no study {study!r} under `studies` ({', '.join(files)})")
        if study not in self._others:
            other = spec.load(self.folder / files[study], {"tuned": tuned.KEYS})
            self._others[study] = tuned.results_of(other)
        res = self._others[study]
        if vid not in res.by_id:
            raise self.sf.error(key, f"{ref!r}: {study} has no variant {vid!r} ({', '.join(res.by_id)})")
        return res, res.by_id[vid]

    def _setting(self, name: str, e: dict) -> Setting:
        key = f"settings.{name}"
        own = [str(o) for o in e.get("overrides") or []]
        if "best_of" in e:
            res, v = self.other(e["best_of"], f"{key}.best_of")
            lr, alt = res.best(v)
            dirs = [res.folder / tuned.Spec(v, lr, s, alt).name for s in self.seeds]
            extra = [f"optimizer.{alt[0]}={alt[1]!r}"] if alt else []
            steps = int(runs.load(dirs[0]).steps)
            return Setting(
                name,
                str(e.get("label") or v.label),
                v.optimizer,
                lr,
                extra,
                steps,
                dirs,
                launch.display_path(res.folder),
            )
        if "like" in e:
            base = self.settings.get(e["like"])
            if base is None:
                raise self.sf.error(f"{key}.like", f"{e['like']!r} is not a setting named before it")
            return Setting(
                name,
                str(e.get("label") or base.label),
                base.optimizer,
                base.lr,
                base.extra + own,
                int(e.get("steps", base.steps)),
            )
        if "optimizer" not in e or "lr" not in e:
            raise self.sf.error(key, "give best_of, like, or optimizer and lr")
        lr = e["lr"]
        if isinstance(lr, dict):
            check_keys(self.sf, lr, ("best_of",), f"{key}.lr.")
            res, v = self.other(lr["best_of"], f"{key}.lr.best_of")
            lr = res.best(v)[0]
        if "steps" not in e:
            raise self.sf.error(f"{key}.steps", "missing: give train.steps of its runs")
        return Setting(
            name,
            str(e.get("label") or rundir.optimizer_label(str(e["optimizer"]))),
            str(e["optimizer"]),
            float(lr),
            own,
            int(e["steps"]),
        )

    def get(self, name: str, key: str) -> Setting:
        if name not in self.settings:
            raise self.sf.error(key, f"{name!r} is not a setting ({', '.join(self.settings)})")
        return self.settings[name]

    # ------------------------------------------------------------------------- numbers
    def curve(self, s: Setting) -> dict[int, dict[int, float]]:
        """seed -> (step -> validation loss)."""
        return {seed: runs.load(d).val() for seed, d in zip(self.seeds, s.run_dirs(self.folder, self.seeds))}

    def at(self, s: Setting, step: int | None = None) -> dict[int, float]:
        return {seed: c[step or s.steps] for seed, c in self.curve(s).items()}

    def delta(self, a: Setting, b: Setting, step: int | None = None):
        return paired(self.at(a, step), self.at(b, step))


def plan_study(sf: StudyFile, composer) -> tuple[list[launch.Run], list[str]]:
    st = Study(sf)
    out = []
    for s in st.settings.values():
        if s.dirs is not None:
            continue
        for seed, d in zip(st.seeds, s.run_dirs(st.folder, st.seeds)):
            ov = [
                *sf.overrides,
                f"optimizer={s.optimizer}",
                f"optimizer.lr={s.lr!r}",
                f"seed={seed}",
                f"train.steps={s.steps}",
                *s.extra,
            ]
            cfg = composer(ov)
            cfg["run_dir"] = launch.display_path(d)
            out.append(
                launch.Run(d, [*ov, f"run_dir={cfg['run_dir']}"], s.steps, cfg, f"{s.name} seed={seed}")
            )
    return out, []


def report_study(sf: StudyFile, out: Path | None = None, allow_incomplete: bool = False) -> dict:
    """tables.md and horizon.png/.pdf in `out` (default: beside the study file)."""
    out = out or sf.folder
    st = Study(sf)
    missing = [
        f"  {d}: {why}"
        for s in st.settings.values()
        for d in s.run_dirs(st.folder, st.seeds)
        if not (why := rundir.completion(d, s.steps)[1]) == ""
    ]
    if missing:
        raise runs.RunError(
            f"runs of {sf.path} are missing or unfinished (run the study to finish them):\n"
            + "\n".join(missing)
        )
    rows = []
    for s in st.settings.values():
        where = (
            f"`{s.where}/` ({s.optimizer}), lr {tables.fmt_lr(s.lr)}"
            if s.dirs is not None
            else " ".join(f"`{o}`" for o in (s.optimizer, tables.fmt_lr(s.lr), *s.extra))
        )
        times = [rundir.read_summary(d)["time_s"] for d in s.run_dirs(st.folder, st.seeds)]
        rows.append(
            [
                f"{s.label} ({s.name})",
                where,
                s.steps,
                tables.over_seeds(list(st.at(s).values())),
                f"{np.mean(times):.0f}",
            ]
        )
    md = [
        f"# {sf.title}",
        "",
        "## Settings",
        "",
        *tables.markdown(
            [
                "setting",
                "optimizer, lr, overrides",
                "steps",
                f"final val loss ({len(st.seeds)} seeds)",
                "train time (s, mean)",
            ],
            "llrrr",
            rows,
        ),
    ]
    cmp_rows = []
    for i, c in enumerate(sf.data.get("comparisons") or []):
        check_keys(sf, c, ("question", "setting", "baseline"), f"comparisons[{i}].")
        a, b = (
            st.get(c["setting"], f"comparisons[{i}].setting"),
            st.get(c["baseline"], f"comparisons[{i}].baseline"),
        )
        d = st.delta(a, b)
        cmp_rows.append([c["question"], a.label, b.label, tables.delta(d), d.verdict])
    if cmp_rows:
        md += [
            "",
            "## Comparisons (150 steps)",
            "",
            *tables.markdown(["question", "setting", "vs", "Δ final val loss", "verdict"], "lllrl", cmp_rows),
        ]
    ab = sf.data.get("against_best")
    if ab:
        check_keys(sf, ab, ("among", "settings"), "against_best.")
        among = [st.get(n, "against_best.among") for n in ab["among"]]
        best = min(among, key=lambda s: np.mean(list(st.at(s).values())))
        rows = []
        for n in ab["settings"]:
            s = st.get(n, "against_best.settings")
            d = st.delta(s, best)
            rows.append([s.label, best.label, tables.delta(d), d.verdict])
        md += [
            "",
            f"## Against the better of {' / '.join(s.label for s in among)}",
            "",
            *tables.markdown(["setting", "vs", "Δ final val loss", "verdict"], "llrl", rows),
        ]
    figs = []
    hz = sf.data.get("horizon")
    if hz:
        check_keys(sf, hz, ("steps", "pairs"), "horizon.")
        steps = [int(x) for x in hz["steps"]]
        rows, curves = [], []
        for i, p in enumerate(hz["pairs"]):
            check_keys(sf, p, ("setting", "baseline", "short"), f"horizon.pairs[{i}].")
            a, b = st.get(p["setting"], f"horizon.pairs[{i}]"), st.get(p["baseline"], f"horizon.pairs[{i}]")
            sa, sb = (st.get(n, f"horizon.pairs[{i}].short") for n in p["short"])
            ds = [st.delta(sa, sb), *(st.delta(a, b, x) for x in steps)]
            rows.append([a.label, b.label, *(tables.delta(d) for d in ds), ds[-1].verdict])
            curves.append(delta_curve(st, a, b))
        short = st.get(hz["pairs"][0]["short"][0], "horizon").steps
        md += [
            "",
            f"## The horizon ({max(steps)} steps, the same schedule shape)",
            "",
            *tables.markdown(
                [
                    "setting",
                    "vs",
                    f"Δ at {short} steps (own runs)",
                    *(f"Δ at {x}" for x in steps),
                    f"verdict at {steps[-1]}",
                ],
                "ll" + "r" * (len(steps) + 1) + "l",
                rows,
            ),
        ]
        figs = plots.deltas(curves, f"optimizer step ({max(steps)}-step runs)", out / "horizon.png")
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables.md").write_text("\n".join(md) + "\n")
    return dict(figures=figs, tables=[out / "tables.md"], markdown="\n".join(md) + "\n")


def delta_curve(st: Study, a: Setting, b: Setting) -> runs.DeltaCurve:
    ca, cb = st.curve(a), st.curve(b)
    steps = sorted(set.intersection(*[set(ca[s]) & set(cb[s]) for s in st.seeds]))
    d = np.array([[ca[s][t] - cb[s][t] for t in steps] for s in st.seeds])
    std = d.std(axis=0, ddof=1) if len(d) > 1 else np.zeros(len(steps))
    return runs.DeltaCurve(
        a.optimizer, f"{a.label} − {b.label}", np.array(steps), d.mean(axis=0), std, len(d)
    )
