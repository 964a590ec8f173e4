"""Every preset and registered estimator on a model that is not ours, sharded by FSDP2 on gloo ranks, and
the same model unsharded in one process fed the averaged gradients (``tests/test_optim_fsdp.py``).

The toy model has row counts that no world size divides (7, 11, 5), a 3-D parameter, a 2-row matrix that
leaves a third rank with no rows, three same-shape matrices (one all-to-all bucket) and biases. One global
batch of 6 sequences a step is split over the ranks, so 1, 2 and 3 ranks train on the same data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from harness.distributed import teardown
from optim import GluonMVR, MuonMVR, ShardedOptimizer, build_param_groups

VOCAB, WIDTH, SEQ, GLOBAL_BATCH = 11, 8, 5, 6
F32 = dict(ns_dtype=torch.float32)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(WIDTH, 7)
        self.down = nn.Linear(7, WIDTH, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(x)))


class Toy(nn.Module):
    output_head = "lm_head"

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(3))
        self.narrow = nn.Linear(WIDTH, 2)
        self.mix = nn.Parameter(torch.randn(5, 2, 4) * 0.3)
        self.lm_head = nn.Linear(WIDTH + 2 + 5, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.emb(tokens)
        for block in self.blocks:
            x = block(x)
        mixed = torch.einsum("btij,kij->btk", x.view(*x.shape[:2], 2, 4), self.mix)
        return self.lm_head(torch.cat([x, self.narrow(x), mixed], dim=-1))


def make_model(seed: int = 0) -> Toy:
    torch.manual_seed(seed)
    return Toy()


def shard(model: nn.Module) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def loss_on(model: nn.Module, t: int, rank: int, world: int) -> torch.Tensor:
    """This rank's share of step t's global batch (its mean; FSDP2 averages over ranks)."""
    gen = torch.Generator().manual_seed(1000 + t)
    tokens = torch.randint(0, VOCAB, (GLOBAL_BATCH, SEQ + 1), generator=gen)
    per = GLOBAL_BATCH // world
    rows = tokens[rank * per : (rank + 1) * per]
    logits = model(rows[:, :-1])
    return F.cross_entropy(logits.reshape(-1, VOCAB), rows[:, 1:].reshape(-1))


# name -> (build(model) -> optimizer, loop). Loops: "one" (one pass), "lookahead" (prev_params by
# update_lookahead_grad), "prev_batch" (MVR3: update_last_grad on the previous batch at the new parameters).
def _muon(**kw: Any) -> Callable[[nn.Module], Any]:
    return lambda m: MuonMVR(build_param_groups(m, "muon"), lr=0.02, weight_decay=0.01, **F32, **kw)


def _gluon(**kw: Any) -> Callable[[nn.Module], Any]:
    hp = dict(lr=0.01, hidden_scale=2.0, embed_scale=3.0, **F32, **kw)
    return lambda m: GluonMVR(build_param_groups(m, "gluon"), **hp)


def _sharded(estimator: str, **kw: Any) -> Callable[[nn.Module], Any]:
    def build(m: nn.Module) -> ShardedOptimizer:
        groups = build_param_groups(m, "gluon")  # hidden: spectral, embed and head: sign, vectors: adamw
        return ShardedOptimizer(groups, estimator, lr=0.01, embed_scale=3.0, hidden_scale=2.0, **F32, **kw)

    return build


def _clipped(build: Callable[[nn.Module], Any], clip: float) -> Callable[[nn.Module], Any]:
    def make(m: nn.Module) -> Any:
        opt = build(m)
        opt.grad_clip = clip
        return opt

    return make


CONFIGS: dict[str, tuple[Callable[[nn.Module], Any], str]] = {
    "muon": (_muon(reference="none", gamma=0.0, clip=False, nesterov=True, scale="muon"), "one"),
    "muon_mvr1": (_muon(is_approx=True, gamma=0.1), "one"),
    "muon_mvr1_gradclip": (_clipped(_muon(is_approx=True, gamma=0.1), 0.5), "one"),
    "muon_mvr2": (_muon(is_approx=False, gamma=0.1), "lookahead"),
    "muon_mvr3": (_muon(reference="prev_batch", gamma=0.1), "prev_batch"),
    "gluon": (_gluon(variant="gluon"), "one"),
    "gluon_mvr1": (_gluon(variant="mvr1"), "lookahead"),
    "gluon_mvr2": (_gluon(variant="mvr2", q=0.5), "prev_batch"),
    "gluon_mvr3": (_gluon(variant="mvr3", q=0.5, alpha=0.8), "lookahead"),
    # the MARS clip on elementwise (sign) parts: its whole-tensor norm from squared norms of the rows
    "sharded_mars_sign": (_sharded("mars", gamma=0.2, momentum=0.9, reference="prev_batch"), "prev_batch"),
    "sharded_ema": (_sharded("ema", beta=0.8), "one"),
}


def train(model: nn.Module, opt: Any, loop: str, start: int, stop: int, rank: int, world: int) -> None:
    for t in range(start, stop):
        if loop == "lookahead":  # h_{t+1} = ∇f(X_t; ξ_{t+1})
            loss_on(model, t + 1, rank, world).backward()
            opt.update_lookahead_grad()
            opt.zero_grad()
        loss_on(model, t, rank, world).backward()
        opt.step()
        opt.zero_grad()
        if loop == "prev_batch":  # h_{t+1} = ∇f(X_{t+1}; ξ_t)
            loss_on(model, t, rank, world).backward()
            opt.update_last_grad()
            opt.zero_grad()


def full_params(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in model.named_parameters():
        full = p.full_tensor() if hasattr(p, "full_tensor") else p
        out[name] = full.detach().clone()
    return out


def single_process(name: str, steps: int) -> dict[str, torch.Tensor]:
    """The unsharded model in one process: its gradient is the mean over the global batch, which is what
    FSDP2 averages onto the shards."""
    build, loop = CONFIGS[name]
    model = make_model()
    opt = build(model)
    train(model, opt, loop, 0, steps, 0, 1)
    return full_params(model)


def _init(rank: int, world: int, store: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)


def resumed(name: str, ckpt: str, split: int, steps: int, rank: int, world: int) -> dict[str, torch.Tensor]:
    """Fresh objects (other initial weights: the load must overwrite them) loaded from the DCP checkpoint
    ``ckpt`` of step ``split`` (get_state_dict / dcp.load / set_state_dict), then trained to ``steps``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    build, loop = CONFIGS[name]
    model = shard(make_model(seed=123))
    opt = build(model)
    model_sd, optim_sd = get_state_dict(model, opt)
    sd = {"model": model_sd, "optim": optim_sd}
    dcp.load(sd, checkpoint_id=ckpt)
    set_state_dict(model, opt, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
    train(model, opt, loop, split, steps, rank, world)
    return full_params(model)


def fsdp_worker(
    rank: int, world: int, store: str, out: str, names: list[str], steps: int, split: int, resume: list[str]
) -> None:
    """Every config in ``names`` for ``steps`` steps under FSDP2; for those in ``resume``, also save a DCP
    checkpoint at step ``split`` and resume it into fresh objects. Writes ``rank{r}.pt``: name ->
    (uninterrupted full params, resumed full params or None, this rank's optimizer state bytes); plus the
    checkpoints under ``out``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    def one(name: str) -> tuple:
        build, loop = CONFIGS[name]
        model = shard(make_model())
        opt = build(model)
        train(model, opt, loop, 0, split, rank, world)
        ckpt = os.path.join(out, f"ckpt_{name}")
        if name in resume:
            model_sd, optim_sd = get_state_dict(model, opt)
            dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=ckpt)
        train(model, opt, loop, split, steps, rank, world)
        again = resumed(name, ckpt, split, steps, rank, world) if name in resume else None
        return full_params(model), again, opt.state_bytes()

    _init(rank, world, store)
    try:
        torch.save({name: one(name) for name in names}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        teardown()  # collects the FSDP2 modules before the group goes (harness/distributed.py)


def reshard_worker(
    rank: int, world: int, store: str, out: str, names: list[str], steps: int, split: int
) -> None:
    """Load the checkpoints ``fsdp_worker`` saved (at its world size) on ``world`` ranks; finish the run."""
    _init(rank, world, store)
    try:
        results = {n: resumed(n, os.path.join(out, f"ckpt_{n}"), split, steps, rank, world) for n in names}
        torch.save(results, os.path.join(out, f"resharded{world}_rank{rank}.pt"))
    finally:
        teardown()  # collects the FSDP2 modules before the group goes (harness/distributed.py)
