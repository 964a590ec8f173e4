"""An estimator per routed group: Gluon-MVR-1 on the hidden matrices with plain momentum on the sign-routed
embedding (and the reverse), through a group's own ``variant`` (the trainer's ``optimizer.groups``). In
float64 each group follows exactly the run of its own estimator; 2 gloo ranks equal 1 process."""

import pytest
import torch
import torch.multiprocessing as mp
from helpers import optim_workers as W
from helpers.trainer_utils import compose_cfg

import train
from optim import ShardedOptimizer


def by_lmo(final: list[torch.Tensor], lmo: str) -> list[torch.Tensor]:
    return [x for x, g in zip(final, W.GLUON_LMOS) if g == lmo]


@pytest.mark.parametrize("variant, sign_variant", [("mvr1", "gluon"), ("gluon", "mvr1"), ("mvr2", "gluon")])
def test_each_group_follows_its_own_estimator_in_float64(variant, sign_variant):
    mixed = W.mixed_estimators_run(0, 1, None, None, variant=variant, sign_variant=sign_variant)
    alone = W.mixed_estimators_run(0, 1, None, None, variant=variant, sign_variant=variant)
    other = W.mixed_estimators_run(0, 1, None, None, variant=sign_variant, sign_variant=sign_variant)
    for lmo in ("spectral", "adamw"):
        assert all(torch.equal(a, b) for a, b in zip(by_lmo(mixed, lmo), by_lmo(alone, lmo))), lmo
    assert all(torch.equal(a, b) for a, b in zip(by_lmo(mixed, "sign"), by_lmo(other, "sign")))
    assert not all(torch.equal(a, b) for a, b in zip(by_lmo(mixed, "sign"), by_lmo(alone, "sign")))


@pytest.mark.dist
def test_group_estimators_two_ranks_equal_one_process(tmp_path):
    out = str(tmp_path / "mixed_{rank}.pt")
    mp.spawn(W.mixed_estimators_run, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    single = W.mixed_estimators_run(0, 1, None, None)
    for r in range(2):
        got = torch.load(out.format(rank=r), weights_only=False)
        for i, (a, b) in enumerate(zip(got, single)):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), (r, i)


def test_optimizer_groups_sets_an_estimator_per_group():
    """gluon_mvr1 +optimizer.groups.embed={variant: gluon}: MVR on the hidden matrices only; a
    registered estimator's group may name another registered estimator, whose defaults it gets."""
    cfg = compose_cfg(["optimizer=gluon_mvr1", "+optimizer.groups.embed={variant: gluon}"])
    opt = train.build_optimizer(cfg.optimizer, train.StandIn())
    assert {g["name"]: g["variant"] for g in opt.param_groups} == {"hidden": "mvr1", "embed": "gluon",
                                                                   "vector": "mvr1"}
    m = train.StandIn()
    reg = ShardedOptimizer([{"params": [m.proj.weight], "lmo": "spectral"},
                            {"params": [m.wte.weight], "lmo": "sign", "estimator": "mvr2"}],
                           estimator="ema", reference="prev_params")
    assert reg.param_groups[1]["q"] == 0.5 and "q" not in reg.param_groups[0]
