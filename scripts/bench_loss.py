"""Benchmark the LM-head loss: chunked linear cross-entropy vs the plain (B, T, V) float32 logits path.

Both run forward + backward of the mean token loss of z = h Wᵀ for the same hidden states h (N × d) and
head weight W (V × d) (bf16 autocast on CUDA, as the trainer; float32 on CPU), interleaved repeat by
repeat; the table gives medians and the chunked/plain ratios. Peak memory is measured on CUDA
(torch.cuda.max_memory_allocated above what the inputs hold); on CPU only time is measured (tracemalloc
does not see torch's allocations), and the table gives the float32 logits bytes held at once: N x V x 4
for the plain path, chunk x V x 4 for the chunked one.

    python scripts/bench_loss.py                                   # CUDA: the fig1 micro-batch, 64 x 1024
    python scripts/bench_loss.py --device cpu                      # N 2048, V 8192, d 256, chunk 512
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

from losses import chunked_linear_cross_entropy


def plain_loss(h: torch.Tensor, W: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    return F.cross_entropy(F.linear(h, W).float(), y)  # GPT.forward's "plain" path


def chunked_loss(h: torch.Tensor, W: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    return chunked_linear_cross_entropy(h, W, y, chunk)


IMPLS = {"plain": plain_loss, "chunked": chunked_loss}


def run_once(fn, h, W, y, chunk, autocast, device: str) -> tuple[float, int]:
    """Seconds and peak bytes (CUDA; 0 on CPU) above the resident inputs for one forward + backward."""
    h.grad = W.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with autocast:
        loss = fn(h, W, y, chunk)
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() - base if device == "cuda" else 0
    return seconds, peak


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--tokens", type=int, default=None,
                        help="N = B x T tokens (default: 64 x 1024 on CUDA, 2048 on CPU)")
    parser.add_argument("--vocab", type=int, default=None, help="V (default: 50304 on CUDA, 8192 on CPU)")
    parser.add_argument("--d", type=int, default=None, help="d_model (default: 768 on CUDA, 256 on CPU)")
    parser.add_argument("--chunk", type=int, default=None,
                        help="tokens per chunk, model.loss_chunk (default: 8192 on CUDA, 512 on CPU)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's; use 1 on a shared, loaded machine)")
    args = parser.parse_args(argv)

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available")
    cuda = device == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    N = args.tokens or (64 * 1024 if cuda else 2048)
    V = args.vocab or (50304 if cuda else 8192)
    d = args.d or (768 if cuda else 256)
    chunk = args.chunk or (8192 if cuda else 512)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()

    gen = torch.Generator(device=device).manual_seed(0)
    h = torch.randn(N, d, device=device, generator=gen).requires_grad_()
    W = (0.02 * torch.randn(V, d, device=device, generator=gen)).requires_grad_()
    y = torch.randint(0, V, (N,), device=device, generator=gen)

    times: dict[str, list[float]] = {k: [] for k in IMPLS}
    peaks: dict[str, list[int]] = {k: [] for k in IMPLS}
    for r in range(args.warmup + args.repeats):
        order = list(IMPLS) if r % 2 == 0 else list(reversed(IMPLS))  # interleaved, alternating first
        for name in order:
            s, p = run_once(IMPLS[name], h, W, y, chunk, autocast, device)
            if r >= args.warmup:
                times[name].append(s)
                peaks[name].append(p)

    analytic = {"plain": N * V * 4, "chunked": min(chunk, N) * V * 4}  # float32 logits at once
    out: dict[str, dict[str, float]] = {}
    print(f"loss forward+backward on {device}: N={N} tokens, d={d}, V={V}, chunk={chunk}, "
          f"{'bf16 autocast' if cuda else 'float32'}, median of {args.repeats}, "
          f"{torch.get_num_threads()} CPU threads")
    print("| impl | ms | peak MiB | float32 logits MiB (analytic) |")
    print("|---|---:|---:|---:|")
    for name in IMPLS:
        ms = 1e3 * statistics.median(times[name])
        peak = max(peaks[name]) / 2**20 if cuda else float("nan")
        out[name] = {"ms": ms, "peak_mib": peak, "analytic_mib": analytic[name] / 2**20}
        peak_s = f"{peak:.0f}" if cuda else "n/a"
        print(f"| {name} | {ms:.2f} | {peak_s} | {analytic[name] / 2**20:.1f} |")
    ratio_t = out["chunked"]["ms"] / out["plain"]["ms"]
    ratio_a = analytic["chunked"] / analytic["plain"]
    line = f"chunked / plain: time {ratio_t:.2f}x, float32 logits bytes {ratio_a:.3f}x"
    if cuda:
        line += f", peak memory {out['chunked']['peak_mib'] / out['plain']['peak_mib']:.3f}x"
    print(line)
    out["ratio"] = {"time": ratio_t, "analytic_bytes": ratio_a}
    if cuda:
        out["ratio"]["peak"] = out["chunked"]["peak_mib"] / out["plain"]["peak_mib"]
    return out


if __name__ == "__main__":
    main()
