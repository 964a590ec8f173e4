"""The optimizers on FSDP2 (DTensor) parameters: 2 gloo ranks equal one process fed the averaged gradients,
for every preset and registered estimator, one- and two-pass, in a model that is not ours; a DCP
checkpoint resumes exactly, on the same and on another number of ranks (``tests/helpers/fsdp_workers.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers import fsdp_workers as FW

STEPS, SPLIT = 4, 2
RESHARD = ["muon_mvr1", "gluon_mvr2", "muon_mvr3"]  # one pass; two prev_batch hand-overs
RESUME = [*RESHARD, "muon_mvr2", "gluon_mvr3"]  # + the look-ahead hand-over


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict]]:
    out = str(tmp_path_factory.mktemp("fsdp"))
    names = list(FW.CONFIGS)
    args = (2, os.path.join(out, "store"), out, names, STEPS, SPLIT, RESUME)
    mp.spawn(FW.fsdp_worker, args=args, nprocs=2, join=True)
    return out, [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=False) for r in range(2)]


@pytest.mark.dist
@pytest.mark.parametrize("name", list(FW.CONFIGS))
def test_fsdp2_two_ranks_equal_one_process(two_ranks, name: str) -> None:
    _, results = two_ranks
    single = FW.single_process(name, STEPS)
    for r in range(2):
        uninterrupted, resumed, _ = results[r][name]
        for key, ref in single.items():
            assert max_rel(uninterrupted[key], ref) <= 1e-5, (name, key, max_rel(uninterrupted[key], ref))
            if name in RESUME:  # a DCP save at step SPLIT, loaded into fresh objects, continues exactly
                assert torch.equal(resumed[key], uninterrupted[key]), (name, key, "resumed differs")
        assert any(not torch.equal(single[k], FW.full_params(FW.make_model())[k]) for k in single)


@pytest.mark.dist
def test_fsdp2_state_is_sharded(two_ranks) -> None:
    """Each rank holds the state of its own rows only: about half of one process's."""
    _, results = two_ranks
    for name in ("muon_mvr1", "gluon_mvr2"):
        build, _ = FW.CONFIGS[name]
        model = FW.make_model()
        opt = build(model)
        FW.train(model, opt, FW.CONFIGS[name][1], 0, 1, 0, 1)
        whole = opt.state_bytes()
        per_rank = [results[r][name][2] for r in range(2)]
        assert sum(per_rank) == whole, (name, per_rank, whole)
        assert max(per_rank) < 0.6 * whole


@pytest.mark.dist
@pytest.mark.parametrize("world", [1, 3])
def test_fsdp2_checkpoint_loads_on_another_number_of_ranks(two_ranks, world: int) -> None:
    """Saved on 2 ranks at step SPLIT, loaded on 1 or 3: the finished run equals the uninterrupted one."""
    out, results = two_ranks
    args = (world, os.path.join(out, f"store_reshard{world}"), out, RESHARD, STEPS, SPLIT)
    if world == 1:
        FW.reshard_worker(0, *args)
    else:
        mp.spawn(FW.reshard_worker, args=args, nprocs=world, join=True)
    resumed = torch.load(os.path.join(out, f"resharded{world}_rank0.pt"), weights_only=False)
    for name in RESHARD:
        for key, ref in results[0][name][0].items():
            rel = max_rel(resumed[name][key], ref)
            assert rel <= 1e-5, (name, world, key, rel)


def test_start_up_does_not_import_dtensor() -> None:
    """torch.distributed.tensor costs about half a second at every launch; only FSDP2 (which imports it
    itself) needs it, so optim.dtensor.is_dtensor looks for it in sys.modules instead of importing it."""
    code = ("import sys, train, optim, harness.optimizer, harness.checkpoint\n"
            "print(sorted(m for m in sys.modules if m.startswith('torch.distributed.tensor')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.fixture
def group_of_one():
    """A gloo group of one process (an in-memory store), destroyed after the test."""
    import torch.distributed as dist

    assert not dist.is_initialized()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield dist
    dist.destroy_process_group()


def test_one_optimizer_steps_the_parameters_of_one_mesh(group_of_one) -> None:
    """Parameters of two device meshes are refused when the optimizer is built and when a later param group
    brings them; a process_group other than the mesh's is refused (the mesh's own is accepted)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from optim import MuonMVR

    meshes = [init_device_mesh("cpu", (1,), mesh_dim_names=(name,)) for name in ("a", "b")]
    pa, pb = (torch.nn.Parameter(distribute_tensor(torch.randn(4, 4), m, [Shard(0)])) for m in meshes)
    with pytest.raises(ValueError, match=r"shape \(4, 4\) is sharded over another device mesh"):
        MuonMVR([pa, pb])
    opt = MuonMVR([pa])
    assert opt.sharding == "fsdp2"
    with pytest.raises(ValueError, match="another device mesh"):
        opt.add_param_group({"params": [pb], "lmo": "spectral"})
    with pytest.raises(ValueError, match="Invalid process_group.*pass no process_group"):
        MuonMVR([pa], process_group=group_of_one.new_group([0]))
    assert MuonMVR([pa], process_group=meshes[0].get_group()).sharding == "fsdp2"
