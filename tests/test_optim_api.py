"""Trainer-facing API: routing, coverage, validation, schedules, hand-over semantics, state_dict."""

from __future__ import annotations

import io

import pytest
import torch
from helpers import optim_workers as W
from torch import nn

from optim import GluonMVR, MuonMVR, build_param_groups, check_coverage  # noqa: E402


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(11, 6)
        self.wpe = nn.Embedding(5, 6)
        self.fc = nn.Linear(6, 8)
        self.proj = nn.Linear(8, 6, bias=False)
        self.ln = nn.LayerNorm(6)
        self.lm_head = nn.Linear(6, 11, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        self.frozen = nn.Parameter(torch.zeros(3, 3), requires_grad=False)


def test_build_param_groups_routes_and_dedupes_tied_weights() -> None:
    m = TiedLM()
    for family, embed_lmo in (("gluon", "sign"), ("muon", "adamw")):
        groups = {g["name"]: g for g in build_param_groups(m, family)}
        assert groups["hidden"]["lmo"] == "spectral"
        assert {id(p) for p in groups["hidden"]["params"]} == {id(m.fc.weight), id(m.proj.weight)}
        assert groups["embed"]["lmo"] == embed_lmo
        assert [id(p) for p in groups["embed"]["params"]] == [id(m.wte.weight), id(m.wpe.weight)]
        assert {id(p) for p in groups["vector"]["params"]} == {id(m.fc.bias), id(m.ln.weight), id(m.ln.bias)}
    opt = GluonMVR(build_param_groups(m, "gluon"))
    check_coverage(m, opt)
    untied = nn.Module()
    untied.lm_head = nn.Linear(4, 9, bias=False)
    untied.fc = nn.Linear(4, 4, bias=False)
    groups = {g["name"]: g for g in build_param_groups(untied, "gluon")}
    assert groups["head"]["params"] == [untied.lm_head.weight] and groups["head"]["lmo"] == "sign"
    assert "embed" not in groups  # no embedding: the group is dropped
    with pytest.raises(ValueError, match="routing"):
        build_param_groups(m, "adam")


def test_coverage_errors() -> None:
    m = TiedLM()
    with pytest.raises(ValueError, match=r"missing: \['fc.bias'"):
        check_coverage(m, [{"params": [p for n, p in m.named_parameters() if n != "fc.bias"]}])
    with pytest.raises(ValueError, match="more than once"):
        check_coverage(m, [{"params": list(m.parameters())}, {"params": [m.fc.weight]}])
    with pytest.raises(ValueError, match="more than once"):
        MuonMVR([{"params": [m.fc.weight]}, {"params": [m.fc.weight]}])
    with pytest.raises(ValueError, match="more than once"):
        MuonMVR([m.fc.weight, m.fc.weight])


def test_default_routing_splits_groups_and_sets_initial_lr() -> None:
    m = TiedLM()
    opt = MuonMVR(m.parameters(), lr=0.01, adamw_lr=0.002, adamw_weight_decay=0.1, weight_decay=0.05)
    lmos = [(g["lmo"], g["lr"], g["initial_lr"], g["weight_decay"]) for g in opt.param_groups]
    assert lmos == [("spectral", 0.01, 0.01, 0.05), ("adamw", 0.002, 0.002, 0.1)]
    g = GluonMVR(
        [{"params": [m.fc.weight], "lmo": "sign", "lr": 0.5}, {"params": [m.ln.weight], "lmo": "adamw"}]
    )
    assert [(x["lmo"], x["lr"], x["initial_lr"]) for x in g.param_groups] == [
        ("sign", 0.5, 0.5),
        ("adamw", 3.6e-4, 3.6e-4),
    ]


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(lr=-1.0), "lr"),
        (dict(momentum=1.0), "momentum"),
        (dict(gamma=-0.1), "gamma"),
        (dict(weight_decay=-1.0), "weight_decay"),
        (dict(scale="keller"), "scale"),
        (dict(reference="prev"), "reference"),
        (dict(ns_steps=0), "ns_steps"),
        (dict(ns_dtype=torch.int32), "ns_dtype"),
        (dict(adamw_betas=(0.9, 1.5)), "adamw_betas"),
        (dict(adamw_eps=0.0), "adamw_eps"),
        (dict(adamw_lr=-3.0), "adamw_lr"),
        (dict(clip="yes"), "clip"),
        (dict(nesterov=1), "nesterov"),
        (dict(is_approx=None), "is_approx"),
        (dict(lr=float("nan")), "lr"),
    ],
)
def test_muon_validation(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"Invalid {name}\b"):
        MuonMVR([nn.Parameter(torch.randn(3, 3))], **kwargs)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(variant="mvr4"), "variant"),
        (dict(beta=-0.1), "beta"),
        (dict(q=0.0), "q"),
        (dict(q=1.5), "q"),
        (dict(alpha=-1.0), "alpha"),
        (dict(hidden_scale=0.0), "hidden_scale"),
        (dict(embed_scale=-1.0), "embed_scale"),
        (dict(reference="exact"), "reference"),
        (dict(adamw_weight_decay=-1.0), "adamw_weight_decay"),
    ],
)
def test_gluon_validation(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"Invalid {name}\b"):
        GluonMVR([nn.Parameter(torch.randn(3, 3))], **kwargs)


def test_group_level_validation() -> None:
    p, v = nn.Parameter(torch.randn(3, 3)), nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match="Invalid lmo"):
        MuonMVR([{"params": [p], "lmo": "sign"}])  # sign is a Gluon geometry
    with pytest.raises(ValueError, match="Invalid lmo"):
        GluonMVR([{"params": [v], "lmo": "spectral"}])
    with pytest.raises(ValueError, match=r"Invalid momentum \(param group\)"):
        MuonMVR([{"params": [p], "momentum": 2.0}])
    with pytest.raises(ValueError, match="Invalid weight_decay"):
        GluonMVR([{"params": [p], "lmo": "spectral", "weight_decay": 0.1}])
    with pytest.raises(ValueError, match="Invalid reference"):
        MuonMVR([{"params": [p], "reference": "prev_batch"}, {"params": [nn.Parameter(torch.randn(2, 2))]}])
    with pytest.raises(ValueError, match="Invalid params"):
        MuonMVR([])


def test_hyperparameters_are_read_every_step() -> None:
    """The trainer's LR schedule sets group['lr'] each step; lr = 0 must freeze the parameters."""
    p = nn.Parameter(torch.randn(4, 3))
    opt = MuonMVR([p], ns_dtype=torch.float32)
    before = p.detach().clone()
    for group in opt.param_groups:
        group["lr"] = group["initial_lr"] * 0.0
    p.grad = torch.randn(4, 3)
    opt.step()
    assert torch.equal(p, before)
    opt.param_groups[0]["lr"] = opt.param_groups[0]["initial_lr"]
    opt.step()
    assert not torch.equal(p, before)


def test_hand_over_copies_never_aliases() -> None:
    """update_last_grad stores a copy: zeroing .grad in place afterwards must not erase h (MARS bug)."""
    p = nn.Parameter(torch.randn(4, 3))
    opt = MuonMVR([p], reference="prev_batch", ns_dtype=torch.float64)
    p.grad = torch.ones(4, 3)
    opt.update_last_grad()
    p.grad.zero_()
    assert torch.equal(opt.state[p]["h"], torch.ones(4, 3))
    assert opt.state[p]["h"].data_ptr() != p.grad.data_ptr()


def test_one_pass_sources_ignore_hand_over_and_missing_reference_warns() -> None:
    p = nn.Parameter(torch.randn(4, 3))
    opt = MuonMVR([p], is_approx=True)  # the MuonMVR paper: update_last_grad is a no-op in approximate mode
    p.grad = torch.ones(4, 3)
    opt.update_last_grad()
    assert "h" not in opt.state[p]
    opt2 = MuonMVR([p], is_approx=False)
    p.grad = torch.randn(4, 3)
    opt2.step()  # t = 1: no reference is fine
    with pytest.warns(RuntimeWarning, match="no reference gradient"):
        opt2.step()


@pytest.mark.parametrize("mode", ["lookahead_prev_params", "last_prev_batch", "prev_step"])
@pytest.mark.parametrize("kind,name", [("muon_mvr", "mars_clip_moonlight"), ("gluon", "mvr3")])
def test_state_dict_round_trip(kind: str, name: str, mode: str) -> None:
    config = (W.MUON_CONFIGS if kind == "muon_mvr" else W.GLUON_CONFIGS)[name]
    case = W.make_case(5, seed=3)
    params = W.leaf_params(case["X0"], torch.float64)
    opt = W.build(kind, params, config, mode)
    full = W.drive(opt, params, case, mode)

    params2 = W.leaf_params(case["X0"], torch.float64)
    opt2 = W.build(kind, params2, config, mode)
    W.drive(opt2, params2, case, mode, stop=2)
    buf = io.BytesIO()
    torch.save(opt2.state_dict(), buf)
    params3 = W.leaf_params([p.detach() for p in params2], torch.float64)
    opt3 = W.build(kind, params3, config, mode)
    buf.seek(0)
    opt3.load_state_dict(torch.load(buf, weights_only=False))
    resumed = W.drive(opt3, params3, case, mode, start=2)
    for a, b in zip(resumed[-1], full[-1]):
        assert torch.equal(a, b)


def test_state_dict_world_size_mismatch_is_a_clear_error() -> None:
    p = nn.Parameter(torch.randn(4, 3))
    opt = MuonMVR([p])
    p.grad = torch.randn(4, 3)
    opt.step()
    sd = opt.state_dict()
    assert sd["sharding"] == {"world_size": 1, "rank": 0}
    sd["sharding"] = {"world_size": 2, "rank": 0}
    with pytest.raises(ValueError, match="world size 2"):
        MuonMVR([p]).load_state_dict(sd)


def test_frozen_and_grad_none_params() -> None:
    """Frozen parameters are never touched; a grad-None parameter counts as a zero gradient."""
    a, b = nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(5), requires_grad=False)
    c = nn.Parameter(torch.randn(3, 3))
    opt = GluonMVR([a, b, c], variant="gluon")
    b0, c0 = b.detach().clone(), c.detach().clone()
    a.grad = torch.randn(4, 3)
    opt.step()
    assert torch.equal(b, b0) and torch.equal(c, c0)  # zero grad, zero momentum → the LMO step is 0


def test_no_gradients_warns() -> None:
    p = nn.Parameter(torch.randn(4, 3))
    opt = MuonMVR([p])
    with pytest.warns(RuntimeWarning, match="no parameter has a .grad"):
        opt.step()


def test_closure_and_double_precision_default_dtype() -> None:
    p = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    opt = GluonMVR([p], variant="mvr1", reference="prev_step")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() > 0 and p.dtype == torch.float64


@pytest.mark.gpu
@pytest.mark.parametrize(
    "kind,name,mode",
    [("muon_mvr", "mars_clip_moonlight", "lookahead_prev_params"), ("gluon", "mvr3", "last_prev_batch")],
)
def test_cuda_bf16_newton_schulz_close_to_float64_oracle(kind: str, name: str, mode: str) -> None:
    from optim.oracle import oracle_run

    config = (W.MUON_CONFIGS if kind == "muon_mvr" else W.GLUON_CONFIGS)[name]
    case = W.make_case(3, seed=5)
    params = [torch.nn.Parameter(x.float().cuda()) for x in case["X0"]]
    opt = W.build(kind, params, config, mode, ns_dtype=None)  # None → bf16 on CUDA
    cuda_case = {
        k: [[None if x is None else x.float().cuda() for x in row] for row in v] if k != "X0" else v
        for k, v in case.items()
    }
    got = W.drive(opt, params, cuda_case, mode)
    lmos = W.MUON_LMOS if kind == "muon_mvr" else W.GLUON_LMOS
    grads = [
        [None if (t == 1 and i == W.SOMETIMES_NONE) else g for i, g in enumerate(gs)]
        for t, gs in enumerate(case["grads"])
    ]
    want = oracle_run(
        kind,
        case["X0"],
        lmos,
        grads,
        W.oracle_refs({**case, "grads": grads}, mode),
        W.oracle_hparams(kind, config),
        W.ADAMW,
    )
    for a, b in zip(got[-1], want[-1]):
        assert (a.double().cpu() - b).abs().max() <= 0.05 * b.abs().max()


def test_grad_clip_equals_clip_grad_norm_then_step() -> None:
    """grad_clip scales the averaged gradient of each pass exactly as clip_grad_norm_ on the whole
    gradient would (float64), then takes the unclipped optimizer's step."""
    torch.manual_seed(0)
    shapes = [(6, 4), (4, 6), (5,), (7, 4)]
    X0 = [torch.randn(s, dtype=torch.float64) for s in shapes]
    grads = [[3.0 * torch.randn(s, dtype=torch.float64) for s in shapes] for _ in range(3)]
    a = [nn.Parameter(x.clone()) for x in X0]
    b = [nn.Parameter(x.clone()) for x in X0]
    opt_a = MuonMVR(a, lr=0.05, ns_dtype=torch.float64, weight_decay=0.01)
    opt_a.grad_clip = 1.0
    opt_b = MuonMVR(b, lr=0.05, ns_dtype=torch.float64, weight_decay=0.01)
    for gs in grads:
        for p, q, g in zip(a, b, gs):
            p.grad, q.grad = g.clone(), g.clone()
        torch.nn.utils.clip_grad_norm_(b, 1.0)
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="Invalid grad_clip"):
        opt_a.grad_clip = 0.0


def test_grad_clip_clips_the_reference_pass_too() -> None:
    p = nn.Parameter(torch.zeros(3, 3, dtype=torch.float64))
    opt = MuonMVR([p], is_approx=False, ns_dtype=torch.float64)
    opt.grad_clip = 1.0
    p.grad = torch.full((3, 3), 10.0, dtype=torch.float64)
    opt.update_last_grad()
    assert opt.state[p]["h"].norm().item() == pytest.approx(1.0, rel=1e-5)


def test_grad_clip_of_the_reference_pass_counts_every_parameter() -> None:
    """The reference pass is clipped by the norm of the whole pass, as clip_grad_norm_ on every
    parameter would (the MuonMVR paper's loop), also counting AdamW-routed parameters that keep no
    reference themselves."""
    W = nn.Parameter(torch.zeros(3, 3, dtype=torch.float64))
    v = nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = MuonMVR([W, v], is_approx=False, ns_dtype=torch.float64)
    opt.grad_clip = 1.0
    W.grad = torch.ones(3, 3, dtype=torch.float64)
    v.grad = torch.full((4,), 100.0, dtype=torch.float64)
    ref = [nn.Parameter(torch.zeros_like(W)), nn.Parameter(torch.zeros_like(v))]
    ref[0].grad, ref[1].grad = W.grad.clone(), v.grad.clone()
    torch.nn.utils.clip_grad_norm_(ref, 1.0)
    opt.update_last_grad()
    torch.testing.assert_close(opt.state[W]["h"], ref[0].grad, rtol=1e-12, atol=1e-15)
    assert "h" not in opt.state[v], "an AdamW-routed parameter keeps no reference"
    torch.testing.assert_close(v.grad, torch.full((4,), 100.0, dtype=torch.float64))  # .grad untouched


def test_comm_keeps_only_the_last_steps_buffers() -> None:
    """Each step's collective buffers are released two steps later; only a Comm that dies hands its last
    batches to the module's ring (keeping every step's there held 8 steps of gradient-sized buffers)."""
    from optim import comm

    c = comm.Comm()
    before = len(comm._RETIRED), list(comm._RETIRED)
    held = []
    for _ in range(10):
        c.begin_step()
        buffers = [torch.zeros(4)]
        c._current.append(buffers)
        held.append(buffers)
    assert (len(comm._RETIRED), list(comm._RETIRED)) == before  # no step went to the ring
    assert c._previous == [held[-2]] and c._current == [held[-1]]
    del c
    assert list(comm._RETIRED)[-2:] == [[held[-2]], [held[-1]]]  # a dying Comm's last batches are kept
