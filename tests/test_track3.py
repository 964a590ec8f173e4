"""experiment=track3: modded-nanogpt's optimization track. The model's names, shapes, dtypes,
initialisation, soft-cap and rotary frequencies, and its loss against a hand-built float64 forward; the
sequential stream against a literal reading of the track's generator (across a shard boundary, on 2 ranks,
resumed); the schedule and the late validation cadence; per-group learning rates, the cubic Newton-Schulz
and the tuned baseline's step in float64; every optimizer config under the experiment; the track's protocol
as the experiment declares it and the verdict's CLI, which judges only runs that follow it (its formulas on
the track's own numbers: tests/test_stats.py)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers.trainer_utils import compose_cfg, small_run_overrides, write_test_shards
from omegaconf import OmegaConf

import train
from data.loader import TrainLoader
from data.shards import write_shard
from harness import rundir
from model_track3 import Track3Config, Track3GPT, half_rotary_frequencies
from optim import MuonMVR, build_param_groups, newton_schulz
from scripts import track3_verdict as tv
from study import protocol

TINY = dict(n_layer=2, n_head=2, head_dim=8, vocab_size=97, seq_len=16)


def tiny_track3(seed: int = 0) -> Track3GPT:
    torch.manual_seed(seed)
    return Track3GPT(Track3Config(**TINY))


# ----------------------------------------------------------------------------- the model
def expected_parameters(n_layer=12, d=768, vocab=50304):
    """The track's GPT as its script names it: (name, shape) in registration order."""
    out = [("embed.weight", (vocab, d))]
    for i in range(n_layer):
        b = f"blocks.{i}"
        for lin in ("q", "k", "v", "proj"):
            out += [(f"{b}.attn.{lin}.weight", (d, d)), (f"{b}.attn.{lin}.bias", (d,))]
        out += [(f"{b}.mlp.fc.weight", (4 * d, d)), (f"{b}.mlp.fc.bias", (4 * d,)),
                (f"{b}.mlp.proj.weight", (d, 4 * d)), (f"{b}.mlp.proj.bias", (d,)),
                (f"{b}.norm1.gains", (d,)), (f"{b}.norm2.gains", (d,))]
    return out + [("proj.weight", (vocab, d)), ("proj.bias", (vocab,)), ("norm1.gains", (d,)),
                  ("norm2.gains", (d,))]


def test_names_shapes_and_dtypes_are_the_tracks():
    with torch.device("meta"):
        model = train.build_model(compose_cfg(["experiment=track3"]))
    got = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    assert got == expected_parameters()
    assert model.num_params() == 162_354_816
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert dtypes.pop("embed.weight") == torch.bfloat16 and set(dtypes.values()) == {torch.float32}
    buffers = [n for n, _ in model.named_buffers()]
    assert buffers == [f"blocks.{i}.attn.rotary.angular_freq" for i in range(12)]  # saved in state dicts


def test_initialisation():
    torch.manual_seed(0)
    model = Track3GPT(Track3Config(**{**TINY, "n_head": 4, "head_dim": 32, "vocab_size": 2000}))
    for name, p in model.named_parameters():
        if name.endswith("bias") or "proj" in name:
            assert torch.count_nonzero(p) == 0, name  # attention out, MLP out and the head: zero
        elif name.endswith("gains"):
            assert torch.equal(p, torch.ones_like(p)), name
        elif name == "embed.weight":
            assert abs(p.float().std().item() - 1.0) < 0.02
        else:
            assert abs(p.std().item() / math.sqrt(0.33 / p.size(1)) - 1) < 0.1, name


def test_rotary_frequencies_and_soft_cap():
    f = half_rotary_frequencies(128)
    assert f.shape == (64,) and torch.equal(f[32:], torch.zeros(32))
    assert f[0] == 1.0 and abs(f[31].item() - 1 / 1024) < 1e-9
    assert torch.allclose(f[:32], (1 / 1024) ** torch.linspace(0, 1, 32))
    model = tiny_track3().double()
    with torch.no_grad():
        model.proj.weight.normal_(std=30.0)  # logits far beyond the cap
    logits, _ = model(torch.randint(0, 97, (2, 16)))
    assert logits.dtype == torch.float64 and logits.abs().max() < 15.0 and logits.abs().max() > 14.0


def reference_loss(sd: dict, idx: torch.Tensor, tgt: torch.Tensor, n_layer: int, n_head: int) -> torch.Tensor:
    """The track's forward written out from its description, in float64, from a state dict."""
    sd = {k: v.double() for k, v in sd.items()}

    def norm(x, gains=None):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + torch.finfo(x.dtype).eps) * (
            1 if gains is None else gains)

    def lin(x, name):
        return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]

    B, T = idx.shape
    x = norm(sd["embed.weight"][idx], sd["norm1.gains"])
    for i in range(n_layer):
        b = f"blocks.{i}"
        h = norm(x, sd[f"{b}.norm1.gains"])
        q, k, v = (lin(h, f"{b}.attn.{n}").view(B, T, n_head, -1) for n in "qkv")
        D = q.size(-1)
        freq = torch.cat([(1 / 1024) ** torch.linspace(0, 1, D // 4), torch.zeros(D // 4)]).double()
        theta = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
        cos, sin = theta.cos()[None, :, None, :], theta.sin()[None, :, None, :]

        q, k = (torch.cat([z[..., : D // 2] * cos + z[..., D // 2:] * sin,
                           -z[..., : D // 2] * sin + z[..., D // 2:] * cos], -1) for z in (norm(q), norm(k)))
        att = torch.einsum("bthd,bshd->bhts", q, k) * 0.12
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        y = torch.einsum("bhts,bshd->bthd", att, v).reshape(B, T, -1)
        x = x + lin(y, f"{b}.attn.proj")
        h = norm(x, sd[f"{b}.norm2.gains"])
        x = x + lin(torch.relu(lin(h, f"{b}.mlp.fc")) ** 2, f"{b}.mlp.proj")
    z = lin(norm(x, sd["norm2.gains"]), "proj")
    z = 15 * z / torch.sqrt(z**2 + 225)
    return F.cross_entropy(z.reshape(-1, z.size(-1)), tgt.reshape(-1), reduction="sum") / tgt.numel()


def test_loss_equals_a_hand_built_forward_of_a_track_state_dict():
    """A state dict keyed as the track writes it (random values, nothing zero) loads strictly and gives
    the loss of the architecture written out by hand: mean = the track's summed loss / tokens."""
    g = torch.Generator().manual_seed(1)
    model = tiny_track3()
    sd = {k: (torch.randn(v.shape, generator=g) * 0.3 + (1 if k.endswith("gains") else 0)).to(v.dtype)
          for k, v in model.state_dict().items() if not k.endswith("angular_freq")}
    sd.update({k: v for k, v in model.state_dict().items() if k.endswith("angular_freq")})
    model.load_state_dict(sd, strict=True)
    idx, tgt = torch.randint(0, 97, (3, 16), generator=g), torch.randint(0, 97, (3, 16), generator=g)
    want = reference_loss(model.state_dict(), idx, tgt, 2, 2)
    _, got64 = model.double()(idx, tgt)
    assert abs(got64.item() - want.item()) < 1e-10
    model = tiny_track3()
    model.load_state_dict(sd, strict=True)
    _, got = model(idx, tgt)  # as trained: bfloat16 activations after the bfloat16 embedding
    assert abs(got.item() - want.item()) < 0.02 * want.item()


def test_head_is_its_own_group_and_follows_the_embeddings_geometry():
    model = tiny_track3()
    for family, lmo in (("muon", "adamw"), ("gluon", "sign")):
        groups = {g["name"]: g for g in build_param_groups(model, family)}
        assert groups["head"]["params"] == [model.proj.weight] and groups["head"]["lmo"] == lmo
        assert groups["embed"]["params"] == [model.embed.weight]
        assert any(p is model.proj.bias for p in groups["vector"]["params"])


# ----------------------------------------------------------------------------- the data stream
def track_stream(shards: list[np.ndarray], batch: int, rank: int, world: int, steps: int):
    """The track's generator, read literally: next shard when pos + B + 1 >= len; rank slice of B/W + 1."""
    local = batch // world
    it = iter(shards)
    tokens, pos = next(it), 0
    for _ in range(steps):
        if pos + batch + 1 >= len(tokens):
            tokens, pos = next(it), 0
        buf = tokens[pos + rank * local:][: local + 1]
        yield buf[:-1], buf[1:]
        pos += batch


def test_sequential_order_is_the_tracks_stream(tmp_path):
    seq, seqs = 8, 4  # 32 tokens a step
    sizes = [33, 100, 70, 33, 150]  # B + 1 = 33: skipped where the stream starts, one step after a move
    rng = np.random.default_rng(0)
    shards = [rng.integers(0, 60000, n) for n in sizes]
    for i, t in enumerate(shards):
        write_shard(tmp_path / f"s_train_{i:06d}.bin", t, vocab_size=65536)
    steps = 0 + 3 + 2 + 1 + 4  # per shard: floor((n - B - 2) / B) + 1, at least 1 after a move
    for world in (1, 2):
        for rank in range(world):
            loader = TrainLoader(str(tmp_path / "s_train_*.bin"), seq, seqs, 2 // world, rank=rank,
                                 world_size=world, vocab_size=65536, sequential=True)
            for step, (x, y) in enumerate(track_stream(shards, seq * seqs, rank, world, steps)):
                got = loader.batch(step)
                assert np.array_equal(torch.cat([m[0] for m in got]).reshape(-1).numpy(), x), (world, step)
                assert np.array_equal(torch.cat([m[1] for m in got]).reshape(-1).numpy(), y), (world, step)
    state = loader.state_dict(step=5)
    again = TrainLoader(str(tmp_path / "s_train_*.bin"), seq, seqs, 1, rank=1, world_size=2,
                        vocab_size=65536, sequential=True)
    again.load_state_dict(state)
    assert again.step == 5 and torch.equal(again.next_batch()[0][0], loader.batch(5)[0][0])
    shuffled = TrainLoader(str(tmp_path / "s_train_*.bin"), seq, seqs, 1, rank=1, world_size=2,
                           vocab_size=65536)
    with pytest.raises(ValueError, match="sequential"):
        shuffled.load_state_dict(state)


def test_sequential_order_refuses_shards_smaller_than_a_step(tmp_path):
    write_shard(tmp_path / "s_train_000000.bin", np.arange(30), vocab_size=65536)
    with pytest.raises(ValueError, match="each step's 33 tokens from one shard"):
        TrainLoader(str(tmp_path / "s_train_*.bin"), 8, 4, 4, vocab_size=65536, sequential=True)


# ----------------------------------------------------------------------------- schedule and cadence
def test_schedule_is_the_tracks():
    tc = compose_cfg(["experiment=track3"]).train
    for step in range(tc.steps):
        progress = step / tc.steps
        want = 1.0 if progress < 0.3 else (1 - progress) / 0.7
        assert abs(train.lr_factor(step, tc) - want) < 1e-12, step
    assert train.lr_factor(974, tc) == 1.0 and train.lr_factor(3249, tc) == pytest.approx(1 / 2275)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_test_shards(tmp_path_factory.mktemp("shards"))


def test_late_validation_cadence(tmp_path, data_dir):
    cfg = compose_cfg(small_run_overrides(tmp_path / "r", data_dir, "muon", steps=10, **{
        "train.val_every": 4, "train.val_late_every": 1, "train.val_late_frac": 0.2}))
    train.train(cfg)
    steps = [r["step"] for r in rundir.read_metrics(tmp_path / "r") if r.get("val_loss") is not None]
    assert steps == [4, 8, 9, 10]


# ----------------------------------------------------------------------------- the optimizer
def test_cubic_newton_schulz_in_float64():
    G = torch.randn(5, 7, dtype=torch.float64)
    X = G.T / (G.norm() + 1e-7)  # rows > cols: transposed
    for _ in range(12):
        A = X @ X.T
        X = 2 * X + (-1.5 * A + 0.5 * A @ A) @ X
    got = newton_schulz(G, steps=12, dtype=torch.float64, coefficients=(2.0, -1.5, 0.5))
    assert torch.allclose(got, X.T, atol=1e-12)


def test_a_groups_learning_rate_in_float64():
    """optimizer.groups {embed: {lr: 0.7}}: the embedding steps as AdamW at lr 0.7 does; the rest at lr."""
    model = tiny_track3().double()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: torch.randn_like(p) for n, p in model.named_parameters()}

    def step(groups, lr):
        for n, p in model.named_parameters():
            p.data.copy_(base[n])
            p.grad = grads[n].clone()
        opt = MuonMVR(build_param_groups(model, "muon", overrides=groups), lr=lr, gamma=0.0, clip=False,
                      reference="none", ns_dtype=torch.float64)
        opt.step()
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    mixed, at_07, at_01 = step({"embed": {"lr": 0.7}}, 0.01), step({}, 0.7), step({}, 0.01)
    assert torch.equal(mixed["embed.weight"], at_07["embed.weight"])
    assert not torch.equal(at_07["embed.weight"], at_01["embed.weight"])
    for n in mixed:
        if n != "embed.weight":
            assert torch.equal(mixed[n], at_01[n]), n


def test_track3_muon_is_the_tuned_baseline_in_float64():
    """One step of optimizer=track3_muon equals the track's Muon and AdamW step written out by hand."""
    cfg = compose_cfg(["experiment=track3", "+optimizer.ns_dtype=float64"])
    model = tiny_track3().double()
    for p in model.parameters():
        p.data.normal_(std=0.5)
        p.grad = torch.randn_like(p)
    before = {n: (p.detach().clone(), p.grad.clone()) for n, p in model.named_parameters()}
    opt = train.build_optimizer(cfg.optimizer, model)
    opt.step()
    scale = 524288  # the track's summed gradient is this times ours
    for n, p in model.named_parameters():
        X, g = before[n]
        if p.ndim >= 2 and n.startswith("blocks."):  # Muon: lr 0.025, wd 0.05, Nesterov, 12 cubic NS
            u = g.lerp(0.05 * g, 0.95)  # momentum M_1 = 0.05 g; Nesterov g.lerp(M, 0.95)
            A, B = u.shape
            W = u.T if A > B else u
            W = W / (W.norm() + 1e-7)
            for _ in range(12):
                S = W @ W.T
                W = 2 * W + (-1.5 * S + 0.5 * S @ S) @ W
            O = W.T if A > B else W
            want = X * (1 - 0.025 * 0.05) - 0.025 * max(1, A / B) ** 0.5 * O
        else:  # AdamW (0.8, 0.95), eps 1e-10 on the summed gradient, wd 0.001
            lr = {"embed.weight": 0.7, "proj.weight": 0.004}.get(n, 0.015)
            G = g * scale
            m, v = 0.2 * G / 0.2, 0.05 * G * G / 0.05
            want = X * (1 - lr * 0.001) - lr * m / (v.sqrt() + 1e-10)
        assert torch.allclose(p.detach(), want, rtol=1e-9, atol=1e-12), n


# ----------------------------------------------------------------------------- every optimizer, one run
def test_every_optimizer_config_composes_under_track3():
    for opt in rundir.optimizer_names():
        cfg = compose_cfg(["experiment=track3", f"optimizer={opt}"])
        notes = train.check_before_work(cfg)
        two_pass = train.build_optimizer(cfg.optimizer, train.StandIn()).grad_evals_per_step == 2
        assert any("outside the rules of experiment track3" in n for n in notes) == two_pass, opt


def test_a_registered_estimator_runs_under_track3_with_the_tracks_routing():
    cfg = compose_cfg(["experiment=track3", "optimizer=gluon", "optimizer._target_=optim.ShardedOptimizer",
                       "~optimizer.variant", "+optimizer.estimator=storm", "optimizer.reference=prev_params",
                       "optimizer.lr=0.01", "optimizer.beta=0.9"])
    notes = train.check_before_work(cfg)
    assert any("outside the rules" in n for n in notes)  # STORM's exact reference: two passes a step
    model = tiny_track3()
    opt = train.build_optimizer(cfg.optimizer, model)
    assert {g["name"]: g["lmo"] for g in opt.param_groups} == {
        "hidden": "spectral", "embed": "adamw", "head": "adamw", "vector": "adamw"}


def test_a_small_track3_run_trains_and_resumes_exactly(tmp_path, data_dir):
    extra = {"model": "track3", "model.n_layer": 1, "model.n_head": 2, "model.head_dim": 16,
             "data.order": "sequential", "optimizer.adamw_eps": 1e-10, "figure.max_passes": 1}
    over = [o for o in small_run_overrides(tmp_path / "a", data_dir, "track3_muon", steps=6, **extra)]
    whole = train.train(compose_cfg(over))
    assert whole["completed"] and math.isfinite(whole["final_val_loss"])
    from helpers.trainer_utils import Crash, crash_after_checkpoint

    cut = [o.replace(str(tmp_path / "a"), str(tmp_path / "b")) for o in over]
    with crash_after_checkpoint(3), pytest.raises(Crash):
        train.train(compose_cfg(cut))
    resumed = train.train(compose_cfg(cut))
    a, b = (rundir.read_metrics(tmp_path / d) for d in "ab")
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert resumed["final_val_loss"] == whole["final_val_loss"]


# ----------------------------------------------------------------------------- the verdict
TRACK3 = ("experiment=track3",)
SHAKESPEARE_B4 = ("data=shakespeare", "batch.global_seqs=4")  # the quick start's data, at batch 4


@functools.lru_cache
def launched_config(launch: tuple[str, ...], optimizer: str, steps: int) -> dict:
    """The resolved config a `train.py <launch> optimizer=<optimizer> train.steps=<steps>` run writes."""
    cfg = compose_cfg([*launch, f"optimizer={optimizer}", f"train.steps={steps}"])
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def fake_track_run(d, optimizer: str, seed: int, steps: int, final: float, passes: int = 1, launch=TRACK3):
    """A finished run's folder: the config of `launch`, validation every 25 steps and at the end."""
    d.mkdir(parents=True)
    config = {**launched_config(launch, optimizer, steps), "seed": seed}
    (d / rundir.CONFIG).write_text(yaml.safe_dump(config))
    for s in range(1, steps + 1):
        val = {"val_loss": final + 0.0004 * (steps - s) / 25} if s % 25 == 0 or s == steps else {}
        rundir.append_metrics(d, dict(step=s, train_loss=4.0, grad_evals=s * passes, **val))
    rundir.write_summary(d, dict(completed=True, steps=steps))


def test_the_tracks_protocol_is_what_its_experiment_composes():
    """study/protocol.py reads the protocol from configs/experiment/track3.yaml (no second list): what it
    sets, the groups it picks, one pass a step; the optimizer, seed, step count and data paths are free."""
    track = protocol.protocol("track3")
    declared = yaml.safe_load((train.REPO / "configs/experiment/track3.yaml").read_text())
    assert track.max_passes == declared["figure"]["max_passes"] == 1
    for key in ("order", "val_tokens"):
        assert track.fixed[f"data.{key}"] == declared["data"][key]
    assert track.fixed["train.warmdown_frac"] == declared["train"]["warmdown_frac"]
    assert track.fixed["model._target_"] == "model_track3.Track3Config" and track.fixed["model.n_layer"] == 12
    assert track.fixed["batch.global_seqs"] == 512 and track.fixed["data.name"] == "fineweb10b"
    assert not [k for k in track.fixed if k.startswith(protocol.ENTRANT)]
    elsewhere = "data.train_files=/scratch/fw/fineweb_train_*.bin"
    entry = launched_config((*TRACK3, "seed=7", elsewhere, "train.ckpt_every=50", "batch.micro_seqs=16"),
                            "gluon_mvr1", 2000)
    assert protocol.first_difference(track, entry, passes=1) is None
    assert protocol.first_difference(track, entry, passes=2) == protocol.Difference(protocol.PASSES, 1, 2)


def test_first_difference_names_the_key_the_protocols_value_and_the_runs():
    fixed = {"model._target_": "m.C", "model.n_layer": 12, "batch.global_seqs": 512, "data.name": "fw"}
    proto = protocol.Protocol("x", fixed, 1)
    run = {"model": {"_target_": "m.C", "n_layer": 12}, "batch": {"global_seqs": 512, "micro_seqs": 8},
           "data": {"name": "fw", "train_files": "/elsewhere/*.bin"}, "optimizer": {"lr": 0.1}, "seed": 3,
           "train": {"steps": 100, "ckpt_every": 10}}
    assert protocol.first_difference(proto, run, passes=1) is None
    D = protocol.Difference
    assert protocol.first_difference(proto, run, passes=3) == D("gradient passes a step", 1, 3)
    small = {**run, "model": {"_target_": "m.C", "n_layer": 2}, "batch": {"global_seqs": 4}}
    assert protocol.first_difference(proto, small, passes=3) == D("model.n_layer", 12, 2)  # the first, only
    assert protocol.first_difference(proto, {**run, "data": {}}, 1) == D("data.name", "fw", protocol.ABSENT)
    added = {**run, "model": {"_target_": "m.C", "n_layer": 12, "n_head": 4}}
    assert protocol.first_difference(proto, added, 1) == D("model.n_head", protocol.ABSENT, 4)
    assert protocol.first_difference(protocol.Protocol("x", {}, None), run, passes=3) == D(
        "model._target_", protocol.ABSENT, "m.C")  # a key only the run has differs too
    free = {k: run[k] for k in ("optimizer", "seed", "train")} | {"data": {"train_files": "/x/*.bin"}}
    assert protocol.first_difference(protocol.Protocol("x", {}, None), free, passes=3) is None


def test_the_verdict_cli(tmp_path, capsys):
    for seed, loss in enumerate([3.2785, 3.2790, 3.2786, 3.2788]):
        fake_track_run(tmp_path / f"base_s{seed}", "track3_muon", seed, 300, loss)
    for seed, loss in enumerate([3.2740, 3.2750, 3.2745]):
        fake_track_run(tmp_path / f"mvr_s{seed}", "muon_mvr1", seed, 300, loss)
    fake_track_run(tmp_path / "two_s0", "muon_mvr2", 0, 300, 3.270, passes=2)
    assert tv.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| MuonMVR (MVR1) | 300 | 3 | 3.2745 ± 0.0005 | +0.00953 | yes | 275 |" in out
    assert "| Muon (track #36) | 300 | 4 | 3.2787 ± 0.0002 | +0.00255 | no | — |" in out
    assert "| MuonMVR (MVR1) | 300 | +0.00553 | yes |" in out
    # two passes a step: no verdict, listed with the rule it breaks (and still drawn)
    assert "| MuonMVR (MVR2) | 300 | 1 | gradient passes a step | 1 | 2 |" in out
    assert out.count("MuonMVR (MVR2)") == 1
    assert (tmp_path / "verdict.md").exists() and (tmp_path / "track3.png").exists()
    fake_track_run(tmp_path / "dup", "muon_mvr1", 0, 300, 3.27)
    assert tv.main([str(tmp_path)]) == tv.EXIT_REFUSED
    assert "are the same setting and seed 0" in capsys.readouterr().err


def test_the_verdict_judges_only_runs_that_follow_the_track(tmp_path, capsys):
    """One run of the track and a 3-step Shakespeare run at batch 4 (the one issue 29 saw judged): only
    the first gets a verdict; the other is listed with the first key that differs. Alone, it is refused."""
    fake_track_run(tmp_path / "track" / "mvr_s0", "muon_mvr1", 0, 300, 3.2740)
    fake_track_run(tmp_path / "quick" / "muon_s0", "muon", 0, 3, 9.3541, launch=SHAKESPEARE_B4)
    fake_track_run(tmp_path / "quick" / "b4_s0", "muon_mvr3", 0, 300, 3.2000, launch=(*TRACK3, "batch=b128"))
    assert tv.main([str(tmp_path), "--baseline", "muon_mvr1"]) == 0
    out = capsys.readouterr().out
    assert "| MuonMVR (MVR1) | 300 | 1 | 3.2740 | +0.00600 | yes | 275 |" in out
    assert "| Muon | 3 | 1 | model._target_ | model_track3.Track3Config | model.GPTConfig |" in out
    assert "| MuonMVR (MVR3) | 300 | 1 | batch.global_seqs | 512 | 128 |" in out
    assert "9.35" not in out and "3.2000" not in out  # neither has a verdict row, nor a pairwise one
    assert "Pairwise against MuonMVR (MVR1)" in out and out.count("| yes |") == 1
    assert (tmp_path / "verdict.md").read_text() in out
    assert tv.main([str(tmp_path), "--baseline", "muon"]) == tv.EXIT_REFUSED
    err = capsys.readouterr().err
    assert "baseline 'muon' does not follow experiment=track3: model._target_ is model.GPTConfig" in err
    assert tv.main([str(tmp_path / "quick")]) == tv.EXIT_REFUSED
    err = capsys.readouterr().err
    assert "no run here follows experiment=track3 (configs/experiment/track3.yaml)" in err
    assert "| Muon | 3 | 1 | model._target_ |" in err and not (tmp_path / "quick" / "verdict.md").exists()
