"""Newton–Schulz orthogonalization (``optim/README.md`` §4), batched over leading dimensions."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

#: Quintic coefficients (a, b, c) of Keller Jordan's Muon.
NS_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5  # iterations (Keller Jordan's Muon)
NS_EPS = 1e-7


@functools.cache
def _cpu_has_fast_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


def default_ns_dtype(device: torch.device | str) -> torch.dtype:
    """Compute dtype used when ``ns_dtype=None``.

    CUDA: bfloat16 (as in every Muon codebase). CPU: bfloat16 when oneDNN has native bf16 kernels
    (AVX512-BF16 / AMX), else float32. Measured on the project's 2-core AVX512-BF16 EPYC: a
    (6, 768, 3072) batched Newton–Schulz matmul chain runs 5.3x faster in bf16 than in float32
    (``scripts/bench_optim.py --ns-dtype-probe`` repeats the measurement), which is why bf16 is
    the default there; on CPUs without bf16 units the conversion makes bf16 slower, so float32.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return torch.bfloat16 if _cpu_has_fast_bf16() else torch.float32
    return torch.bfloat16


def newton_schulz(
    G: Tensor,
    steps: int = NS_STEPS,
    dtype: torch.dtype | None = None,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = NS_EPS,
) -> Tensor:
    """Approximate orthogonalization NS(G) ≈ U Vᵀ of a matrix or a batch of same-shape matrices.

    Quintic iteration with (a, b, c) = (3.4445, −4.7750, 2.0315), ``steps`` = 5 by default:
    transpose if A > B, ``X ← X / (‖X‖_F + 1e-7)``, then ``A = X Xᵀ; B = bA + cA²; X = aX + BX``.

    ``G`` has shape (..., A, B); the Frobenius norm is taken per matrix, so a batch of matrices is
    orthogonalized in one call and equals the matrices orthogonalized one by one. The iteration runs
    in ``dtype`` (None: :func:`default_ns_dtype`); the result is returned in ``G.dtype``. Singular
    values of the output lie roughly in [0.68, 1.13] (not exactly 1: the coefficients trade accuracy
    for speed).
    """
    if G.ndim < 2:
        raise ValueError(f"newton_schulz needs a matrix or a batch of matrices, got shape {tuple(G.shape)}")
    if steps < 0:
        raise ValueError(f"Invalid steps: {steps} (must be >= 0)")
    a, b, c = coefficients
    dtype = default_ns_dtype(G.device) if dtype is None else dtype
    rows, cols = G.shape[-2], G.shape[-1]
    X = G.reshape(-1, rows, cols).to(dtype)
    transposed = rows > cols
    if transposed:
        X = X.mT
    X = X / (torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True) + eps)
    for _ in range(steps):
        A = torch.bmm(X, X.mT)
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)  # B = bA + cA²
        X = torch.baddbmm(X, B, X, beta=a)  # X = aX + BX
    if transposed:
        X = X.mT
    return X.reshape(G.shape).to(G.dtype)
