"""GPT in the papers' setting: the modded-nanogpt October-2024 architecture used by the Scion/Gluon code.

12 layers, d_model 768, 6 heads of 128, rotary position embeddings, RMSNorm (no weights) before every
block and on queries and keys, ReLU² MLP, zero-initialised output projections, tied embedding and head,
vocabulary padded to 50304, sequence length 1024. Sources: modded-nanogpt record 2024-10-14
"ModernArch" and LIONS-EPFL/scion `examples/modded-nanogpt` (which ties the head and scales ReLU² by
sqrt(2)); see README "Assumptions". One file, no training logic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


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

    @property
    def d_model(self) -> int:
        return self.n_head * self.head_dim


PRESETS: dict[str, GPTConfig] = {
    "gpt124m": GPTConfig(),
    "tiny": GPTConfig(n_layer=2, n_head=2, head_dim=32, seq_len=128),
    "small": GPTConfig(n_layer=4, n_head=4, head_dim=64, seq_len=256),
}


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
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


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
        """idx, targets: (B, T) token ids. Returns (logits (B, T, V), mean token loss or None)."""
        x = self.transformer.wte(idx)  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(rms_norm(x)).float()
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N for the matmuls plus the attention scores (PaLM appendix B)."""
        c = self.cfg
        return 6 * self.num_params() + 12 * c.n_layer * c.n_head * c.head_dim * c.seq_len


def build_model(preset: str = "gpt124m", **overrides) -> GPT:
    if preset not in PRESETS:
        raise ValueError(f"model preset {preset!r} is unknown; choose one of {sorted(PRESETS)}")
    cfg = GPTConfig(**{**PRESETS[preset].__dict__, **overrides})
    return GPT(cfg)


if __name__ == "__main__":
    for name in PRESETS:
        m = build_model(name)
        print(f"{name:8s} {m.num_params() / 1e6:8.2f}M parameters  ({m.cfg})")
