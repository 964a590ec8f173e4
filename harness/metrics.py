"""What a run reports: the run log (stdout, train.log, metrics.jsonl, optional wandb), throughput and MFU,
the per-step record and progress line, and the summary. Rank 0 writes; other ranks' calls do nothing.

`Progress` is the run's counters (also saved in checkpoints); `Metrics` owns the logging and validation
intervals (`should_validate`), the step record (harness/rundir.py lists its fields) and the summary.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from harness import rundir
from harness.config import wandb_mode
from harness.provenance import git_sha

# Dense bf16 tensor-core peaks per GPU (no sparsity), from NVIDIA's data sheets; matched by name, the
# more specific pattern first. MFU is omitted for a GPU not listed unless train.peak_tflops is set.
PEAK_BF16_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
    ("RTX 6000 Ada", 364.0),
    ("A6000", 155.0),
]


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if pattern in name:
            return tflops * 1e12
    return None


class Throughput:
    """Per-step timing with the first `warmup` steps after (re)start excluded from the medians. Each
    timed step keeps its gradient passes, so the processed rate of a run is the median of its steps'
    own rates (a two-pass run's single-pass last step does not dilute it)."""

    def __init__(self, warmup: int, flops_per_token: float, peak: float | None, world: int):
        self.warmup, self.fpt, self.peak, self.world = warmup, flops_per_token, peak, world
        self.seen, self.ms, self.passes = 0, [], []

    def add(self, step_ms: float, passes: int = 1) -> bool:
        self.seen += 1
        timed = self.seen > self.warmup
        if timed:
            self.ms.append(step_ms)
            self.passes.append(passes)
        return timed

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.ms) if self.ms else None

    def median_processed_tok_s(self, tokens_per_step: int) -> float | None:
        """Median over timed steps of passes · tokens_per_step / step time."""
        rates = [n * tokens_per_step * 1000 / ms for n, ms in zip(self.passes, self.ms)]
        return statistics.median(rates) if rates else None

    def mfu(self, processed_tokens_per_s: float) -> float | None:
        return None if self.peak is None else self.fpt * processed_tokens_per_s / (self.world * self.peak)


def fmt_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def environment(world: int, device: torch.device) -> dict:
    env = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        world_size=world,
        device=str(device),
        cuda=torch.version.cuda,
        host=platform.node(),
    )
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def init_wandb(cfg, run_dir: Path, log):
    """A wandb run that survives resume (its id is kept in run_dir/wandb_id) and sweeps (grouped by
    figure, tagged with optimizer, batch and seed). $WANDB_MODE wins over wandb.mode; a server that does
    not answer within wandb.init_timeout_s sends the run offline with a warning, and if wandb cannot start
    at all the run trains on without it (a logging service never stops training)."""
    mode = wandb_mode(cfg)
    if mode == "disabled":
        return None
    import wandb  # imported only when used

    id_file = run_dir / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
    id_file.write_text(run_id + "\n")
    kwargs = dict(
        project=cfg.wandb.project,
        name=cfg.run_name,
        id=run_id,
        resume="allow",
        dir=str(run_dir),
        group=cfg.wandb.group or cfg.figure.name or None,
        tags=[cfg.optimizer.name, f"b{cfg.batch.global_seqs}", f"seed{cfg.seed}"],
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        mode=mode,
    )
    try:
        return wandb.init(**kwargs, settings=wandb.Settings(init_timeout=cfg.wandb.init_timeout_s))
    except Exception as e:  # noqa: BLE001 - a logging service must never stop training
        first = f"{type(e).__name__}: {e}"
    if mode == "online":
        log(
            f"warning: wandb did not start online within {cfg.wandb.init_timeout_s:g} s ({first}); "
            f"logging offline to {run_dir}/wandb (sync later with `wandb sync`)"
        )
        kwargs["mode"] = "offline"
        try:
            return wandb.init(**kwargs)
        except Exception as e:  # noqa: BLE001
            first = f"{type(e).__name__}: {e}"
    log(f"warning: wandb could not start ({first}); training goes on without it (metrics.jsonl has it all)")
    return None


class RunLog:
    """Rank 0 only: stdout, run_dir/train.log, run_dir/metrics.jsonl (through rundir), optional wandb."""

    def __init__(self, run_dir: Path, rank: int):
        self.active, self.run_dir, self.wandb, self.log_file = rank == 0, run_dir, None, None

    def open(self, cfg) -> None:
        if self.active:
            self.log_file = open(self.run_dir / rundir.LOG, "a")
            self.wandb = init_wandb(cfg, self.run_dir, self.print)

    def print(self, msg: str) -> None:
        if self.active:
            print(msg, flush=True)
            if self.log_file is not None:
                self.log_file.write(msg + "\n")
                self.log_file.flush()

    def metrics(self, record: dict) -> None:
        if self.active:
            rundir.append_metrics(self.run_dir, record)
            if self.wandb is not None:
                try:
                    self.wandb.log(record, step=record["step"])
                except Exception as e:  # noqa: BLE001 - a logging service must never stop training
                    self.print(
                        f"warning: wandb.log failed ({type(e).__name__}: {e}); wandb is off for this run"
                    )
                    self.wandb = None

    def close(self) -> None:
        if self.active:
            if self.wandb is not None:
                try:
                    self.wandb.finish()
                except Exception as e:  # noqa: BLE001
                    self.print(f"warning: wandb.finish failed ({type(e).__name__}: {e})")
                self.wandb = None
            if self.log_file is not None:
                self.log_file.close()
                self.log_file = None


@dataclass
class Progress:
    """The run's counters after ``step`` optimizer steps (saved in every checkpoint's state.pt)."""

    step: int = 0
    tokens: int = 0  # tokens processed, every gradient pass counted
    grad_evals: int = 0  # gradient passes
    time_s: float = 0.0  # time inside training steps
    wall_s: float = 0.0  # everything since the run (not this process) started

    def state(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "step"}

    @classmethod
    def from_state(cls, saved: dict) -> Progress:
        return cls(saved["step"], saved["tokens"], saved["grad_evals"], saved["time_s"], saved["wall_s"])


# summary.json's timing fields, in the order Metrics.summary computes them (a finished run's rerun keeps them)
TIMING_KEYS = ("median_step_ms", "data_tokens_per_s", "processed_tokens_per_s", "mfu", "peak_mem_gib")


class Metrics:
    """The step record, the progress line, the collapse warning and the summary of one run."""

    def __init__(
        self, log: RunLog, cfg, flops_per_token: float, device: torch.device, world: int, tokens_per_step: int
    ) -> None:
        tc = cfg.train
        self.log, self.device, self.tokens_per_step = log, device, tokens_per_step
        self.steps, self.log_every, self.val_every = tc.steps, tc.log_every, tc.val_every
        self.val_late_every, self.val_late_frac = tc.val_late_every, tc.val_late_frac
        self.warmup_steps, self.vocab_size = tc.warmup_steps, cfg.model.vocab_size
        self.thr = Throughput(tc.timing_warmup, flops_per_token, peak_flops(device, tc.peak_tflops), world)
        self.collapse_warned = False

    def should_validate(self, done: int) -> bool:
        """After step ``done``: every train.val_every steps (0: never before the end), every
        train.val_late_every steps once ``done / steps >= 1 - train.val_late_frac`` (0: no late
        cadence; the optimization track's 25 over the last 10%), and at the end."""
        late = self.val_late_every and done >= (1 - self.val_late_frac) * self.steps
        every = self.val_late_every if late else self.val_every
        return bool(every and done % every == 0) or done == self.steps

    def step(
        self, p: Progress, train_loss: float, lr: float, passes: int, dt: float, val_loss: float | None
    ) -> None:
        """Record step ``p.step`` (its time ``dt`` s, ``passes`` gradient passes) and print its line."""
        done, cuda = p.step, self.device.type == "cuda"
        timed = self.thr.add(1000 * dt, passes)
        data_tps, proc_tps = self.tokens_per_step / dt, passes * self.tokens_per_step / dt
        record = dict(
            step=done,
            train_loss=train_loss,
            lr=lr,
            tokens=p.tokens,
            data_tokens=done * self.tokens_per_step,
            grad_evals=p.grad_evals,
            passes=passes,
            time_s=round(p.time_s, 4),
            step_ms=round(1000 * dt, 2),
            data_tok_s=round(data_tps, 1),
            proc_tok_s=round(proc_tps, 1),
        )
        mfu = self.thr.mfu(proc_tps)
        if mfu is not None:
            record["mfu"] = round(mfu, 4)
        if cuda:
            record["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)
        if not timed:
            record["warmup"] = True
        record["wall_s"] = round(p.wall_s, 4)
        if val_loss is not None:
            record["val_loss"] = val_loss
        self.log.metrics(record)
        self._warn_collapse(done, train_loss)
        if done % self.log_every == 0 or val_loss is not None or done == self.steps:
            self.log.print(self._line(record, dt, data_tps, proc_tps, mfu))

    def _line(self, record: dict, dt: float, data_tps: float, proc_tps: float, mfu: float | None) -> str:
        done, med = record["step"], self.thr.median_ms
        msg = (
            f"step {done}/{self.steps} loss {record['train_loss']:.4f} lr {record['lr']:.3g} "
            f"{1000 * dt:.0f} ms"
            + (f" (median {med:.0f})" if med else " (warm-up)")
            + f" {data_tps:,.0f} tok/s data, {proc_tps:,.0f} processed"
        )
        if mfu is not None:
            msg += f" MFU {100 * mfu:.1f}%"
        if "peak_mem_gib" in record:
            msg += f" mem {record['peak_mem_gib']:.1f} GiB"
        if med and done < self.steps:
            msg += f" ETA {fmt_eta((self.steps - done) * med / 1000)}"
        if "val_loss" in record:
            msg += f" val_loss {record['val_loss']:.4f}"
        return msg

    def _warn_collapse(self, done: int, train_loss: float) -> None:
        uniform = math.log(self.vocab_size)
        if not self.collapse_warned and done > max(10, self.warmup_steps) and train_loss >= uniform - 0.01:
            self.collapse_warned = True
            self.log.print(
                f"warning: at step {done} the training loss {train_loss:.3f} is at or above ln(vocab) = "
                f"{uniform:.3f}, the loss of a uniform guess: the run has collapsed "
                "(optimizer.lr too large?)"
            )

    def summary(self, run_dir: Path, p: Progress, **facts) -> dict:
        """Write summary.json (rank 0) from metrics.jsonl and the timed steps; ``facts`` are added as they
        are (device facts: micro_seqs, compile, grad_evals_per_step). A rerun of a finished run, which
        times no step, keeps the timing of the summary it finds."""
        summary = dict(
            completed=True,
            status=rundir.STATUS_COMPLETED,
            steps=self.steps,
            tokens=p.tokens,
            grad_evals=p.grad_evals,
            time_s=p.time_s,
        )
        if not self.log.active:
            return summary
        vals = [r["val_loss"] for r in rundir.read_metrics(run_dir) if "val_loss" in r]
        summary["final_val_loss"] = vals[-1] if vals else None
        old, med = rundir.read_summary(run_dir) or {}, self.thr.median_ms
        cuda = self.device.type == "cuda"
        if med is None and old.get("median_step_ms") is not None:
            summary.update({k: old.get(k) for k in TIMING_KEYS})
        else:
            proc_tps = self.thr.median_processed_tok_s(self.tokens_per_step)
            timing = (
                med,
                self.tokens_per_step / (med / 1000) if med else None,
                proc_tps,
                self.thr.mfu(proc_tps) if proc_tps else None,
                torch.cuda.max_memory_allocated(self.device) / 2**30 if cuda else None,
            )
            summary.update(zip(TIMING_KEYS, timing, strict=True))
        summary.update(
            device=torch.cuda.get_device_name(self.device) if cuda else "cpu",
            world_size=self.thr.world,
            **facts,
        )
        rundir.write_summary(run_dir, summary)
        med = summary.get("median_step_ms")
        timing = (
            f"median {med:.1f} ms/step"
            if med is not None
            else f"no median step time (every step was within train.timing_warmup={self.thr.warmup})"
        )
        self.log.print(
            f"done: {self.steps} steps, {p.tokens:,} tokens, {p.grad_evals} gradient evaluations, "
            f"{p.time_s:.1f} s, {timing}, final val_loss {summary['final_val_loss']}"
        )
        return summary

    def diverged(self, run_dir: Path, p: Progress, why: str) -> None:
        """Record in summary.json that the run stopped on a non-finite value (status 'diverged',
        completed false, ``steps``: the last step metrics.jsonl holds), so readers need not search the log."""
        if self.log.active:
            last = rundir.last_record(run_dir)
            rundir.write_summary(
                run_dir,
                dict(
                    completed=False,
                    status=rundir.STATUS_DIVERGED,
                    steps=last["step"] if last else 0,
                    planned_steps=self.steps,
                    tokens=p.tokens,
                    grad_evals=p.grad_evals,
                    time_s=p.time_s,
                    final_val_loss=None,
                    error=why,
                ),
            )




def write_run_header(
    log: RunLog, cfg, world: int, device: torch.device, run_dir: Path, notes: list[str]
) -> None:
    """Open the log (rank 0) and write what identifies the run: git SHA, environment, command,
    config.yaml (atomically) and the pre-flight notes."""
    log.open(cfg)
    log.print(f"git {git_sha()}")
    log.print("env " + json.dumps(environment(world, device)))
    log.print("command " + " ".join(sys.argv))
    if log.active:
        tmp = run_dir / (rundir.CONFIG + ".tmp")
        tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
        tmp.replace(run_dir / rundir.CONFIG)
    for note in notes:
        log.print(note)
