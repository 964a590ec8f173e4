"""optimizer.constrained: Scion's constrained update X ← (1 − η) X − η·s·lmo(M) on the spectral and sign
geometries of the Gluon family, in float64 against the equations written out; AdamW-routed vectors keep
their own step; the config composes and trains."""

import math

import torch
from helpers.trainer_utils import compose_cfg
from torch import nn

import train
from optim import GluonMVR, build_param_groups, newton_schulz


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(10, 6)
        self.fc = nn.Linear(6, 4, bias=True)


def two_steps(constrained: bool, variant: str = "gluon"):
    torch.manual_seed(0)
    net = Net().double()
    opt = GluonMVR(build_param_groups(net, "gluon"), lr=0.1, variant=variant, reference="none", beta=0.9,
                   hidden_scale=50.0, embed_scale=3000.0, ns_dtype=torch.float64, constrained=constrained)
    X0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    grads = [{n: torch.randn_like(p) for n, p in net.named_parameters()} for _ in range(2)]
    for g in grads:
        for n, p in net.named_parameters():
            p.grad = g[n].clone()
        opt.step()
    return net, X0, grads


def test_constrained_gluon_in_float64():
    net, X0, grads = two_steps(True)
    eta, beta = 0.1, 0.9
    for name, p in net.named_parameters():
        if name == "fc.bias":
            continue  # AdamW: checked below against the unconstrained run
        X, M = X0[name].clone(), torch.zeros_like(X0[name])
        for g in grads:
            M = beta * M + (1 - beta) * g[name]  # Gluon's EMA
            if name == "fc.weight":
                A, B = X.shape
                lmo = 50.0 * math.sqrt(A / B) * newton_schulz(M, dtype=torch.float64)
            else:
                lmo = 3000.0 / X.shape[-1] * M.sign()
            X = (1 - eta) * X - eta * lmo
        assert torch.allclose(p.detach(), X, rtol=0, atol=1e-12), name
    free, _, _ = two_steps(False)
    assert torch.equal(net.fc.bias, free.fc.bias)  # the vector's AdamW step is the same either way
    assert not torch.equal(net.fc.weight, free.fc.weight)


def test_constrained_is_a_switch_on_every_gluon_config():
    for opt in ("gluon_constrained", "gluon_mvr1", "gluon_mvr2"):
        extra = [] if opt == "gluon_constrained" else ["+optimizer.constrained=true"]
        cfg = compose_cfg([f"optimizer={opt}", *extra])
        built = train.build_optimizer(cfg.optimizer, train.StandIn())
        assert all(g["constrained"] for g in built.param_groups if g["lmo"] != "adamw"), opt
