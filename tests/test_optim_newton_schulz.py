"""Newton–Schulz: singular-value band, batched == one-by-one, transposes, dtypes, oracle."""

from __future__ import annotations

import pytest
import torch

from optim import default_ns_dtype, newton_schulz
from optim.oracle import ns_literal


def conditioned(shape: tuple[int, int], cond: float, seed: int) -> torch.Tensor:
    """A random matrix with singular values log-spaced in [1/cond, 1] (times a random scale)."""
    gen = torch.Generator().manual_seed(seed)
    m, n = shape
    k = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))
    S = torch.logspace(0, -torch.log10(torch.tensor(cond)).item(), k, dtype=torch.float64)
    return 37.0 * U @ torch.diag(S) @ V.T


@pytest.mark.parametrize(
    "dtype,band", [(torch.float64, (0.67, 1.14)), (torch.float32, (0.67, 1.14)), (torch.bfloat16, (0.6, 1.2))]
)
@pytest.mark.parametrize("shape", [(48, 16), (16, 48), (24, 24), (30, 20)])
def test_singular_values_in_band(
    shape: tuple[int, int], dtype: torch.dtype, band: tuple[float, float]
) -> None:
    G = conditioned(shape, cond=100.0, seed=sum(shape))
    s = torch.linalg.svdvals(newton_schulz(G, dtype=dtype).double())
    assert band[0] <= s.min() and s.max() <= band[1], (s.min().item(), s.max().item())


def test_matches_literal_float64() -> None:
    for shape in [(7, 3), (3, 7), (5, 5)]:
        G = torch.randn(shape, dtype=torch.float64)
        assert torch.allclose(newton_schulz(G, dtype=torch.float64), ns_literal(G), atol=1e-12)


@pytest.mark.parametrize(
    "dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-5), (torch.bfloat16, 2e-2)]
)
@pytest.mark.parametrize("shape", [(12, 5), (5, 12)])
def test_batched_equals_one_by_one(shape: tuple[int, int], dtype: torch.dtype, atol: float) -> None:
    G = torch.randn((6, *shape), dtype=torch.float32)
    batched = newton_schulz(G, dtype=dtype)
    single = torch.stack([newton_schulz(g, dtype=dtype) for g in G])
    assert batched.shape == G.shape and batched.dtype == G.dtype
    assert torch.allclose(batched, single, atol=atol)
    # extra leading dims are flattened and restored
    assert torch.allclose(
        newton_schulz(G.reshape(2, 3, *shape), dtype=dtype).reshape(G.shape), batched, atol=atol
    )


def test_transpose_equivariance_and_scale_invariance() -> None:
    """Scale invariance holds up to the normalisation's eps (X / (‖X‖_F + 1e-7)): relative 1e-7 / ‖G‖_F,
    which five iterations amplify to ~1e-8 absolute, above allclose's default atol on entries near 0."""
    G = torch.randn(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(newton_schulz(G.T, dtype=torch.float64), newton_schulz(G, dtype=torch.float64).T)
    scaled, plain = newton_schulz(1000 * G, dtype=torch.float64), newton_schulz(G, dtype=torch.float64)
    assert torch.allclose(scaled, plain, atol=1e-6)


def test_default_dtype_and_errors() -> None:
    assert default_ns_dtype("cpu") in (torch.bfloat16, torch.float32)
    assert default_ns_dtype("cuda") == torch.bfloat16
    with pytest.raises(ValueError, match="matrix"):
        newton_schulz(torch.randn(5))
