"""Our optimizers in your FSDP2 trainer (docs/fsdp2.md): a small causal transformer made of torch.nn pieces,
sharded with fully_shard (each block, then the root), trained with MuonMVR or a two-pass preset on synthetic
token sequences, saved with torch.distributed.checkpoint (DCP) and resumed exactly. From the repository root
(or with the package installed, `pip install -e .`, and no PYTHONPATH):

    PYTHONPATH=. torchrun --nproc_per_node=2 examples/fsdp2_dropin.py --steps 20 --save-at 10 --save-dir ck
    PYTHONPATH=. torchrun --nproc_per_node=2 examples/fsdp2_dropin.py --steps 20 --resume ck
    PYTHONPATH=. python examples/fsdp2_dropin.py --optimizer gluon_mvr1   # one process: a group of one rank
"""

import argparse
import gc
import json
import os
import warnings

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from optim import GluonMVR, MuonMVR, build_param_groups

VOCAB, DEPTH, HEADS = 64, 2, 4
DEFAULT_LR = {"muon_mvr1": 0.01, "muon_mvr2": 0.01, "gluon_mvr1": 3.6e-4}  # Gluon: the Gluon-MVR paper's


class TinyLM(nn.Module):
    """Token and position embeddings, pre-norm transformer blocks, a final norm and ``lm_head``."""

    def __init__(self, width: int, seq: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, width), nn.Embedding(seq, width)
        layer = dict(dim_feedforward=4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(width, HEADS, **layer) for _ in range(DEPTH))
        self.norm, self.lm_head = nn.LayerNorm(width), nn.Linear(width, VOCAB, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=idx.device)
        for block in self.blocks:
            x = block(x, src_mask=mask, is_causal=True)
        return self.lm_head(self.norm(x))


def make_optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """The parameters as fully_shard left them (DTensors), routed as the papers do: matrices take
    Newton–Schulz; embeddings, ``lm_head`` and vectors AdamW (Muon) or sign / AdamW (Gluon)."""
    if name == "gluon_mvr1":  # two passes a step: h_t = ∇f(X_{t-1}; ξ_t), handed over by the loop
        return GluonMVR(build_param_groups(model, "gluon"), lr=lr, variant="mvr1")
    # muon_mvr1: one pass (h_t = g_{t-1}, kept by the optimizer); muon_mvr2: two passes, as above
    return MuonMVR(build_param_groups(model, "muon"), lr=lr, is_approx=name == "muon_mvr1")


def loss_on(model: nn.Module, step: int, args: argparse.Namespace, rank: int, world: int) -> torch.Tensor:
    """This rank's mean loss on its rows of step ``step``'s global batch: sequences ``(a + b·i) mod VOCAB``
    with random start a and stride b, the same for every number of ranks (FSDP2 averages the gradients)."""
    gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
    start = torch.randint(0, VOCAB, (args.batch, 1), generator=gen)
    stride = torch.randint(1, 4, (args.batch, 1), generator=gen)
    rows = ((start + stride * torch.arange(args.seq + 1)) % VOCAB).chunk(world)[rank].to(args.device)
    return F.cross_entropy(model(rows[:, :-1]).flatten(0, 1), rows[:, 1:].flatten())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--optimizer", choices=list(DEFAULT_LR), default="muon_mvr1",
                   help="muon_mvr1: one gradient pass a step; muon_mvr2, gluon_mvr1: two (look-ahead loop)")
    p.add_argument("--lr", type=float, default=None, help=f"default: {DEFAULT_LR}")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps of the whole run")
    p.add_argument("--batch", type=int, default=16, help="sequences a step, all ranks (divisible by them)")
    p.add_argument("--seq", type=int, default=32, help="tokens a sequence")
    p.add_argument("--width", type=int, default=64, help="model width (divisible by the 4 heads)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and data")
    p.add_argument("--save-at", type=int, default=None, help="save a DCP checkpoint after this step")
    p.add_argument("--save-dir", default=None, help="the folder of that checkpoint (one file per rank)")
    p.add_argument("--resume", default=None, help="a --save-dir folder: continue after its step")
    p.add_argument("--out-json", default=None, help="rank 0 writes this run's losses here ({step: loss})")
    args = p.parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", 1))
    if args.batch % world or args.width % HEADS:
        p.error(f"--batch {args.batch} must divide by the {world} ranks, --width {args.width} by {HEADS}")
    if (args.save_at is None) != (args.save_dir is None):
        p.error("--save-at and --save-dir go together")
    if args.save_at is not None and not 0 < args.save_at < args.steps:
        p.error(f"--save-at {args.save_at} must be between 1 and --steps - 1 = {args.steps - 1}")
    if args.resume:  # what the checkpoint was saved with, read before any work
        if not os.path.isfile(os.path.join(args.resume, ".metadata")):
            p.error(f"--resume {args.resume}: no DCP checkpoint there (no .metadata file)")
        meta = {"step": 0, "optimizer": ""}
        with warnings.catch_warnings():  # "no process group: loading in one process" is what we want here
            warnings.simplefilter("ignore", UserWarning)
            dcp.load({"meta": meta}, checkpoint_id=args.resume, no_dist=True)
        if meta["optimizer"] != args.optimizer:
            p.error(f"--resume {args.resume} was saved with --optimizer {meta['optimizer']}")
        if not meta["step"] < (args.save_at or args.steps):
            p.error(f"--resume {args.resume} is at step {meta['step']}: --steps and --save-at must be later")

    cuda = torch.cuda.is_available()
    args.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(args.device)
    # torchrun sets RANK; alone, FSDP2 still needs a process group: one rank, an in-memory store (no port)
    alone = {} if "RANK" in os.environ else dict(store=dist.HashStore(), rank=0, world_size=1)
    dist.init_process_group("nccl" if cuda else "gloo", **alone)
    rank = dist.get_rank()

    # The pattern: shard each block, then the root; the optimizer takes the DTensor parameters as they are.
    torch.manual_seed(args.seed)  # the same full weights on every rank; fully_shard keeps each rank's rows
    model = TinyLM(args.width, args.seq).to(args.device)
    mesh = init_device_mesh(args.device.type, (world,))  # 1-D: every parameter Shard(0)
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = make_optimizer(args.optimizer, model, DEFAULT_LR[args.optimizer] if args.lr is None else args.lr)
    assert opt.sharding == "fsdp2"
    lookahead = opt.reference_source == "prev_params"  # two passes: the loop hands h over

    start = 0
    if args.resume:  # get_state_dict gives the layout to load into; DCP re-shards onto any number of ranks
        model_sd, optim_sd = get_state_dict(model, opt)
        ckpt = {"model": model_sd, "optim": optim_sd}
        dcp.load(ckpt, checkpoint_id=args.resume)
        set_state_dict(model, opt, model_state_dict=ckpt["model"], optim_state_dict=ckpt["optim"])
        start = meta["step"]

    losses = {}
    for t in range(start, args.steps):  # parameters X_t, batch ξ_t
        if lookahead and t + 1 < args.steps:  # ∇f(X_t; ξ_{t+1}) becomes h_{t+1} after the coming step()
            loss_on(model, t + 1, args, rank, world).backward()
            opt.update_lookahead_grad()
            opt.zero_grad()
        loss = loss_on(model, t, args, rank, world)
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss = loss.detach()
        dist.all_reduce(loss)  # the global batch's mean loss, for the log
        losses[t + 1] = loss.item() / world
        if rank == 0:
            print(f"step {t + 1}/{args.steps} loss {losses[t + 1]:.6f}", flush=True)
        if t + 1 == args.save_at:  # between steps: a handed-over h is already part of the optimizer state
            model_sd, optim_sd = get_state_dict(model, opt)
            meta = {"step": t + 1, "optimizer": args.optimizer}
            dcp.save({"model": model_sd, "optim": optim_sd, "meta": meta}, checkpoint_id=args.save_dir)
    if rank == 0 and args.out_json:
        with open(args.out_json, "w") as f:
            json.dump({"optimizer": args.optimizer, "world_size": world, "losses": losses}, f)
    # Free the sharded model (it holds the process group) before the group ends, or the exit may abort
    # (docs/fsdp2.md, "The rules").
    del model, opt
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
