"""Trainer pieces that need no full run: the micro-batch probe (with injected out-of-memory errors), the
GPU-count check, the MFU table, step timing, wandb across resume (a fake wandb module), the Hydra entry's
return value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from helpers.trainer_utils import REPO, compose_cfg, read_metrics, small_run_overrides, write_test_shards

import train
from harness import batching, distributed, metrics
from harness.config import Device
from model import GPT, GPTConfig


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_test_shards(tmp_path_factory.mktemp("shards"))


# ----------------------------------------------------------------------------- micro-batch probe
def _fits_up_to(limit: int, tried: list[int], error=torch.cuda.OutOfMemoryError):
    def try_size(m: int) -> None:
        tried.append(m)
        if m > limit:
            raise error(f"CUDA out of memory. Tried to allocate {m} GiB")

    return try_size


@pytest.mark.parametrize("limit,expect,tries", [(64, 64, [64]), (40, 32, [64, 32]), (9, 8, [64, 32, 16, 8]),
                                                (1, 1, [64, 32, 16, 8, 4, 2, 1])])
def test_probe_halves_on_out_of_memory(limit, expect, tries):
    tried, log = [], []
    assert batching.probe_micro_seqs(512, 64, _fits_up_to(limit, tried), world=1, log=log.append) == expect
    assert tried == tries
    assert len(log) == len(tries) - 1 and all("ran out of memory" in m for m in log)


def test_probe_uses_divisors_of_the_per_rank_batch_and_plain_runtime_oom():
    tried = []
    # 48 per rank: halving through the divisors 48 -> 24 -> 12; "out of memory" in a RuntimeError counts too
    got = batching.probe_micro_seqs(48, 48, _fits_up_to(20, tried, RuntimeError), world=1, log=lambda m: None)
    assert got == 12 and tried == [48, 24, 12]


def _probe_worker(rank: int, world: int, store: str, out: str) -> None:
    """Rank r fits up to 32 >> r sequences (rank 1 has less memory); rank 1 of the second probe fails
    with a non-memory error. Writes what each rank got."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        got = batching.probe_micro_seqs(64, 64, _fits_up_to(32 >> rank, []), world, log=lambda m: None)

        def broken(m):
            if rank == 1:
                raise ValueError("rank 1: shape mismatch")

        try:
            batching.probe_micro_seqs(64, 64, broken, world, log=lambda m: None)
            second = "no error"
        except Exception as e:  # noqa: BLE001
            second = f"{type(e).__name__}: {e}"
        Path(out.format(rank=rank)).write_text(json.dumps([got, second]))
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_probe_agrees_on_the_minimum_and_fails_together(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "rank{rank}.json")
    mp.spawn(_probe_worker, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    r0, r1 = (json.loads(Path(out.format(rank=r)).read_text()) for r in (0, 1))
    assert r0[0] == r1[0] == 16  # rank 0 fits 32, rank 1 only 16: both use 16
    assert r1[1] == "ValueError: rank 1: shape mismatch"
    assert r0[1].startswith("RankFailed: another rank failed"), r0[1]  # a RuntimeError


def test_probe_reserve_covers_state_and_buffers():
    model = torch.nn.Linear(10, 10, bias=False)  # 100 elements
    assert batching.probe_reserve_bytes(model, 1) == (4 + 2) * 100 * 4
    assert batching.probe_reserve_bytes(model, 4) == (1 + 2) * 100 * 4


def test_probe_reraises_other_errors_and_gives_up_below_one():
    def boom(m):
        raise ValueError("shape mismatch")

    with pytest.raises(ValueError, match="shape mismatch"):
        batching.probe_micro_seqs(64, 64, boom, world=1)
    with pytest.raises(RuntimeError, match="even 1 sequence"):
        batching.probe_micro_seqs(8, 8, _fits_up_to(0, []), world=1, log=lambda m: None)


# ----------------------------------------------------------------------------- device checks, MFU, timing
def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match=r"2 processes per node .* only 1 GPU.*--nproc_per_node=1"):
        distributed.setup_distributed(Device.auto)


def test_gpu_process_group_also_serves_cpu_collectives(monkeypatch):
    """On GPUs the trainer's control collectives (pre-flight agreement, checkpoint finiteness, the probe's
    minimum) reduce CPU tensors, which NCCL alone cannot: the group pairs gloo (CPU) with NCCL (CUDA)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: calls.append(kw))
    for k, v in dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2").items():
        monkeypatch.setenv(k, v)
    assert distributed.setup_distributed(Device.auto) == (1, 2, torch.device("cuda", 1))
    assert calls == [dict(backend="cpu:gloo,cuda:nccl", device_id=torch.device("cuda", 1))]


def test_peak_flops_table_and_override(monkeypatch):
    cuda = torch.device("cuda", 0)
    table = [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.0),
             ("NVIDIA A100-SXM4-40GB", 312.0), ("NVIDIA L40S", 362.0), ("NVIDIA GeForce RTX 4090", 165.2)]
    for name, tflops in table:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda d, n=name: n)
        assert metrics.peak_flops(cuda, None) == tflops * 1e12, name
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "Mystery GPU 9000")
    assert metrics.peak_flops(cuda, None) is None  # unknown: MFU omitted
    assert metrics.peak_flops(cuda, 100.0) == 100e12
    assert metrics.peak_flops(torch.device("cpu"), None) is None


def test_throughput_skips_warmup_and_two_pass_mfu():
    thr = metrics.Throughput(warmup=2, flops_per_token=1e9, peak=1e15, world=2)
    assert [thr.add(ms) for ms in (900.0, 500.0, 100.0, 120.0, 110.0)] == [False, False, True, True, True]
    assert thr.median_ms == 110.0
    assert thr.mfu(processed_tokens_per_s=1e6) == pytest.approx(1e9 * 1e6 / (2 * 1e15))
    # a two-pass run whose last step takes one pass: the run's processed rate is the two-pass steps'
    two = metrics.Throughput(warmup=1, flops_per_token=1e9, peak=None, world=1)
    for ms, passes in ((900.0, 2), (200.0, 2), (200.0, 2), (200.0, 2), (100.0, 1)):
        two.add(ms, passes)
    assert two.median_processed_tok_s(1000) == pytest.approx(2 * 1000 / 0.2)
    assert two.mfu(1.0) is None
    assert metrics.fmt_eta(3725) == "1:02:05"


# ----------------------------------------------------------------------------- wandb
class FakeWandb(types.ModuleType):
    """Records init calls; `fail_online` makes an online init raise like an unreachable server."""

    def __init__(self, fail_online: bool = False, fail_offline: bool = False, fail_log: bool = False):
        super().__init__("wandb")
        self.calls, self.logged = [], []
        self.fail = {"online": fail_online, "offline": fail_offline}
        self.fail_log = fail_log
        self.Settings = lambda **kw: kw

    def init(self, **kw):
        self.calls.append(kw)
        if self.fail[kw["mode"]]:
            raise TimeoutError(f"wandb could not start {kw['mode']}")

        def log(rec, step):
            if self.fail_log:
                raise ConnectionError("wandb service went away")
            self.logged.append(step)

        return types.SimpleNamespace(log=log, finish=lambda: None)


def _wandb_run(tmp_path, data_dir, fake, monkeypatch, steps, **extra):
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = compose_cfg(small_run_overrides(tmp_path / "w", data_dir, "muon_mvr1", steps=steps, **extra))
    return train.train(cfg)


def test_wandb_run_id_survives_resume_and_runs_are_grouped_and_tagged(tmp_path, data_dir, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    fake = FakeWandb()
    _wandb_run(tmp_path, data_dir, fake, monkeypatch, 3, **{"wandb.mode": "offline", "figure.name": "fig9"})
    _wandb_run(tmp_path, data_dir, fake, monkeypatch, 6, **{"wandb.mode": "offline", "figure.name": "fig9",
                                                             "resume_allow": "[train.steps]"})
    first, second = fake.calls
    assert first["id"] == second["id"] and second["resume"] == "allow"
    assert (tmp_path / "w" / "wandb_id").read_text().strip() == first["id"]
    assert first["group"] == "fig9" and first["tags"] == ["muon_mvr1", "b8", "seed0"]
    assert fake.logged == [1, 2, 3, 4, 5, 6]


def test_wandb_mode_from_environment_wins(tmp_path, data_dir, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    _wandb_run(tmp_path, data_dir, fake, monkeypatch, 2, **{"wandb.mode": "online"})
    assert fake.calls == []


def test_unreachable_wandb_goes_offline_with_a_warning(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    fake = FakeWandb(fail_online=True)
    extra = {"wandb.mode": "online", "wandb.init_timeout_s": 5}
    _wandb_run(tmp_path, data_dir, fake, monkeypatch, 2, **extra)
    assert [c["mode"] for c in fake.calls] == ["online", "offline"]
    assert fake.calls[0]["settings"] == {"init_timeout": 5.0}
    assert "logging offline" in (Path(tmp_path) / "w" / "train.log").read_text()


@pytest.mark.parametrize("failure", ["fail_offline", "fail_log"])
def test_wandb_failures_never_stop_training(tmp_path, data_dir, monkeypatch, failure):
    """wandb that cannot start even offline, or whose log() fails mid-run: a warning, and the run trains
    to the end with metrics.jsonl complete."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    fake = FakeWandb(**{failure: True})
    summary = _wandb_run(tmp_path, data_dir, fake, monkeypatch, 3, **{"wandb.mode": "offline"})
    assert summary["completed"] and [r["step"] for r in read_metrics(tmp_path / "w")] == [1, 2, 3]
    text = (tmp_path / "w" / "train.log").read_text()
    assert ("wandb could not start" in text) if failure == "fail_offline" else ("wandb.log failed" in text)


def test_real_wandb_offline_run_and_resume(tmp_path, data_dir, monkeypatch):
    """The installed wandb package (not a fake), offline: the run id it is given is kept in run_dir and
    reused on resume, and wandb's own files land under run_dir/wandb."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_cfg(small_run_overrides(tmp_path / "w", data_dir, "muon", steps=2))
    assert train.train(cfg)["completed"]
    run_id = (tmp_path / "w" / "wandb_id").read_text().strip()
    assert run_id and list((tmp_path / "w" / "wandb").glob(f"offline-run-*-{run_id}"))
    cfg = compose_cfg(small_run_overrides(tmp_path / "w", data_dir, "muon", steps=3,
                                          resume_allow="[train.steps]"))
    assert train.train(cfg)["completed"]
    assert (tmp_path / "w" / "wandb_id").read_text().strip() == run_id


def test_bad_wandb_mode_in_the_environment_is_refused(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "bogus")
    cfg = compose_cfg(small_run_overrides(tmp_path / "w", data_dir, "muon", steps=1))
    with pytest.raises(train.ConfigError, match="WANDB_MODE='bogus'"):
        train.train(cfg)
    assert not (tmp_path / "w").exists()


def test_wandb_without_the_package_is_refused_before_any_work(tmp_path, data_dir, monkeypatch):
    """An offline GPU node has no wandb (docs/offline.md): wandb.mode=offline there is a clear refusal."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    missing = lambda name, *a: None if name == "wandb" else real(name, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", missing)
    monkeypatch.setenv("WANDB_MODE", "offline")  # wins over wandb.mode (the tests run with it disabled)
    cfg = compose_cfg(small_run_overrides(tmp_path / "w", data_dir, "muon", steps=1))
    with pytest.raises(train.ConfigError, match="needs the wandb package, which is not installed"):
        train.train(cfg)
    assert not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- the Hydra entry
def test_hydra_entry_returns_the_final_validation_loss(tmp_path, data_dir):
    """Sweeper plugins (e.g. Optuna) minimise the value the task function returns (Hydra passes it on in
    multirun as JobReturn.return_value); the task function is main without its decorator."""
    cfg = compose_cfg(small_run_overrides(tmp_path / "h", data_dir, "gluon", steps=2))
    value = train.main.__wrapped__(cfg)
    assert isinstance(value, float)
    assert value == json.loads((tmp_path / "h" / "summary.json").read_text())["final_val_loss"]


# ----------------------------------------------------------------------------- any registered estimator
def overrides_of(run_dir, data_dir, base: str, steps: int, extra: dict) -> list[str]:
    """small_run_overrides with Hydra's deletions (`~key`: {"~key": None})."""
    overrides = small_run_overrides(run_dir, data_dir, base, steps=steps, **extra)
    return [o.removesuffix("=None") for o in overrides]


# gluon.yaml's keys under the generic class (GluonMVR's own `variant` removed)
AS_SHARDED = {"optimizer._target_": "optim.ShardedOptimizer", "~optimizer.variant": None}


def test_any_registered_estimator_trains_through_a_yaml(tmp_path, data_dir):
    """A registered estimator needs no trainer edit: optim.ShardedOptimizer with estimator=<name>, its
    hyperparameters as keyword arguments (here the built-in STORM estimator, two-pass, Gluon's routing)."""
    extra = {**AS_SHARDED, "+optimizer.estimator": "storm", "optimizer.reference": "prev_params",
             "+optimizer.routing": "gluon", "optimizer.beta": 0.8, "+optimizer.scale": "unscion",
             "+optimizer.embed_scale": 500.0, "optimizer.lr": 1e-3}
    summary = train.train(compose_cfg(overrides_of(tmp_path / "s", data_dir, "gluon", 3, extra)))
    assert summary["grad_evals"] == 5  # two passes a step, none extra at the last step
    extra["+optimizer.estimator"] = "nope"
    bad = compose_cfg(overrides_of(tmp_path / "b", data_dir, "gluon", 1, extra))
    with pytest.raises(ValueError, match="optimizer.estimator='nope' is invalid: must be one of"):
        train.train(bad)
    assert not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------- any importable optimizer
USER_OPTIMIZER = '''
import torch


class KickSGD(torch.optim.Optimizer):
    """SGD whose every step adds `kick` times the sign of the gradient (a class this repository never saw)."""

    def __init__(self, params, lr=0.1, kick=0.0):
        if kick < 0:
            raise ValueError(f"Invalid kick: {kick}")
        super().__init__(params, dict(lr=lr, kick=kick))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad + group["kick"] * p.grad.sign(), alpha=-group["lr"])
'''


def test_a_users_own_optimizer_class_trains_by_a_yaml_alone(tmp_path, data_dir, monkeypatch):
    """A torch optimizer from the user's module, its yaml in the user's config folder (hydra.searchpath):
    trained with no trainer edit, its own hyperparameter (kick) passed, its own check run before any work,
    per-group lr through optimizer.routing + groups."""
    (tmp_path / "my_optim.py").write_text(USER_OPTIMIZER)
    (tmp_path / "conf" / "optimizer").mkdir(parents=True)
    yaml_text = "_target_: my_optim.KickSGD\nlr: 0.05\nkick: 0.01\n"
    (tmp_path / "conf" / "optimizer" / "kick.yaml").write_text(yaml_text)
    monkeypatch.syspath_prepend(str(tmp_path))
    search = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    cfg = compose_cfg([*small_run_overrides(tmp_path / "run", data_dir, "kick", steps=3), search])
    assert (cfg.optimizer.name, cfg.optimizer.label) == ("kick", "kick")
    summary = train.train(cfg)
    assert summary["completed"] and summary["grad_evals"] == 3
    opt = train.build_optimizer(cfg.optimizer, train.StandIn())
    assert type(opt.optimizer).__name__ == "KickSGD" and opt.param_groups[0]["kick"] == 0.01
    routed = compose_cfg([*small_run_overrides(tmp_path / "r", data_dir, "kick", steps=1), search,
                          "+optimizer.routing=muon", "+optimizer.groups={embed:{lr:0.5}}"])
    lrs = {g["name"]: g["lr"] for g in train.build_optimizer(routed.optimizer, train.StandIn()).param_groups}
    assert lrs == {"hidden": 0.05, "embed": 0.5, "vector": 0.05}
    bad = compose_cfg([*small_run_overrides(tmp_path / "bad", data_dir, "kick", steps=1), search,
                       "optimizer.kick=-1"])
    with pytest.raises(train.ConfigError, match=r"optimizer kick \(my_optim.KickSGD.*Invalid kick: -1"):
        train.train(bad)
    assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------------------------- keys the class does not take
def test_a_key_the_class_does_not_take_is_refused_before_any_work(tmp_path, data_dir):
    """optimizer=muon +optimizer.momentun=0.5 would train Muon with the key unread: refused (exit 2, the key,
    the closest key MuonMVR takes, no traceback, no run_dir made)."""
    args = small_run_overrides(tmp_path / "run", data_dir, "muon", steps=1)
    out = subprocess.run([sys.executable, str(REPO / "train.py"), *args, "+optimizer.momentun=0.5"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == train.EXIT_CONFIG, out.stderr[-2000:]
    assert "optimizer.momentun (did you mean momentum?)" in out.stderr, out.stderr
    assert "MuonMVR does not take" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_a_where_taken_key_the_class_does_not_take_is_noted(tmp_path, data_dir):
    """An experiment's setting for whichever optimizer runs (experiment=proxy's where_taken.embed_scale):
    GluonMVR gets it, MuonMVR and torch's AdamW do not, and train.log says so."""
    for name, taken in (("muon", False), ("adamw", False), ("gluon", True)):
        run = tmp_path / name
        cfg = compose_cfg(small_run_overrides(run, data_dir, name, steps=1,
                                              **{"+optimizer.where_taken.embed_scale": 500.0}))
        assert train.train(cfg)["completed"]
        note = "note: optimizer.where_taken.embed_scale not passed" in (run / "train.log").read_text()
        assert note != taken, name
        opt = train.build_optimizer(cfg.optimizer, train.StandIn())
        assert any(g.get("embed_scale") == 500.0 for g in opt.param_groups) == taken, name


def test_validation_micro_batch_adapts_to_the_validation_set(tmp_path, data_dir):
    """6 validation sequences with micro-batches of 4: validation uses micro-batches of 3 instead of
    refusing a micro_seqs the user never chose."""
    cfg = compose_cfg(small_run_overrides(tmp_path / "run", data_dir, "muon", steps=1,
                                          **{"data.val_tokens": 6 * 64}))
    assert train.train(cfg)["final_val_loss"] is not None


# ----------------------------------------------------------------------------- a geometry through a yaml
GEOMETRY_PLUGIN = """
import torch
from optim import Geometry, register_geometry


def frobenius(U, group):  # the Frobenius-norm LMO: the direction scaled to unit Frobenius norm
    return U / U.flatten(-2).norm(dim=-1).clamp_min(1e-12)[..., None, None]


def apply(X, D, group, shape):
    X.mul_(1 - group["lr"] * group["weight_decay"]).add_(D, alpha=-group["lr"] * group["radius"])


register_geometry(Geometry("frobenius", frobenius, apply, "matrix", defaults={"radius": 1.0}, min_ndim=2),
                  replace=True)
"""


def test_a_registered_geometry_trains_through_optimizer_lmos(tmp_path, data_dir, monkeypatch):
    """A geometry registered outside optim/ routes the hidden matrices by optimizer.lmos, no trainer edit;
    an unregistered name is refused naming the key."""
    (tmp_path / "my_geometry.py").write_text(GEOMETRY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    extra = {**AS_SHARDED, "+optimizer.estimator": "ema", "+optimizer.plugins": "[my_geometry]",
             "+optimizer.lmos": "{hidden:frobenius}", "+optimizer.radius": 2.0, "optimizer.lr": 0.01}
    cfg = compose_cfg(overrides_of(tmp_path / "run", data_dir, "gluon", 2, extra))
    assert train.train(cfg)["completed"]
    opt = train.build_optimizer(cfg.optimizer, GPT(GPTConfig(vocab_size=64, n_layer=1, n_head=1,
                                                                          head_dim=16, seq_len=8)))
    assert {g["name"]: g["lmo"] for g in opt.param_groups}["hidden"] == "frobenius"
    extra["+optimizer.lmos"] = "{hidden:nope}"
    bad = compose_cfg(overrides_of(tmp_path / "bad", data_dir, "gluon", 1, extra))
    with pytest.raises(train.ConfigError, match="optimizer.lmos.hidden='nope'.*registered geometry"):
        train.train(bad)
