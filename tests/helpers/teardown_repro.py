"""Reproducer of the gloo teardown abort (run under torchrun with 2 processes).

Three 32×48 parameters, one ``MuonMVR`` step with random gradients, ``destroy_process_group()``,
exit. Before the fix, about 1 exit in 4 aborted with "terminate called without an active exception"
(gloo's worker thread dropped the last reference to the final all-gather's tensors while the
interpreter finalized). With ``--drop-optimizer`` the optimizer is collected before the teardown (the
buffers must outlive it too). Exit code 0 on every rank is the pass condition.
"""

import gc
import sys

import torch
import torch.distributed as dist

from optim import MuonMVR

if __name__ == "__main__":
    dist.init_process_group("gloo")
    torch.manual_seed(dist.get_rank())
    ps = [torch.nn.Parameter(torch.randn(32, 48)) for _ in range(3)]
    opt = MuonMVR(ps, lr=0.02)
    for p in ps:
        p.grad = torch.randn_like(p)
    opt.step()
    if "--drop-optimizer" in sys.argv:
        del opt
        gc.collect()
    dist.destroy_process_group()
