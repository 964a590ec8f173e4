"""How the model's weights are laid out over the ranks: the ``sharding`` key.

- ``replicated`` (the default): every rank holds the whole model; rank 0's weights are broadcast at the
  start, and optim/'s optimizers average the gradients and shard their own state (DDP-style, no DDP).
- ``fsdp2``: ``torch.distributed.fsdp.fully_shard`` on every block (``model.shard_units()``) and on the root,
  so each rank holds 1/W of every weight, gradient and optimizer state; a block's weights are gathered only
  for its forward and backward, and FSDP2 averages each gradient onto its shard. On CUDA the weights are
  gathered in bfloat16 and gradients reduced in float32 (``MixedPrecisionPolicy``), and with compile on,
  each block is compiled on its own. Checkpoints go through torch.distributed.checkpoint
  (harness/checkpoint.py).

optim/README.md ("Two modes: replicated and fsdp2") says what each costs and when to choose which.
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.distributed as dist
from torch import nn

from harness.config import Sharding


def lay_out(
    model: nn.Module, sharding: Sharding, world: int, device: torch.device, compile_on: bool
) -> nn.Module:
    """Lay ``model`` (the same initial weights on every rank) out under ``sharding``; returns the module to
    call forward on. Replicated: rank 0's weights are broadcast (identical seeds make them equal already;
    the broadcast makes sure), then ``torch.compile`` of the whole model if ``compile_on``. fsdp2: every
    block and then the root wrapped with ``fully_shard``; a group of parameters whose dtype differs from
    the rest of the root (the track's bfloat16 embedding) is its own unit, since one unit gathers one
    dtype; with ``compile_on`` each block is compiled before it is wrapped."""
    if sharding == Sharding.replicated:
        if world > 1:
            for t in model.state_dict().values():
                dist.broadcast(t, src=0)
        return torch.compile(model) if compile_on else model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kwargs = {}
    if device.type == "cuda":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    units = model.shard_units()
    in_units = {id(p) for u in units for p in u.parameters()}
    for unit in units:
        if compile_on:
            unit.compile()
        fully_shard(unit, **kwargs)
    rest = [p for p in model.parameters() if id(p) not in in_units]
    common = Counter(p.dtype for p in rest).most_common(1)[0][0] if rest else None
    for child in model.children():
        own = [p for p in child.parameters() if id(p) not in in_units]
        if own and {p.dtype for p in own} != {common} and len({p.dtype for p in own}) == 1:
            fully_shard(child, **kwargs)
    fully_shard(model, **kwargs)
    return model

