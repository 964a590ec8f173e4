"""Benchmark the optimizer step: time and optimizer-state bytes per rank, as ratios.

For GPT-124M-shaped hidden matrices (the trainer's model: per layer c_q, c_k, c_v, attn c_proj of
768×768, c_fc 3072×768, mlp c_proj 768×3072), every variant's step (plus its reference hand-over for
the two-pass sources; the extra forward/backward is not part of the optimizer and not timed) is
compared with the plain Muon step (``MuonMVR`` with no correction, same code path) and with
``torch.optim.Muon`` (torch ≥ 2.9, single device), measured in the same run on the same parameters.
World sizes > 1 are spawned processes (gloo on CPU, NCCL on CUDA); every rank gets the same number
of CPU threads (``--threads-per-rank``), so the world-size ratio compares equal per-rank compute.

    python scripts/bench_optim.py                      # CPU: gpt124m-l2 preset, world sizes 1,2
    python scripts/bench_optim.py --preset gpt124m     # the full 12 layers (default on CUDA)
    python scripts/bench_optim.py --ns-dtype-probe     # float32 vs bfloat16 Newton–Schulz timing
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from typing import Any

import torch

from harness import rundir
from harness.memory import retain_freed_memory
from optim import newton_schulz

PRESETS = {  # d_model, layers, mlp ratio
    "gpt124m": (768, 12, 4),
    "gpt124m-l2": (768, 2, 4),
    "tiny": (64, 2, 4),
}
# The variants are the trained optimizers: configs/optimizer/<name>.yaml built by train.build_optimizer,
# plus one-pass variants the papers did not run (config name, overrides).
EXTRA_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "gluon_mvr1_prev_step": ("gluon_mvr1", {"reference": "prev_step"}),
}
VARIANTS = [n for n in rundir.optimizer_names() if n != "adamw"] + list(EXTRA_VARIANTS)
TORCH_MUON = "torch.optim.Muon"


def build_variant(name: str, params: list[torch.nn.Parameter], ns_dtype: str) -> Any:
    """The optimizer `train.py` trains with for configs/optimizer/<name>.yaml (on matrices only)."""
    import train

    config, overrides = (name, {}) if name not in EXTRA_VARIANTS else EXTRA_VARIANTS[name]
    oc = {"name": config, **rundir.optimizer_config(config), **overrides}
    if ns_dtype != "default":
        oc["ns_dtype"] = ns_dtype
    holder = torch.nn.Module()
    holder.matrices = torch.nn.ParameterList(params)
    return train.build_optimizer(oc, holder)


def matrix_shapes(preset: str) -> list[tuple[int, int]]:
    d, layers, ratio = PRESETS[preset]
    per_layer = [(d, d)] * 4 + [(ratio * d, d), (d, ratio * d)]
    return per_layer * layers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_rank(rank: int, world: int, cfg: dict[str, Any], store: str, out_dir: str) -> None:
    """Time every variant on this rank; writes ``out_dir/rank{rank}.json``."""
    retain_freed_memory()  # as in training (harness/memory.py; MVR_CPU_HEAP=release turns it off)
    torch.set_num_threads(cfg["threads_per_rank"])
    warnings.simplefilter("ignore", FutureWarning)
    cuda = cfg["device"] == "cuda"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1:
        import torch.distributed as dist

        backend = "nccl" if cuda else "gloo"
        dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world)
    gen = torch.Generator().manual_seed(0)
    shapes = matrix_shapes(cfg["preset"])
    init = [(torch.randn(s, generator=gen) * 0.02).to(device) for s in shapes]
    gen.manual_seed(1 + rank)  # each rank's local gradients differ
    grads = [torch.randn(s, generator=gen).to(device) for s in shapes]
    refs = [torch.randn(s, generator=gen).to(device) for s in shapes]
    names = [n for n in cfg["variants"] if n != TORCH_MUON or (world == 1 and hasattr(torch.optim, "Muon"))]
    runs: dict[str, dict[str, Any]] = {}
    for name in names:
        params = [torch.nn.Parameter(x.clone()) for x in init]
        if name == TORCH_MUON:
            opt: Any = torch.optim.Muon(params, lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.0)
            hand_over = None
        else:
            opt = build_variant(name, params, cfg["ns_dtype"])
            hand_over = {"prev_params": "lookahead", "prev_batch": "last"}.get(opt.reference_source)
        runs[name] = dict(opt=opt, params=params, hand_over=hand_over, times=[], peak_state=0)
    # interleaved rounds: load fluctuations on a shared machine hit every variant alike
    for _ in range(cfg["warmup"] + cfg["steps"]):
        for run in runs.values():
            opt, params, hand_over = run["opt"], run["params"], run["hand_over"]
            sync(device)
            t0 = time.perf_counter()
            if hand_over is not None:
                for p, h in zip(params, refs):
                    p.grad = h
                (opt.update_last_grad if hand_over == "last" else opt.update_lookahead_grad)()
                # the handed-over reference is optimizer state too
                run["peak_state"] = max(run["peak_state"], opt.state_bytes())
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            sync(device)
            run["times"].append(time.perf_counter() - t0)
    results: dict[str, dict[str, float]] = {}
    for name, run in runs.items():
        opt = run["opt"]
        state = opt.state_bytes() if hasattr(opt, "state_bytes") else _state_bytes(opt)
        results[name] = {
            "step_s": statistics.median(run["times"][cfg["warmup"] :]),
            "state_bytes": max(run["peak_state"], state),
        }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def _state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(
        v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v)
    )


def run_world(world: int, cfg: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per variant: step time (max over ranks of the per-rank median) and state bytes of the fullest rank."""
    with tempfile.TemporaryDirectory() as tmp:
        if world == 1:
            bench_rank(0, 1, cfg, "", tmp)
        else:
            import torch.multiprocessing as mp

            mp.spawn(bench_rank, args=(world, cfg, os.path.join(tmp, "store"), tmp), nprocs=world, join=True)
        per_rank = []
        for r in range(world):
            with open(os.path.join(tmp, f"rank{r}.json")) as f:
                per_rank.append(json.load(f))
    return {
        name: {
            "step_s": max(pr[name]["step_s"] for pr in per_rank),
            "state_bytes": max(pr[name]["state_bytes"] for pr in per_rank),
        }
        for name in per_rank[0]
    }


def format_table(results: dict[int, dict[str, dict[str, float]]]) -> str:
    lines = [
        "| variant | ranks | step ms | × muon | × torch.optim.Muon | × 1 rank "
        "| state MiB/rank | state × 1 rank |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    one = results.get(1, {})
    torch_muon = one.get(TORCH_MUON, {}).get("step_s")

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}" if a is not None and b else "–"

    for world, res in sorted(results.items()):
        for name, r in res.items():
            base, muon = one.get(name, {}), res.get("muon", {}).get("step_s")
            lines.append(
                f"| {name} | {world} | {1e3 * r['step_s']:.1f} | {ratio(r['step_s'], muon)}"
                f" | {ratio(r['step_s'], torch_muon)} | {ratio(r['step_s'], base.get('step_s'))}"
                f" | {r['state_bytes'] / 2**20:.2f} | {ratio(r['state_bytes'], base.get('state_bytes'))} |"
            )
    return "\n".join(lines)


def ns_dtype_probe(device: torch.device, threads: int) -> str:
    torch.set_num_threads(threads)
    X = torch.randn(4, 768, 3072, device=device)
    out = []
    for dtype in (torch.float32, torch.bfloat16):
        newton_schulz(X, dtype=dtype)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(2):
            newton_schulz(X, dtype=dtype)
        sync(device)
        out.append((dtype, (time.perf_counter() - t0) / 2))
    return (
        "Newton–Schulz (4×768×3072, 5 steps): "
        + ", ".join(f"{str(d).replace('torch.', '')} {1e3 * s:.0f} ms" for d, s in out)
        + f"; bf16 speed-up {out[0][1] / out[1][1]:.2f}×"
    )


def main(argv: list[str] | None = None) -> dict[int, dict[str, dict[str, float]]]:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpt124m" if cuda else "gpt124m-l2")
    parser.add_argument("--world-size", default="1,2", help="comma-separated world sizes, e.g. 1,2")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--threads-per-rank",
        type=int,
        default=None,
        help="CPU threads per rank (default: cores // largest world size)",
    )
    parser.add_argument("--ns-dtype", choices=["default", "float32", "bfloat16"], default="default")
    parser.add_argument(
        "--variants",
        default=",".join([*VARIANTS, TORCH_MUON]),
        help="comma-separated subset of: " + ", ".join([*VARIANTS, TORCH_MUON]),
    )
    parser.add_argument("--ns-dtype-probe", action="store_true", help="also time float32 vs bf16 NS")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    device = "cuda" if (args.device == "auto" and cuda) else ("cpu" if args.device == "auto" else args.device)
    worlds = [int(w) for w in args.world_size.split(",")]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - {*VARIANTS, TORCH_MUON}
    if unknown:
        parser.error(f"unknown variants: {sorted(unknown)}")
    threads = args.threads_per_rank or max(1, (os.cpu_count() or 1) // max(worlds))
    cfg = dict(
        preset=args.preset,
        device=device,
        steps=args.steps,
        warmup=args.warmup,
        threads_per_rank=threads,
        ns_dtype=args.ns_dtype,
        variants=variants,
    )
    n = len(matrix_shapes(args.preset))
    print(
        f"# bench_optim: preset {args.preset} ({n} matrices), device {device}, torch {torch.__version__}, "
        f"{threads} thread(s)/rank, ns_dtype {args.ns_dtype}, median of {args.steps} step(s)"
    )
    if args.ns_dtype_probe:
        print(ns_dtype_probe(torch.device(device), threads))
    results = {}
    for world in worlds:
        if device == "cuda" and world > torch.cuda.device_count():
            print(f"(skipping world size {world}: only {torch.cuda.device_count()} GPU(s))")
            continue
        results[world] = run_world(world, cfg)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(k): v for k, v in results.items()}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
