"""Every estimator × reference source × geometry against the literal float64 oracle (optim/oracle.py)."""

from __future__ import annotations

import zlib

import pytest
import torch
from helpers import optim_workers as W

from optim.oracle import oracle_run  # noqa: E402

STEPS = 4
CASES = [("muon_mvr", name) for name in W.MUON_CONFIGS] + [("gluon", name) for name in W.GLUON_CONFIGS]


@pytest.mark.parametrize("mode", list(W.MODES))
@pytest.mark.parametrize("kind,name", CASES)
def test_matches_float64_oracle(kind: str, name: str, mode: str) -> None:
    config = (W.MUON_CONFIGS if kind == "muon_mvr" else W.GLUON_CONFIGS)[name]
    case = W.make_case(STEPS, seed=zlib.crc32(f"{kind}/{name}/{mode}".encode()) % 2**31)  # reproducible
    params = W.leaf_params(case["X0"], torch.float64)
    opt = W.build(kind, params, config, mode)
    got = W.drive(opt, params, case, mode)

    lmos = W.MUON_LMOS if kind == "muon_mvr" else W.GLUON_LMOS
    grads = [
        [None if (t == 1 and i == W.SOMETIMES_NONE) else g for i, g in enumerate(gs)]
        for t, gs in enumerate(case["grads"])
    ]
    refs = W.oracle_refs({**case, "grads": grads}, mode)
    want = oracle_run(kind, case["X0"], lmos, grads, refs, W.oracle_hparams(kind, config), W.ADAMW)
    for t in range(STEPS):
        for i, (a, b) in enumerate(zip(got[t], want[t])):
            assert torch.allclose(a, b, rtol=1e-8, atol=1e-8), (t + 1, i, (a - b).abs().max().item())
    # the parameters moved (no geometry is silently skipped), except the one that never had a grad
    # under a pure-LMO step (Gluon spectral with zero gradient and zero momentum leaves it in place)
    moved = [not torch.equal(p, x) for p, x in zip(got[-1], case["X0"])]
    assert all(m for i, m in enumerate(moved) if i != W.NEVER_GRAD)


def test_reference_source_and_grad_evals() -> None:
    p = [torch.nn.Parameter(torch.randn(4, 3))]
    from optim import GluonMVR, MuonMVR

    assert MuonMVR(p).reference_source == "prev_step"
    assert MuonMVR(p).grad_evals_per_step == 1
    assert MuonMVR(p, is_approx=False).reference_source == "prev_params"
    assert MuonMVR(p, is_approx=False).grad_evals_per_step == 2
    assert MuonMVR(p, reference="prev_batch").grad_evals_per_step == 2
    assert MuonMVR(p, reference="none").reference_source == "none"
    assert MuonMVR(p, gamma=0.0, is_approx=False, clip=False).grad_evals_per_step == 1
    assert GluonMVR(p).reference_source == "prev_params"
    assert GluonMVR(p, variant="gluon").reference_source == "none"
    assert GluonMVR(p, variant="gluon", reference="prev_batch").grad_evals_per_step == 1
    assert GluonMVR(p, variant="mvr1", reference="prev_step").grad_evals_per_step == 1


def test_mars_clip_of_parts_with_the_whole_norm_equals_the_whole_float64() -> None:
    """``mars_correction(..., norm=‖c_t‖_F)`` on rows of a tensor (what an FSDP2 rank or an elementwise slice
    holds) equals those rows of the whole tensor's ``c_t / max(1, ‖c_t‖_F)``, the equation written out."""
    from optim.estimators import mars_correction

    gen = torch.Generator().manual_seed(3)
    g, h = (torch.randn(7, 5, generator=gen, dtype=torch.float64) for _ in range(2))
    gamma, beta = 0.1, 0.9
    c = g + gamma * beta / (1 - beta) * (g - h)
    want = c / max(1.0, c.norm().item())
    assert c.norm().item() > 1.0  # the clip acts
    whole = mars_correction(g, h, gamma, beta, clip=True)
    torch.testing.assert_close(whole, want, rtol=1e-14, atol=0)
    norm = mars_correction(g, h, gamma, beta, clip=False).norm()
    rows = (slice(0, 4), slice(4, 7))
    parts = [mars_correction(g[r], h[r], gamma, beta, clip=True, norm=norm) for r in rows]
    torch.testing.assert_close(torch.cat(parts), want, rtol=1e-14, atol=0)
