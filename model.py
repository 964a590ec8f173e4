"""GPT in the papers' setting: the modded-nanogpt October-2024 architecture used by the Scion/Gluon code.

12 layers, d_model 768, 6 heads of 128, rotary position embeddings, RMSNorm (no weights) before every
block and on queries and keys, ReLU² MLP, zero-initialised output projections, tied embedding and head,
vocabulary padded to 50304, sequence length 1024. Sources: modded-nanogpt record 2024-10-14
"ModernArch" and LIONS-EPFL/scion `examples/modded-nanogpt` (which ties the head and scales ReLU² by
sqrt(2)); see README "Assumptions". One architecture, no training logic; the optimization track's GPT is
model_track3.py, the losses losses.py.

The training loss (``GPTConfig.loss_impl``) is by default losses.py's ``chunked_linear_cross_entropy``,
which never materialises the (B, T, V) float32 logits.

Shared with every architecture here: `LanguageModel` (parameter count, FLOPs per token, the output head's
name), `rms_norm`, `rotate_halves` (the rotary rotation) and the config checks (`check_integers`,
`config_error`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from losses import LOSS_IMPLS, chunked_linear_cross_entropy, liger_linear_cross_entropy, upcast


# ----------------------------------------------------------------------------- shared by the architectures
def config_key(field: str) -> str:
    """A model config field as the trainer's config spells it: ``data.seq_len``, else ``model.<field>``."""
    return "data.seq_len" if field == "seq_len" else f"model.{field}"


def config_error(cfg, field: str, fix: str) -> ValueError:
    """The error for a bad field of a model config, naming the key, the value and the fix."""
    return ValueError(f"{config_key(field)}={getattr(cfg, field)!r} is invalid: {fix}")


def check_integers(cfg, minima: dict[str, int]) -> None:
    """Each field of ``minima`` must be an integer (not a bool) of at least its minimum."""
    for field, lo in minima.items():
        value = getattr(cfg, field)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise config_error(cfg, field, "it must be an integer")
        if value < lo:
            raise config_error(cfg, field, f"set {config_key(field)} to {lo} or more")


class LanguageModel(nn.Module):
    """What the trainer reads of every architecture: ``cfg`` (n_layer, n_head, head_dim, seq_len), the
    parameter count, the training FLOPs per token, ``loss_impl`` (for the log) and ``output_head``: the
    name of the attribute that holds an untied output head (optim/param_groups.py routes its parameters
    as the head group)."""

    output_head = "lm_head"
    loss_impl: str  # how the training loss is computed: one of losses.LOSS_IMPLS

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once

    def shard_units(self) -> list[nn.Module]:
        """The repeated blocks: under ``sharding=fsdp2`` each is one ``fully_shard`` unit (its weights are
        gathered for its forward and backward only); the root holds the rest (harness/sharding.py)."""
        raise NotImplementedError(f"{type(self).__name__} does not name its blocks (shard_units)")

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N for the matmuls plus the attention scores (PaLM appendix B)."""
        c = self.cfg
        return 6 * self.num_params() + 12 * c.n_layer * c.n_head * c.head_dim * c.seq_len


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rotate_halves(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotary rotation: with x = (x1, x2) the halves of its last dimension,
    ``(x1 cos + x2 sin, x2 cos − x1 sin)``."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


# ----------------------------------------------------------------------------- the papers' GPT
@dataclass
class GPTConfig:
    """model.* of the papers' GPT (configs/model/gpt124m.yaml and the smaller presets); `build` makes it."""

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

    def __post_init__(self) -> None:
        """Checks every field; the errors name the key as the trainer's config spells it, and the fix."""
        check_integers(self, {"n_layer": 1, "n_head": 1, "head_dim": 2, "vocab_size": 2, "seq_len": 1,
                              "mlp_ratio": 1, "loss_chunk": 1})
        if self.head_dim % 2:
            raise config_error(self, "head_dim", "rotary embeddings rotate pairs of channels; set "
                               "model.head_dim to an even number >= 2")
        if not isinstance(self.tie_embeddings, bool):
            raise config_error(self, "tie_embeddings", "set model.tie_embeddings to true or false")
        for field in ("act_gain", "rope_base"):
            if not isinstance(getattr(self, field), numbers.Real) or isinstance(getattr(self, field), bool):
                raise config_error(self, field, "it must be a number")
        if self.loss_impl not in LOSS_IMPLS:
            raise config_error(self, "loss_impl",
                               f"choose model.loss_impl from {', '.join(LOSS_IMPLS)} (default chunked)")

    @property
    def d_model(self) -> int:
        return self.n_head * self.head_dim

    def build(self) -> GPT:
        return GPT(self)


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
        return rotate_halves(x, self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype))


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


class GPT(LanguageModel):
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

    @property
    def loss_impl(self) -> str:
        return self.cfg.loss_impl

    def shard_units(self) -> list[nn.Module]:
        return list(self.transformer.h)

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
            logits = upcast(self.lm_head(x))
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
            return logits, loss
        if impl == "chunked":
            return None, chunked_linear_cross_entropy(x, self.lm_head.weight, targets, self.cfg.loss_chunk)
        return None, liger_linear_cross_entropy(x, self.lm_head.weight, targets)
