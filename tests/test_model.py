"""The GPT model: shapes, tied weights, GPT-124M's size and FLOPs, config validation, and the chunked
linear cross-entropy against the plain (B, T, V) logits path (values, gradients, memory, no_grad,
autocast, torch.compile)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import losses
from losses import chunked_linear_cross_entropy
from model import GPT, GPTConfig

V, T, B = 96, 16, 3  # small vocabulary, sequence and batch: N = 48 tokens


def tiny_cfg(**kw) -> GPTConfig:
    return GPTConfig(**{"vocab_size": V, "n_layer": 2, "n_head": 2, "head_dim": 8, "seq_len": T, **kw})


def tiny_model(dtype=torch.float32, seed=0, **kw) -> GPT:
    torch.manual_seed(seed)
    m = GPT(tiny_cfg(**kw)).to(dtype)
    with torch.no_grad():  # the zero-initialised projections would leave most gradients zero
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def batch(seed=1, ignore=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (B, T), generator=gen)
    y = torch.randint(0, V, (B, T), generator=gen)
    if ignore:
        y[0, :5] = -100  # F.cross_entropy's default ignore_index
        y[2, -1] = -100
    return x, y


def loss_and_grads(m: GPT, impl: str, x, y, autocast=None):
    m.cfg = dataclasses.replace(m.cfg, loss_impl=impl)
    m.zero_grad(set_to_none=True)
    with autocast or torch.autocast("cpu", enabled=False):
        logits, loss = m(x, y)
    loss.backward()
    return logits, loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters()}


def max_diff(a: dict, b: dict) -> float:
    return max((a[n] - b[n]).abs().max().item() for n in a)


# ----------------------------------------------------------------------------- shapes, weights, size
def test_shapes_and_return_values():
    m = tiny_model(loss_chunk=7)
    x, y = batch()
    logits, loss = m(x)
    assert logits.shape == (B, T, V) and logits.dtype == torch.float32 and loss is None
    logits, loss = m(x, y)  # chunked (the default): no logits
    assert logits is None and loss.shape == () and loss.dtype == torch.float32
    m.cfg = dataclasses.replace(m.cfg, loss_impl="plain")
    logits, loss = m(x, y)
    assert logits.shape == (B, T, V) and loss.shape == ()
    assert GPTConfig().loss_impl == "chunked" and GPTConfig().loss_chunk == 8192


def test_tied_weights_are_one_tensor():
    m = tiny_model()
    assert m.transformer.wte.weight is m.lm_head.weight
    assert sum(p is m.lm_head.weight for p in m.parameters()) == 1
    untied = GPT(tiny_cfg(tie_embeddings=False))
    assert untied.transformer.wte.weight is not untied.lm_head.weight
    assert not untied.lm_head.weight.any()
    assert untied.num_params() == m.num_params() + V * 16


def test_gpt124m_parameter_count_and_flops():
    """GPT-124M as the trainer builds it: configs/model/gpt124m.yaml (with the default GPT-2 vocabulary and
    the figure experiments' 1024-token sequences)."""
    import yaml

    path = Path(__file__).resolve().parents[1] / "configs" / "model" / "gpt124m.yaml"
    yaml_cfg = {k: v for k, v in yaml.safe_load(path.read_text()).items() if k not in ("name", "_target_")}
    with torch.device("meta"):
        m = GPT(GPTConfig(**yaml_cfg, seq_len=1024))
    c = m.cfg
    d, L = c.d_model, c.n_layer
    assert (c.vocab_size, L, c.n_head, c.head_dim, d, c.seq_len) == (50304, 12, 6, 128, 768, 1024)
    # tied embedding/head V·d, per layer 4 d² of attention and 2·4d·d of MLP; no biases or norm weights
    assert m.num_params() == 50304 * 768 + 12 * 12 * 768**2 == 123_568_128  # README: 123.57M
    assert m.flops_per_token() == 6 * 123_568_128 + 12 * L * c.n_head * c.head_dim * c.seq_len
    assert m.flops_per_token() == 854_654_976


@pytest.mark.parametrize(("kw", "key"), [
    ({"n_layer": 0}, "model.n_layer"),
    ({"n_head": 0}, "model.n_head"),
    ({"head_dim": 7}, "model.head_dim"),
    ({"head_dim": 0}, "model.head_dim"),
    ({"vocab_size": 1}, "model.vocab_size"),
    ({"seq_len": 0}, "data.seq_len"),
    ({"loss_impl": "fused"}, "model.loss_impl"),
    ({"loss_chunk": 0}, "model.loss_chunk"),
    ({"n_head": 2.0}, "model.n_head"),
])
def test_config_validation_names_the_key(kw, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")) as err:
        GPTConfig(**kw)
    assert "set " in str(err.value) or "choose " in str(err.value) or "integer" in str(err.value)


def test_config_error_lists_loss_impls():
    with pytest.raises(ValueError, match="chunked, plain, liger"):
        GPTConfig(loss_impl="Chunked")


def test_gpt124m_yaml_is_gptconfigs_defaults():
    """configs/model/gpt124m.yaml (the base of every GPT preset) and GPTConfig declare the same defaults."""
    import yaml

    path = Path(__file__).resolve().parents[1] / "configs" / "model" / "gpt124m.yaml"
    fields = {k: v for k, v in yaml.safe_load(path.read_text()).items() if k not in ("name", "_target_")}
    assert fields == {k: getattr(GPTConfig(), k) for k in fields}
    assert {"loss_impl", "loss_chunk", "vocab_size", "tie_embeddings"} <= set(fields)


# ----------------------------------------------------------------------------- model.* in the trainer
def test_each_model_config_builds_its_architecture():
    from helpers.trainer_utils import compose_cfg

    import train
    from model_track3 import Track3Config, Track3GPT

    for name, config_class, model_class in [("tiny", GPTConfig, GPT), ("proxy", GPTConfig, GPT),
                                            ("track3", Track3Config, Track3GPT)]:
        cfg = compose_cfg([f"model={name}"])
        assert type(train.model_config(cfg)) is config_class
        with torch.device("meta"):
            assert type(train.build_model(cfg)) is model_class
    tiny = train.model_config(compose_cfg(["model=tiny", "model.loss_impl=plain", "model.loss_chunk=64"]))
    assert (tiny.n_layer, tiny.vocab_size, tiny.loss_impl, tiny.loss_chunk) == (2, 50304, "plain", 64)


@pytest.mark.parametrize(("overrides", "message"), [
    (["+model.n_layr=3"], r"model\.n_layr is not a field of model\.GPTConfig: did you mean model\.n_layer\?"),
    (["model=track3", "+model.tie_embeddings=false"], r"model\.tie_embeddings is not a field of "
                                                      r"model_track3\.Track3Config"),
    (["model=track3", "model.head_dim=6"], r"model\.head_dim=6 is invalid: .* multiple of 4"),
    (["+model.seq_len=64"], r"model\.seq_len=64 is invalid: .* data\.seq_len"),
    (["model._target_=model.GPT"], r"model\._target_='model\.GPT' is invalid: not a model config class"),
    (["model._target_=nowhere.Config"], r"model\._target_='nowhere\.Config' is invalid: .*nowhere"),
    (["model._target_=GPTConfig"], r"model\._target_='GPTConfig' is invalid: .* module\.Class"),
    (["~model.vocab_size"], r"model\.vocab_size is missing"),
    (["model.n_layer=two"], r"model\.n_layer='two' is invalid: it must be an integer"),
    (["model.tie_embeddings=maybe"], r"model\.tie_embeddings='maybe' is invalid"),
])
def test_bad_model_keys_are_config_errors_naming_the_key(overrides, message):
    from helpers.trainer_utils import compose_cfg

    import train

    with pytest.raises(train.ConfigError, match=message):
        train.check_before_work(compose_cfg(overrides))


def test_a_misspelled_model_key_on_the_command_line_exits_2_with_the_fields(tmp_path):
    """Refused before Hydra composes (which would advise a + prefix), with the closest fields of the model
    config classes configs/model/ names; their real fields pass."""
    import subprocess
    import sys

    from harness.config import ConfigError, check_command_line

    check_command_line(["model=track3", "model.loss_impl=plain", "+model.mlp_ratio=2", "model.head_dim=64",
                        "model._target_=model.GPTConfig", "model.name=mine"])
    with pytest.raises(ConfigError, match=r"no key model\.loss_imp; did you mean model\.loss_impl\?"):
        check_command_line(["+model.loss_imp=plain"])
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(repo / "train.py"), "model.n_layr=3"], cwd=tmp_path, text=True,
                         capture_output=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(repo)))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "no key model.n_layr; did you mean model.n_layer?" in out.stderr and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_configs_saved_with_model_arch_read_as_model_target():
    """Run folders and checkpoints written before model.* named its class (model.arch) compare equal to
    today's config of the same model: a committed proxy run against its config composed today."""
    import yaml
    from helpers.trainer_utils import compose_cfg

    from harness.checkpoint import config_changes
    from harness.config import with_model_target

    saved = yaml.safe_load((Path(__file__).resolve().parents[1] / "results" / "proxy_ext" / "muon_m0.9_s1"
                            / "config.yaml").read_text())
    assert saved["model"]["arch"] == "gpt"
    now = compose_cfg(["experiment=proxy", "optimizer=muon"])
    assert not [k for k, _, _ in config_changes(saved, now) if k.startswith("model.")]
    old_track = {"model.arch": "track3", "model.tie_embeddings": False, "model.n_layer": 12}
    assert with_model_target(old_track) == {"model._target_": "model_track3.Track3Config",
                                            "model.n_layer": 12}
    assert with_model_target({"model.name": "tiny"})["model._target_"] == "model.GPTConfig"
    today = {"model._target_": "model.GPTConfig", "model.arch": "kept"}
    assert with_model_target(today) is today


# ----------------------------------------------------------------------------- the chunked loss
N_TOK = B * T


@pytest.mark.parametrize("chunk", [1, 7, N_TOK, N_TOK + 5])
def test_function_matches_f_cross_entropy_float64(chunk):
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(B, T, 24, dtype=torch.float64, generator=gen, requires_grad=True)
    W = torch.randn(V, 24, dtype=torch.float64, generator=gen, requires_grad=True)
    _, y = batch()
    ref = F.cross_entropy((h @ W.t()).view(-1, V), y.view(-1))
    gh, gW = torch.autograd.grad(ref, (h, W))
    loss = chunked_linear_cross_entropy(h, W, y, chunk)
    ch, cW = torch.autograd.grad(loss * 3.0, (h, W))  # backward scales by the incoming gradient
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(ch, 3 * gh, rtol=0, atol=1e-12)
    torch.testing.assert_close(cW, 3 * gW, rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 7, N_TOK, N_TOK + 5])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_model_chunked_matches_plain(chunk, dtype, tol):
    """Loss and the gradient of every parameter (the tied embedding/head included) of the whole GPT."""
    m = tiny_model(dtype, loss_chunk=chunk)
    x, y = batch()
    _, lp, gp = loss_and_grads(m, "plain", x, y)
    logits, lc, gc = loss_and_grads(m, "chunked", x, y)
    assert logits is None and lc.dtype == lp.dtype
    assert abs(lc.item() - lp.item()) <= tol
    assert set(gc) == set(gp) and "transformer.wte.weight" in gc
    assert max_diff(gc, gp) <= tol
    assert gp["transformer.wte.weight"].abs().max() > 1e-3  # the tied gradient is really compared


def test_all_targets_ignored_gives_nan_like_plain():
    m = tiny_model()
    x, _ = batch()
    y = torch.full((B, T), -100)
    _, lc = m(x, y)
    m.cfg = dataclasses.replace(m.cfg, loss_impl="plain")
    _, lp = m(x, y)
    assert lc.isnan() and lp.isnan()


def test_bf16_autocast_on_cpu_is_close_to_plain():
    m = tiny_model(loss_chunk=7)
    x, y = batch()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    _, lp, gp = loss_and_grads(m, "plain", x, y, autocast)
    _, lc, gc = loss_and_grads(m, "chunked", x, y, autocast)
    assert abs(lc.item() - lp.item()) <= 1e-3 * abs(lp.item())
    for n in gp:  # bf16-rounded products summed per chunk (chunked) or once (plain): ~ bf16 epsilon
        assert (gc[n] - gp[n]).norm() <= 1e-2 * gp[n].norm() + 1e-6, n
        assert gc[n].dtype == torch.float32


def test_no_gradients_under_no_grad(monkeypatch):
    calls = []
    real = losses._chunked_ce

    def spy(*args):
        calls.append(args[-2:])  # (need_h, need_W)
        return real(*args)

    monkeypatch.setattr(losses, "_chunked_ce", spy)
    m = tiny_model(loss_chunk=7)
    x, y = batch()
    m.eval()
    with torch.no_grad():
        _, loss = m(x, y)
    assert not loss.requires_grad and calls == [(False, False)]
    m.cfg = dataclasses.replace(m.cfg, loss_impl="plain")
    with torch.no_grad():
        _, ref = m(x, y)
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    # under no_grad the only matrix products are the chunks' logits, even for tensors requiring grad
    h, W = torch.randn(N_TOK, 16, requires_grad=True), torch.randn(V, 16, requires_grad=True)
    with OpLog() as log, torch.no_grad():
        chunked_linear_cross_entropy(h, W, torch.randint(0, V, (N_TOK,)), 7)
    assert sum(1 for name, _ in log.ops if name in ("mm", "addmm")) == -(-N_TOK // 7)
    calls.clear()
    m.cfg = dataclasses.replace(m.cfg, loss_impl="chunked")
    m.train()
    _, loss = m(x, y)  # with grad: both gradients formed in the forward
    assert loss.requires_grad and calls == [(True, True)]


class OpLog(TorchDispatchMode):
    """Every aten op's name and the largest numel among its tensor outputs."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat = out if isinstance(out, (tuple, list)) else [out]
        numel = max((t.numel() for t in flat if isinstance(t, torch.Tensor)), default=0)
        self.ops.append((func.overloadpacket.__name__, numel))
        return out


def test_memory_never_n_by_v():
    """With 8-token chunks no tensor made in forward or backward, and none saved for backward, has
    N × V elements: the largest is a chunk's logits (8 × V) or a (V, d) weight gradient."""
    vocab, d, n_tok = 2048, 16, 2 * 32
    m = GPT(GPTConfig(vocab_size=vocab, n_layer=1, n_head=2, head_dim=8, seq_len=32, loss_chunk=8))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, vocab, (2, 32), generator=gen), torch.randint(0, vocab, (2, 32), generator=gen)

    def measure(impl):
        m.cfg = dataclasses.replace(m.cfg, loss_impl=impl)
        saved: list[int] = []

        def pack(t):
            saved.append(t.numel())
            return t

        with OpLog() as log:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                _, loss = m(x, y)
            loss.backward()
        return max(n for _, n in log.ops), max(saved)

    made, saved = measure("chunked")
    assert made <= max(8 * vocab, vocab * d) < n_tok * vocab
    assert saved <= max(n_tok * d, vocab * d) < n_tok * vocab
    made_plain, saved_plain = measure("plain")
    assert made_plain >= n_tok * vocab and saved_plain >= n_tok * vocab  # the hooks do see (N, V)


def test_function_rejects_bad_shapes():
    h, W = torch.randn(4, 8), torch.randn(10, 8)
    with pytest.raises(ValueError, match="targets"):
        chunked_linear_cross_entropy(h, W, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(V, d\)"):
        chunked_linear_cross_entropy(h, torch.randn(10, 7), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk"):
        chunked_linear_cross_entropy(h, W, torch.zeros(4, dtype=torch.long), chunk=0)


# ----------------------------------------------------------------------------- liger (optional)
def test_liger_on_cpu_says_use_chunked():
    m = tiny_model(loss_impl="liger")
    x, y = batch()
    with pytest.raises(RuntimeError, match="model.loss_impl=chunked"):
        m(x, y)
    logits, loss = m(x)  # no targets: logits as usual
    assert logits.shape == (B, T, V) and loss is None


def test_liger_missing_package_error():
    try:
        import liger_kernel  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"liger-kernel.*\.\[liger\].*loss_impl=chunked"):
            losses._liger_loss_class()
    else:
        pytest.skip("liger-kernel is installed")


# ----------------------------------------------------------------------------- torch.compile
def _compiled_matches_eager(backend: str, fullgraph: bool):
    torch._dynamo.reset()
    m = tiny_model(loss_chunk=7, n_layer=1)
    x, y = batch()
    _, le, ge = loss_and_grads(m, "chunked", x, y)
    compiled = torch.compile(m, backend=backend, fullgraph=fullgraph)
    compiled.zero_grad(set_to_none=True)
    logits, lc = compiled(x, y)
    lc.backward()
    assert logits is None
    assert abs(lc.item() - le.item()) <= 1e-5
    assert max_diff({n: p.grad for n, p in m.named_parameters()}, ge) <= 1e-5


def test_dynamo_traces_the_chunked_loss_in_one_graph():
    """fullgraph=True: dynamo traces the autograd.Function without a graph break (AOT autograd, no
    code generation, a few seconds)."""
    _compiled_matches_eager("aot_eager", fullgraph=True)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RUN_INDUCTOR_CPU"),
                    reason="inductor code generation on CPU takes ~40 s of the 2-core CI budget; set "
                    "RUN_INDUCTOR_CPU=1 (the gpu tier compiles on CUDA)")
def test_torch_compile_inductor_forward_backward_cpu():
    """The trainer's torch.compile(model) with inductor on CPU (tens of seconds)."""
    _compiled_matches_eager("inductor", fullgraph=False)


# ----------------------------------------------------------------------------- the benchmark
def test_bench_loss_tiny_cpu(capsys):
    import bench_loss

    out = bench_loss.main(["--device", "cpu", "--tokens", "256", "--vocab", "512", "--d", "64",
                           "--repeats", "1", "--warmup", "0", "--chunk", "64"])
    assert out["plain"]["ms"] > 0 and out["chunked"]["ms"] > 0
    assert out["ratio"]["analytic_bytes"] == 0.25
    assert "chunked / plain: time" in capsys.readouterr().out


@pytest.mark.parametrize(("preset", "layers", "width", "params"), [
    ("gpt2_medium", 24, 1024, 353_501_184),
    ("gpt2_large", 36, 1280, 772_177_920),
    ("gpt2_xl", 48, 1600, 1_555_046_400),
])
def test_gpt2_size_presets_have_gpt2s_layers_widths_and_parameter_counts(preset, layers, width, params):
    """configs/model/gpt2_{medium,large,xl}.yaml as the trainer composes them (built on the meta device):
    GPT-2's layer counts and widths, 64-dimensional heads, tied embedding; V·d + 12·L·d² parameters
    (GPT-2's own counts, 355M / 774M / 1.56B, also hold biases, LayerNorm gains and position embeddings)."""
    from helpers.trainer_utils import compose_cfg

    import train

    cfg = compose_cfg([f"model={preset}", "data=synthetic"])
    with torch.device("meta"):
        m = train.build_model(cfg)
    c = m.cfg
    assert (c.n_layer, c.d_model, c.head_dim, c.vocab_size) == (layers, width, 64, 50304)
    assert m.num_params() == 50304 * width + 12 * layers * width**2 == params
