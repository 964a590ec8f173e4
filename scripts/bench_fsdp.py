"""Replicated vs fsdp2: per-rank bytes of parameters, gradients and optimizer state, and step() time.

Spawns W gloo ranks on the CPU. Every model is the trainer's GPT laid out twice as the trainer does
(harness/sharding.py `lay_out`): ``replicated`` (plain tensors; the optimizer reduce-scatters gradients
to owners and all-gathers the updated parameters) and ``fsdp2`` (``fully_shard`` per block and on the
root; Shard(0) DTensors), each with the trainer's optimizer (configs/optimizer/<name>.yaml built by
train.build_optimizer; ns_dtype its default). Gradients are random from one seed on every rank, so both
modes step on the same averaged gradient: replicated ranks get the whole tensor in ``.grad``, fsdp2
ranks their rows of it as a DTensor, as FSDP2's backward leaves them (no forward or backward is run;
only the optimizer, with a two-pass optimizer's reference hand-over, is timed). The modes step in
alternating rounds (load on a shared machine hits both alike); every rank times every step after a
barrier; the table shows the slowest rank's median. Bytes are those of the rank holding the most:
local numel × element size of the parameters and of their ``.grad``, and ``opt.state_bytes()`` (its
peak over the steps). Activations and collective buffers are not counted.

    python scripts/bench_fsdp.py                              # small and gpt124m, 2 ranks, muon_mvr1
    python scripts/bench_fsdp.py --models gpt124m --vocab 8192 --steps 5 --json fsdp.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, from a plain checkout too

import torch  # noqa: E402

MODELS = ("small", "gpt124m")  # configs/model/<name>.yaml (any GPT preset there works)
OPTIMIZERS = ("muon_mvr1", "gluon_mvr1", "muon")  # configs/optimizer/<name>.yaml
MODES = ("replicated", "fsdp2")
MIB = 2**20


def compose(model: str, optimizer: str, vocab: int | None) -> Any:
    """The training config of ``model=<model> optimizer=<optimizer>`` (harness/config.py)."""
    from harness.config import compose_config

    overrides = [f"model={model}", f"optimizer={optimizer}"]
    return compose_config(overrides + ([f"model.vocab_size={vocab}"] if vocab else []))


def local_bytes(tensors: list[torch.Tensor]) -> int:
    from optim.dtensor import local_part

    return sum(local_part(t).numel() * t.element_size() for t in tensors)


def random_grads(model: torch.nn.Module, seed: int) -> list[torch.Tensor]:
    """Per parameter, this rank's part of one random gradient that every rank draws alike."""
    from optim.dtensor import is_dtensor, placed_like, rows_here

    gen = torch.Generator().manual_seed(seed)
    out = []
    for p in model.parameters():
        g = torch.randn(p.shape, generator=gen)
        if is_dtensor(p):  # this rank's rows, as FSDP2's backward leaves them
            lo, hi = rows_here(p)
            g = placed_like(g[lo:hi].clone(), p)
        out.append(g)
    return out


def bench_rank(rank: int, world: int, args: argparse.Namespace, cfgs: dict, store: str, out: str) -> None:
    """Writes ``out/rank{rank}.json``: model -> mode -> bytes and step times of this rank."""
    import torch.distributed as dist

    import train
    from harness.config import Sharding
    from harness.sharding import lay_out

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for name, cfg in cfgs.items():
            runs = {}
            for mode in MODES:
                torch.manual_seed(cfg.seed)
                model = lay_out(train.build_model(cfg), Sharding(mode), world, torch.device("cpu"), False)
                opt = train.build_optimizer(cfg.optimizer, model)
                hand_over = {"prev_params": opt.update_lookahead_grad, "prev_batch": opt.update_last_grad}
                runs[mode] = dict(model=model, opt=opt, grads=random_grads(model, 1),
                                  hand_over=hand_over.get(opt.reference_source), times=[], state=0)
            for step in range(args.warmup + args.steps):
                for run in runs.values():
                    params = list(run["model"].parameters())
                    dist.barrier()
                    t0 = time.perf_counter()
                    if run["hand_over"] is not None:  # the two-pass reference is handed over each step
                        for p, g in zip(params, run["grads"]):
                            p.grad = g
                        run["hand_over"]()
                        run["state"] = max(run["state"], run["opt"].state_bytes())
                    for p, g in zip(params, run["grads"]):
                        p.grad = g
                    run["opt"].step()
                    dt = time.perf_counter() - t0
                    if step >= args.warmup:
                        run["times"].append(dt)
                    run["state"] = max(run["state"], run["opt"].state_bytes())
            results[name] = {}
            for mode, run in runs.items():
                params = list(run["model"].parameters())
                results[name][mode] = dict(
                    params_bytes=local_bytes(params), grads_bytes=local_bytes([p.grad for p in params]),
                    state_bytes=run["state"], step_s=statistics.median(run["times"]))
            del runs
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


def combine(per_rank: list[dict]) -> dict[str, dict[str, Any]]:
    """Per model and mode: the bytes of the rank holding the most, the slowest rank's median step; the
    fsdp2/replicated ratios."""
    out: dict[str, dict[str, Any]] = {}
    for name in per_rank[0]:
        out[name] = {}
        for mode in MODES:
            rows = [r[name][mode] for r in per_rank]
            for r in rows:
                r["total_bytes"] = r["params_bytes"] + r["grads_bytes"] + r["state_bytes"]
            row = {k: v for k, v in max(rows, key=lambda r: r["total_bytes"]).items() if k != "step_s"}
            row["step_ms"] = 1e3 * max(r["step_s"] for r in rows)
            out[name][mode] = row
        rep, fsdp = out[name]["replicated"], out[name]["fsdp2"]
        out[name]["ratio_total_bytes"] = fsdp["total_bytes"] / rep["total_bytes"]
        out[name]["ratio_step_time"] = fsdp["step_ms"] / rep["step_ms"]
    return out


def format_table(res: dict[str, dict[str, Any]]) -> str:
    lines = ["| model | mode | params MiB | grads MiB | state MiB | total MiB | step ms (median) "
             "| total × replicated | step × replicated |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in res.items():
        for mode in MODES:
            m = r[mode]
            fsdp = mode == "fsdp2"
            tot = f"{r['ratio_total_bytes']:.3f}" if fsdp else "1"
            step = f"{r['ratio_step_time']:.2f}" if fsdp else "1"
            mib = " | ".join(f"{m[k] / MIB:.2f}" for k in ("params_bytes", "grads_bytes", "state_bytes",
                                                            "total_bytes"))
            lines.append(f"| {name} | {mode} | {mib} | {m['step_ms']:.1f} | {tot} | {step} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated configs/model names")
    ap.add_argument("--optimizer", choices=OPTIMIZERS, default="muon_mvr1")
    ap.add_argument("--world", type=int, default=2, help="gloo ranks (>= 2)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per mode (median)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=None, help="model.vocab_size (default: the preset's)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.world < 2:
        ap.error(f"--world {args.world}: the comparison needs 2 or more ranks")
    if args.steps < 1 or args.warmup < 0:
        ap.error(f"--steps {args.steps} --warmup {args.warmup}: need steps >= 1 and warmup >= 0")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    model_dir = Path(__file__).resolve().parents[1] / "configs" / "model"
    unknown = [m for m in models if not (model_dir / f"{m}.yaml").is_file()]
    if unknown:
        ap.error(f"--models: no configs/model/<name>.yaml for {unknown}; choose from "
                 f"{sorted(p.stem for p in model_dir.glob('*.yaml'))}")
    cfgs = {m: compose(m, args.optimizer, args.vocab) for m in models}

    import torch.multiprocessing as mp

    print(f"# bench_fsdp: {args.world} gloo ranks, optimizer {args.optimizer}, torch {torch.__version__}, "
          f"{max(1, (os.cpu_count() or 1) // args.world)} thread(s)/rank, median of {args.steps} step(s) "
          f"after {args.warmup} warm-up; bytes of the fullest rank, time of the slowest")
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(bench_rank, args=(args.world, args, cfgs, os.path.join(tmp, "store"), tmp),
                 nprocs=args.world, join=True)
        per_rank = []
        for r in range(args.world):
            with open(os.path.join(tmp, f"rank{r}.json")) as f:
                per_rank.append(json.load(f))
    res = combine(per_rank)
    print(format_table(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"world": args.world, "optimizer": args.optimizer, "steps": args.steps,
                       "warmup": args.warmup, "vocab": args.vocab, "models": res}, f, indent=1)
    return res


if __name__ == "__main__":
    main()
