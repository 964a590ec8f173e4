"""GPT in the papers' setting: the modded-nanogpt October-2024 architecture used by the Scion/Gluon code.

12 layers, d_model 768, 6 heads of 128, rotary position embeddings, RMSNorm (no weights) before every
block and on queries and keys, ReLU² MLP, zero-initialised output projections, tied embedding and head,
vocabulary padded to 50304, sequence length 1024. Sources: modded-nanogpt record 2024-10-14
"ModernArch" and LIONS-EPFL/scion `examples/modded-nanogpt` (which ties the head and scales ReLU² by
sqrt(2)); see README "Assumptions". One file, no training logic.

The training loss (``GPTConfig.loss_impl``) is by default ``chunked_linear_cross_entropy``, which never
materialises the (B, T, V) float32 logits: 64 × 1024 × 50304 of them are 12.3 GiB, plus their gradient.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LOSS_IMPLS = ("chunked", "plain", "liger")
ARCHS = ("gpt", "track3")  # this file's GPT | modded-nanogpt's optimization-track GPT (`Track3GPT`)


@dataclass
class GPTConfig:
    vocab_size: int = 50304  # GPT-2's 50257 padded to a multiple of 128
    n_layer: int = 12
    n_head: int = 6
    head_dim: int = 128
    seq_len: int = 1024
    tie_embeddings: bool = True
    mlp_ratio: int = 4
    act_gain: float = math.sqrt(2.0)  # ReLU² of (act_gain · x); Scion's GPT uses sqrt(2)
    rope_base: float = 10000.0
    loss_impl: str = "chunked"  # chunked (never materialises (B, T, V) logits) | plain | liger
    loss_chunk: int = 8192  # tokens per chunk of the chunked loss
    arch: str = "gpt"  # gpt (GPT) | track3 (Track3GPT: its own norms, biases, rotary and soft-capped loss)

    def __post_init__(self) -> None:
        """Checks every field; the errors name the key as the trainer's config spells it, and the fix."""

        def need(ok: bool, field: str, fix: str) -> None:
            if not ok:
                key = "data.seq_len" if field == "seq_len" else f"model.{field}"
                raise ValueError(f"{key}={getattr(self, field)!r} is invalid: {fix}")

        for field in ("vocab_size", "n_layer", "n_head", "head_dim", "seq_len", "mlp_ratio", "loss_chunk"):
            value = getattr(self, field)
            need(isinstance(value, numbers.Integral) and not isinstance(value, bool), field,
                 "it must be an integer")
        need(self.n_layer >= 1, "n_layer", "set model.n_layer to 1 or more")
        need(self.n_head >= 1, "n_head", "set model.n_head to 1 or more")
        need(self.head_dim >= 2 and self.head_dim % 2 == 0, "head_dim",
             "rotary embeddings rotate pairs of channels; set model.head_dim to an even number >= 2")
        need(self.vocab_size >= 2, "vocab_size", "set model.vocab_size to 2 or more (GPT-2: 50304)")
        need(self.seq_len >= 1, "seq_len", "set data.seq_len to 1 or more")
        need(self.mlp_ratio >= 1, "mlp_ratio", "set model.mlp_ratio to 1 or more")
        need(self.loss_impl in LOSS_IMPLS, "loss_impl",
             f"choose model.loss_impl from {', '.join(LOSS_IMPLS)} (default chunked)")
        need(self.loss_chunk >= 1, "loss_chunk",
             "set model.loss_chunk to the number of tokens per chunk, 1 or more (default 8192)")
        need(self.arch in ARCHS, "arch", f"choose model.arch from {', '.join(ARCHS)}")
        if self.arch == "track3":
            need(not self.tie_embeddings, "tie_embeddings",
                 "the track's GPT has a separate embedding and output head: set model.tie_embeddings=false")
            need(self.loss_impl == "plain", "loss_impl",
                 "the track's GPT soft-caps its float32 logits before the loss: set model.loss_impl=plain")
            need(self.head_dim % 4 == 0, "head_dim",
                 "the track's rotary embedding turns a quarter of each head's channel pairs: a multiple of 4")

    @property
    def d_model(self) -> int:
        return self.n_head * self.head_dim


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


class Rotary(nn.Module):
    """cos/sin tables for rotary embeddings, built once for the maximum sequence length."""

    def __init__(self, head_dim: int, seq_len: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)  # (T, D/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, H, T, D)
        T = x.size(-2)
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d = cfg.d_model
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.c_q = nn.Linear(d, d, bias=False)
        self.c_k = nn.Linear(d, d, bias=False)
        self.c_v = nn.Linear(d, d, bias=False)
        self.c_proj = nn.Linear(d, d, bias=False)
        self.c_proj.weight.data.zero_()
        self.rotary = Rotary(cfg.head_dim, cfg.seq_len, cfg.rope_base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        shape = (B, T, self.n_head, self.head_dim)
        q = self.c_q(x).view(shape).transpose(1, 2)  # (B, H, T, D)
        k = self.c_k(x).view(shape).transpose(1, 2)
        v = self.c_v(x).view(shape).transpose(1, 2)
        q, k = self.rotary(rms_norm(q)), self.rotary(rms_norm(k))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # flash kernels on GPU
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))  # copies only if not (B, T, H, D)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d = cfg.d_model
        self.act_gain = cfg.act_gain
        self.c_fc = nn.Linear(d, cfg.mlp_ratio * d, bias=False)
        self.c_proj = nn.Linear(cfg.mlp_ratio * d, d, bias=False)
        self.c_proj.weight.data.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.relu(self.act_gain * self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attn = CausalSelfAttention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(rms_norm(x))
        return x + self.mlp(rms_norm(x))


# ----------------------------------------------------------------------------- the loss
IGNORE_INDEX = -100  # F.cross_entropy's default: such targets count neither in the sum nor in N


def _upcast(z: torch.Tensor) -> torch.Tensor:
    """The plain path's ``.float()`` on the logits; float64 stays float64 (the exactness tests run in it)."""
    return z if z.dtype == torch.float64 else z.float()


def _matmul_dtype(h: torch.Tensor, W: torch.Tensor) -> torch.dtype:
    """The dtype ``F.linear(h, W)`` computes in here: autocast's where it is on, else the promoted dtype."""
    dtype = torch.promote_types(h.dtype, W.dtype)
    dev = h.device.type
    if dtype != torch.float64 and torch.amp.is_autocast_available(dev) and torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)  # autocast leaves float64 alone, and so does this
    return dtype


def _chunked_ce(h, W, targets, chunk: int, ignore_index: int, dtype: torch.dtype, need_h: bool,
                need_W: bool):
    """(mean loss, dℓ/dh or None, dℓ/dW or None) of ``chunked_linear_cross_entropy``, ``chunk`` tokens at a
    time; the gradients only where asked for. h: (N, d), W: (V, d), targets: (N,)."""
    valid = targets != ignore_index
    n_valid = valid.sum()  # a tensor: no host sync; 0 valid tokens give 0/0 = nan, as F.cross_entropy
    safe = torch.where(valid, targets, 0).unsqueeze(1)  # an index in range for ignored rows (weight 0)
    hc, Wc = h.to(dtype), W.to(dtype)  # what autocast would hand F.linear; no copy where dtypes agree
    grad_h = torch.empty_like(h) if need_h else None  # every row is written below
    grad_W = None  # accumulated in float32 (float64 stays), returned in W's dtype
    loss = None
    for s in range(0, h.size(0), chunk):
        h_s, y_s = hc[s : s + chunk], safe[s : s + chunk]
        z = _upcast(h_s @ Wc.t())  # (c, V) logits of this chunk, as the plain path's lm_head(..).float()
        lse = torch.logsumexp(z, dim=1)
        w = valid[s : s + chunk].to(z.dtype) / n_valid  # 1/N for counted tokens, 0 for ignored ones
        part = ((lse - z.gather(1, y_s).squeeze(1)) * w).sum()
        loss = part if loss is None else loss + part
        if not (need_h or need_W):
            continue
        p = z.sub_(lse.unsqueeze(1)).exp_()  # softmax(z), in place: z is not needed any more
        p.scatter_(1, y_s, p.gather(1, y_s) - 1)  # − onehot(y)
        g = p.mul_(w.unsqueeze(1)).to(dtype)  # ∂ℓ/∂z, cast to the matmul dtype as autograd's would be
        del z, p
        if need_h:
            grad_h[s : s + chunk] = g @ Wc
        if need_W:
            if grad_W is None:
                grad_W = _upcast(g.t() @ h_s)
            elif grad_W.dtype == dtype:
                grad_W.addmm_(g.t(), h_s)
            else:
                grad_W += g.t() @ h_s  # a bf16 product, summed over chunks in float32
    return loss, grad_h, None if grad_W is None else grad_W.to(W.dtype)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and its gradients chunk by chunk; backward only scales them."""

    @staticmethod
    def forward(ctx, h, W, targets, chunk, ignore_index, dtype, need_h, need_W):
        loss, grad_h, grad_W = _chunked_ce(h, W, targets, chunk, ignore_index, dtype, need_h, need_W)
        ctx.save_for_backward(grad_h, grad_W)  # (N, d) and (V, d): never (N, V)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        grad_h, grad_W = ctx.saved_tensors
        return (None if grad_h is None else grad_h * grad_loss,
                None if grad_W is None else grad_W * grad_loss,
                None, None, None, None, None, None)


def chunked_linear_cross_entropy(h: torch.Tensor, W: torch.Tensor, targets: torch.Tensor,
                                 chunk: int = 8192, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    r"""Mean cross-entropy of the logits z = h Wᵀ, never holding more than ``chunk`` tokens' logits.

    h: (..., d) hidden states, W: (V, d) head weight, targets: (...) token ids; tokens whose target is
    ``ignore_index`` count neither in the sum nor in N (as ``F.cross_entropy``). With N counted tokens

        ℓ = (1/N) Σ_i [logsumexp_v(z_iv) − z_{i,y_i}],   z = h Wᵀ,
        ∂ℓ/∂z = (softmax(z) − onehot(y)) / N,   ∂ℓ/∂h = (∂ℓ/∂z) W,   ∂ℓ/∂W = (∂ℓ/∂z)ᵀ h.

    The forward runs over chunks of ``chunk`` tokens: each chunk's logits are computed in the matmul dtype
    (autocast's, e.g. bf16, else that of h and W) and upcast to float32 exactly as the plain path's
    ``lm_head(h).float()``; when autograd will need them, ∂ℓ/∂h for the chunk and its share of ∂ℓ/∂W are
    formed right away. Extra memory is O(chunk × V) while running and O(N × d + V × d) kept for backward,
    which only multiplies the stored gradients by the incoming scalar. Under ``torch.no_grad()`` (or when
    neither h nor W requires grad) no gradient is computed or kept. A tied W (also the embedding) gets
    this gradient added to the embedding's by autograd as usual. Not twice differentiable.
    """
    if W.dim() != 2 or W.size(1) != h.size(-1):
        raise ValueError(f"W must be (V, d) with d = h.size(-1) = {h.size(-1)}; got {tuple(W.shape)}")
    if targets.shape != h.shape[:-1]:
        raise ValueError(f"targets {tuple(targets.shape)} must have h's leading shape {tuple(h.shape[:-1])}")
    if chunk < 1:
        raise ValueError(f"chunk={chunk} must be 1 or more tokens")
    h, targets = h.reshape(-1, h.size(-1)), targets.reshape(-1)
    dtype = _matmul_dtype(h, W)
    grad = torch.is_grad_enabled()
    need_h, need_W = grad and h.requires_grad, grad and W.requires_grad
    if not (need_h or need_W):
        return _chunked_ce(h, W, targets, chunk, ignore_index, dtype, False, False)[0]
    return _ChunkedLinearCrossEntropy.apply(h, W, targets, chunk, ignore_index, dtype, need_h, need_W)


def _liger_loss_class():
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError as e:
        raise RuntimeError("model.loss_impl=liger needs the optional package liger-kernel, which is not "
                           "importable: pip install -e '.[liger]' (or pip install liger-kernel), or use "
                           "model.loss_impl=chunked") from e
    return LigerFusedLinearCrossEntropyLoss


def liger_linear_cross_entropy(h: torch.Tensor, W: torch.Tensor, targets: torch.Tensor,
                               ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """The same loss through Liger-Kernel's fused linear cross-entropy (optional extra, CUDA only)."""
    if h.device.type != "cuda":
        raise RuntimeError(f"model.loss_impl=liger runs Liger-Kernel's Triton kernels, which need CUDA "
                           f"tensors (these are on {h.device.type}); use model.loss_impl=chunked here")
    loss_cls = _liger_loss_class()
    dtype = _matmul_dtype(h, W)
    with torch.autocast("cuda", enabled=False):  # cast here, as autocast would for the plain F.linear
        out = loss_cls(ignore_index=ignore_index)(  # its forward takes (weight, input, target)
            W.to(dtype), h.reshape(-1, h.size(-1)).to(dtype), targets.reshape(-1))
    return _upcast(out[0] if isinstance(out, tuple) else out)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.d_model),
                h=nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer)),
            )
        )
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.transformer.wte.weight = self.lm_head.weight  # one tensor, Linear's init
        else:
            self.lm_head.weight.data.zero_()

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx, targets: (B, T) token ids (targets -100 are ignored). Returns (logits, loss).

        logits (B, T, V) float32 (float64 in a float64 model) are returned only when targets is None
        (loss None) or ``cfg.loss_impl == "plain"``; with targets and loss_impl "chunked" or "liger" the
        result is (None, mean token loss) and no (B, T, V) tensor exists at any point.
        """
        x = self.transformer.wte(idx)  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        x = rms_norm(x)
        impl = self.cfg.loss_impl
        if targets is None or impl == "plain":
            logits = _upcast(self.lm_head(x))
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
            return logits, loss
        if impl == "chunked":
            return None, chunked_linear_cross_entropy(x, self.lm_head.weight, targets, self.cfg.loss_chunk)
        return None, liger_linear_cross_entropy(x, self.lm_head.weight, targets)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N for the matmuls plus the attention scores (PaLM appendix B)."""
        c = self.cfg
        return 6 * self.num_params() + 12 * c.n_layer * c.n_head * c.head_dim * c.seq_len


# ----------------------------------------------------------------------------- model=track3
# modded-nanogpt's optimization track (records/track_3_optimization, result #36's train_gpt_simple.py): the
# fixed GPT every entry trains. Parameter names and shapes are the track's, so its state dicts load with
# strict=True. Facts from that script; the code is ours.
class GainRMSNorm(nn.Module):
    """RMSNorm with a learnable gain per channel (``gains``), in the input's dtype."""

    def __init__(self, dim: int):
        super().__init__()
        self.gains = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.size(-1),), weight=self.gains.to(x.dtype))


class CastLinear(nn.Linear):
    """A linear layer with a bias whose weight and bias are cast to the input's dtype (bfloat16 after the
    track's bfloat16 embedding, whatever the parameters' own dtype)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__(d_in, d_out, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


def half_rotary_frequencies(head_dim: int) -> torch.Tensor:
    """The track's angular frequencies: ``(1/1024) ** linspace(0, 1, head_dim/4)``, then ``head_dim/4``
    zeros, so half of each head's channel pairs are rotated and half pass through."""
    q = head_dim // 4
    return torch.cat([(1 / 1024) ** torch.linspace(0, 1, steps=q, dtype=torch.float32), torch.zeros(q)])


def half_rotary(x: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, T, H, D) by position t: with θ = t·freq and x = (x1, x2) halves of D,
    ``(x1 cos θ + x2 sin θ, −x1 sin θ + x2 cos θ)``, computed in float32 (float64 for float64 input) and
    returned in x's dtype."""
    f = _upcast(freq.to(x.device))  # float32 (float64 in a float64 model)
    theta = torch.outer(torch.arange(x.size(1), dtype=f.dtype, device=x.device), f)[None, :, None, :]
    cos, sin = theta.cos(), theta.sin()
    x1, x2 = _upcast(x).chunk(2, dim=-1)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1).type_as(x)


class HalfRotary(nn.Module):
    """`half_rotary` with its frequencies in a saved buffer ``angular_freq`` (the track's state-dict key)."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.register_buffer("angular_freq", half_rotary_frequencies(head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return half_rotary(x, self.angular_freq)


class Track3Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d, self.n_head, self.head_dim = cfg.d_model, cfg.n_head, cfg.head_dim
        self.q, self.k, self.v = CastLinear(d, d), CastLinear(d, d), CastLinear(d, d)
        self.proj = CastLinear(d, d)
        self.rotary = HalfRotary(cfg.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        shape = (B, T, self.n_head, self.head_dim)
        q, k, v = self.q(x).view(shape), self.k(x).view(shape), self.v(x).view(shape)
        q, k = rms_norm(q), rms_norm(k)  # QK-norm without a gain
        q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True, scale=TRACK3_ATTN_SCALE)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Track3MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d = cfg.d_model
        self.fc, self.proj = CastLinear(d, cfg.mlp_ratio * d), CastLinear(cfg.mlp_ratio * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.relu(self.fc(x)).square())


class Track3Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attn, self.mlp = Track3Attention(cfg), Track3MLP(cfg)
        self.norm1, self.norm2 = GainRMSNorm(cfg.d_model), GainRMSNorm(cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


TRACK3_ATTN_SCALE = 0.12  # the attention logits' scale (not 1/sqrt(head_dim))
TRACK3_SOFTCAP = 15.0  # logits z become 15 z / sqrt(z² + 15²)
TRACK3_INIT_VAR = 0.33  # weights other than the embedding and the projections: N(0, 0.33 / fan_in)


class Track3GPT(nn.Module):
    """The optimization track's GPT (``model=track3``): bfloat16 embedding ``embed`` → RMSNorm ``norm1`` →
    blocks (pre-norm attention with separate q, k, v, QK-norm and half rotary; ReLU² MLP; every linear
    has a bias) → RMSNorm ``norm2`` → head ``proj`` → float32 logits soft-capped as
    ``15 z / sqrt(z² + 15²)`` → cross-entropy. The track sums the loss over tokens; this returns the
    mean (the trainer's convention; README, "The optimization track", says what that changes)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d).to(torch.bfloat16)
        self.blocks = nn.ModuleList(Track3Block(cfg) for _ in range(cfg.n_layer))
        self.proj = CastLinear(d, cfg.vocab_size)
        self.norm1, self.norm2 = GainRMSNorm(d), GainRMSNorm(d)
        self.reset_parameters()

    @property
    def lm_head(self) -> nn.Module:
        """The output head (optim/param_groups.py routes it as the head group)."""
        return self.proj

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The track's initialisation: weights named ``*proj*`` (attention out, MLP out, the head) zero;
        the embedding N(0, 1); every other weight N(0, 0.33 / fan_in); biases zero; gains one."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif name.endswith("gains"):
                p.fill_(1.0)
            elif "proj" in name:
                p.zero_()
            elif name.startswith("embed"):
                p.normal_()
            else:
                p.normal_(std=(TRACK3_INIT_VAR / p.size(-1)) ** 0.5)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx, targets: (B, T). Returns (soft-capped float32 logits, None) without targets, else
        (None, mean token loss)."""
        x = self.norm1(self.embed(idx))
        for block in self.blocks:
            x = block(x)
        z = _upcast(self.proj(self.norm2(x)))  # float32 (float64 in a float64 model)
        logits = TRACK3_SOFTCAP * z * torch.rsqrt(z.square() + TRACK3_SOFTCAP**2)
        if targets is None:
            return logits, None
        return None, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N for the matmuls plus the attention scores (PaLM appendix B)."""
        c = self.cfg
        return 6 * self.num_params() + 12 * c.n_layer * c.n_head * c.head_dim * c.seq_len


def build_gpt(cfg: GPTConfig) -> nn.Module:
    """The model ``cfg.arch`` names."""
    return Track3GPT(cfg) if cfg.arch == "track3" else GPT(cfg)
