"""The run-directory contract: what a training run leaves on disk, and how every script reads it.

One run is one directory (the study engine, study/figures.py, names it
``<optimizer>_b<global_seqs>_s<seed>``, see `run_name`). Rank 0 of train.py is the only writer; every
other rank writes only its optimizer shard under ``ckpt/``. The files:

    config.yaml     the resolved Hydra config, written once when the run starts (`read_config`)
    metrics.jsonl   one JSON object per optimizer step, appended as the step finishes (`append_metrics`):
                    step (1, 2, 3, ...), train_loss, lr, tokens, data_tokens, grad_evals, time_s, step_ms,
                    wall_s, and val_loss on evaluation steps. On resume it is cut back to the checkpoint's
                    step (`truncate_metrics`). Only its last line can be cut short (power loss, full disk):
                    readers drop such a line with a warning; any other unreadable line is an error.
    summary.json    written atomically when the last step is done (`write_summary`): completed, status,
                    steps, tokens, grad_evals, time_s, final_val_loss. Its presence alone does not make a
                    run complete; `completion` checks it against metrics.jsonl. A run that stopped on a
                    non-finite loss, parameter or optimizer state writes it too, with completed false,
                    status "diverged", the steps done and the error (`diverged`).
    train.log       the human-readable log (git SHA, environment, command, progress lines)
    ckpt/           step_XXXXXX/ checkpoints and LATEST

Configs (``configs/`` at the repository root) are read here without Hydra where the scripts need a fact from
them: the optimizers and their display labels, an experiment's figure and the batch it selects.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CONFIG = "config.yaml"
CKPT = "ckpt"
LOG = "train.log"
STATUS_COMPLETED, STATUS_DIVERGED = "completed", "diverged"  # summary.json "status"

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# The papers' five figures (configs/experiment/<name>.yaml): what scripts/sweep.py runs by default. A list,
# not a search of configs/experiment/, so that an experiment a user adds joins no plan or figure by itself.
PAPER_FIGURES = ("fig1", "fig2", "fig3", "fig4", "muon_mvr")


# ----------------------------------------------------------------------------- naming
def run_name(optimizer: str, global_seqs: int, seed: int) -> str:
    """The directory name of a run: ``<optimizer>_b<global_seqs>_s<seed>``, e.g. ``gluon_b512_s0``."""
    if not optimizer or "/" in optimizer or os.sep in optimizer:
        raise ValueError(
            f"run_name: optimizer {optimizer!r} must be a non-empty config name without '/' "
            f"(one of {', '.join(optimizer_names())})"
        )
    return f"{optimizer}_b{int(global_seqs)}_s{int(seed)}"


# ----------------------------------------------------------------------------- metrics.jsonl
def _atomic_write(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same directory and os.replace it over `path`."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _parse_metrics(path: Path) -> tuple[list[tuple[bytes, dict]], bool]:
    """([(raw line, record), ...], whether the file needs rewriting to be clean)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    numbered = [(n, raw) for n, raw in enumerate(lines, 1) if raw.strip()]
    out = []
    dirty = bool(data) and not data.endswith(b"\n")
    for i, (n, raw) in enumerate(numbered):
        try:
            rec = json.loads(raw.decode("utf-8"))
            if not isinstance(rec, dict):
                raise ValueError(f"a JSON {type(rec).__name__}, not an object")
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            if i < len(numbered) - 1:
                raise ValueError(
                    f"{path}: line {n} is not a JSON record ({e}). Only the last line of a metrics file can "
                    f"be cut short by a crash, so this file was damaged or edited: fix or delete line {n}, "
                    f"or delete {path} and rerun the run from scratch"
                ) from None
            warnings.warn(
                f"{path}: line {n} (the last) is cut short or corrupt ({e}); dropped it. A write "
                f"interrupted by power loss or a full disk leaves this; read_metrics(run_dir, "
                f"repair=True), or resuming the run, rewrites the file without it",
                stacklevel=3,
            )
            dirty = True
            continue
        out.append((raw, rec))
    return out, dirty


def _rewrite(path: Path, kept: list[tuple[bytes, dict]]) -> None:
    _atomic_write(path, b"".join(raw.rstrip(b"\r") + b"\n" for raw, _ in kept))


def read_metrics(run_dir, *, repair: bool = False) -> list[dict]:
    """Every record of ``run_dir/metrics.jsonl`` in file order; [] if there is no such file.

    A cut-short or corrupt LAST line is dropped with a warning naming the file and line; with
    ``repair=True`` the file is then rewritten atomically without it. A corrupt line anywhere else
    raises ValueError naming the file and the line.
    """
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    kept, dirty = _parse_metrics(path)
    if repair and dirty:
        _rewrite(path, kept)
    return [rec for _, rec in kept]


def last_record(run_dir) -> dict | None:
    """The last complete record of ``run_dir/metrics.jsonl`` (None if none), reading only the file's end."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return None
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        block, pos = 8192, end
        while True:
            pos = max(0, end - block)
            f.seek(pos)
            lines = f.read(end - pos).split(b"\n")
            whole = lines if pos == 0 else lines[1:]  # the window's first line may start mid-line
            for raw in reversed(whole):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except ValueError:
                    continue  # a line cut short by a crash
                if isinstance(rec, dict):
                    return rec
            if pos == 0:
                return None
            block *= 4


def append_metrics(run_dir, record: dict) -> None:
    """Append `record` to ``run_dir/metrics.jsonl`` as one JSON line and flush it (rank 0 of train.py)."""
    path = Path(run_dir) / METRICS
    line = (json.dumps(record) + "\n").encode("utf-8")
    with open(path, "a+b") as f:
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                raise ValueError(
                    f"{path} ends in a cut-short line; appending would corrupt it. Call "
                    f"rundir.truncate_metrics(run_dir, last_step) or "
                    f"rundir.read_metrics(run_dir, repair=True) first"
                )
        f.write(line)
        f.flush()


def truncate_metrics(run_dir, last_step: int) -> None:
    """Keep the records with step <= last_step; atomic rewrite (rank 0 of train.py, resuming from a
    checkpoint at that step, so the continued curve has no duplicates).

    A cut-short last line is dropped with read_metrics' warning. No file: nothing to do.
    """
    path = Path(run_dir) / METRICS
    if not path.exists():
        return
    kept, _ = _parse_metrics(path)
    for raw, rec in kept:
        if not isinstance(rec.get("step"), int):
            raise ValueError(
                f"{path}: record {raw[:80]!r} has no integer 'step'; cannot truncate to step "
                f"{last_step}. Remove that line or delete {path}"
            )
    _rewrite(path, [(raw, rec) for raw, rec in kept if rec["step"] <= last_step])


# ----------------------------------------------------------------------------- summary.json, config.yaml
def prepare_for_steps(run_dir, start: int, log, writer: bool, resumed: bool) -> None:
    """Before step ``start + 1`` is recorded (rank 0: ``writer``): a resumed run's metrics.jsonl is
    repaired (a cut-short last line dropped, with the warning also sent to ``log``) and cut back to the
    checkpoint's step; a fresh run starts without stale metrics.jsonl or summary.json."""
    if not writer:
        return
    d = Path(run_dir)
    if not resumed:
        for stale in (METRICS, SUMMARY):
            (d / stale).unlink(missing_ok=True)
        return
    with warnings.catch_warnings(record=True) as caught:  # into train.log as well as stderr
        warnings.simplefilter("always")
        read_metrics(d, repair=True)
    for w in caught:
        log(f"warning: {w.message}")
        warnings.warn(w.message, w.category, stacklevel=2)
    truncate_metrics(d, start)


def write_summary(run_dir, summary: dict) -> None:
    """Write ``run_dir/summary.json`` atomically (temporary file + os.replace), indent 2, final newline
    (rank 0 of train.py, after the last step)."""
    _atomic_write(Path(run_dir) / SUMMARY, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))


def read_summary(run_dir) -> dict | None:
    """``run_dir/summary.json`` as a dict; None if there is no such file."""
    path = Path(run_dir) / SUMMARY
    if not path.exists():
        return None
    try:
        out = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(
            f"{path} is not valid JSON ({e}); train.py writes it atomically at the end of a "
            f"run, so delete it and let the sweep resume or rerun that run"
        ) from None
    if not isinstance(out, dict):
        raise ValueError(
            f"{path} holds a JSON {type(out).__name__}, not an object; delete it and let the "
            f"sweep resume or rerun that run"
        )
    return out


def load_yaml(path: Path) -> dict:
    from omegaconf import OmegaConf  # Hydra's own YAML reading (e.g. 1e-3 is a float), no interpolation

    out = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return out if isinstance(out, dict) else {}


def read_config(run_dir) -> dict | None:
    """``run_dir/config.yaml`` (the resolved config train.py ran with) as a plain dict; None if absent."""
    path = Path(run_dir) / CONFIG
    return load_yaml(path) if path.exists() else None


def diverged(run_dir) -> str | None:
    """The error of a run that stopped on a non-finite value (summary.json status "diverged"), else None."""
    summary = read_summary(run_dir)
    if summary is None or summary.get("status") != STATUS_DIVERGED:
        return None
    return str(summary.get("error") or "non-finite value")


# ----------------------------------------------------------------------------- completion
def completion(run_dir, steps: int | None = None) -> tuple[bool, str]:
    """(True, "") if the run finished, else (False, the reason).

    Finished: metrics.jsonl has steps 1, 2, 3, ... up to its last, which carries val_loss and equals
    `steps` when given; summary.json says completed and gives the same number of steps.
    """
    d = Path(run_dir)
    if not (d / METRICS).exists():
        return False, f"{METRICS} is missing"
    try:
        records = read_metrics(d)
    except ValueError as e:
        return False, str(e)
    if not records:
        return False, f"{METRICS} is empty"
    for i, rec in enumerate(records, 1):
        if rec.get("step") != i:
            return False, f"{METRICS} steps are not 1, 2, 3, ...: record {i} has step {rec.get('step')!r}"
    last = len(records)
    if steps is not None and last != steps:
        return False, f"{METRICS} stops at step {last} of {steps}"
    if records[-1].get("val_loss") is None:
        return False, f"step {last} (the last in {METRICS}) has no val_loss"
    try:
        summary = read_summary(d)
    except ValueError as e:
        return False, str(e)
    if summary is None:
        return False, f"{SUMMARY} is missing"
    if summary.get("completed") is not True:
        return False, f"{SUMMARY} does not say completed"
    if summary.get("steps") != last:
        return False, f"{SUMMARY} says steps={summary.get('steps')!r} but {METRICS} ends at step {last}"
    return True, ""


# ----------------------------------------------------------------------------- configs/
def _stems(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def optimizer_names() -> list[str]:
    """The optimizer configs, ``configs/optimizer/*.yaml`` stems, sorted."""
    return _stems("optimizer")


def optimizer_config(name: str) -> dict:
    """``configs/optimizer/<name>.yaml`` as a dict; ValueError listing the choices for an unknown name."""
    path = CONFIGS / "optimizer" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"unknown optimizer {name!r}: {path} does not exist; choose one of {', '.join(optimizer_names())}"
        )
    return load_yaml(path)


def optimizer_label(name: str) -> str:
    """How figures and tables name an optimizer: its config's ``label:``, else `name` (also for a name
    with no config, e.g. a run of a config since renamed)."""
    try:
        label = optimizer_config(name).get("label")
    except ValueError:
        return name
    return str(label) if label else name


def experiment_config(name: str) -> dict:
    """``configs/experiment/<name>.yaml`` as written (defaults list, figure, overrides; no interpolation);
    ValueError listing the choices for an unknown name."""
    path = CONFIGS / "experiment" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"unknown experiment {name!r}: {path} does not exist; choose one of "
            f"{', '.join(_stems('experiment'))}"
        )
    return load_yaml(path)


def _default_group(cfg: dict, group: str) -> str | None:
    """The option a config's defaults list picks for `group` (``- override /batch: b512`` -> b512)."""
    for entry in cfg.get("defaults") or []:
        if isinstance(entry, dict):
            for key, value in entry.items():
                if key.replace("override", "").strip().strip("/") == group:
                    return value
    return None


def experiment_batch(experiment: str) -> int:
    """The global batch (sequences) an experiment trains with: the ``batch.global_seqs`` it sets, else
    that of the batch config its defaults list selects (else the one configs/config.yaml selects)."""
    cfg = experiment_config(experiment)
    path = CONFIGS / "experiment" / f"{experiment}.yaml"
    own = (cfg.get("batch") or {}).get("global_seqs")
    if own is None:
        choice = _default_group(cfg, "batch") or _default_group(load_yaml(CONFIGS / "config.yaml"), "batch")
        batch_path = CONFIGS / "batch" / f"{choice}.yaml"
        if choice is None or not batch_path.is_file():
            raise ValueError(
                f"{path}: selects batch config {choice!r}, but {batch_path} does not exist; "
                f"choose one of {', '.join(_stems('batch'))}"
            )
        own, path = load_yaml(batch_path).get("global_seqs"), batch_path
    if not isinstance(own, int) or isinstance(own, bool):
        raise ValueError(f"{path}: global_seqs is {own!r}; it must be a whole number of sequences")
    return own
