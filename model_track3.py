"""modded-nanogpt's optimization track (records/track_3_optimization, result #36's train_gpt_simple.py): the
fixed GPT every entry trains (``model=track3``). Parameter names and shapes are the track's, so its state
dicts load with strict=True. Facts from that script; the code is ours. The papers' GPT is model.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from losses import upcast
from model import LanguageModel, check_integers, config_error, rms_norm, rotate_halves


@dataclass
class Track3Config:
    """model.* of the track's GPT (configs/model/track3.yaml): its sizes; the rest of the architecture is
    fixed (untied bfloat16 embedding and head, soft-capped float32 logits, plain cross-entropy)."""

    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 6
    head_dim: int = 128
    seq_len: int = 1024

    def __post_init__(self) -> None:
        """Checks every field; the errors name the key as the trainer's config spells it, and the fix."""
        check_integers(self, {"n_layer": 1, "n_head": 1, "head_dim": 4, "vocab_size": 2, "seq_len": 1})
        if self.head_dim % 4:
            raise config_error(self, "head_dim", "the track's rotary embedding turns a quarter of each "
                               "head's channel pairs: set model.head_dim to a multiple of 4")

    @property
    def d_model(self) -> int:
        return self.n_head * self.head_dim

    def build(self) -> Track3GPT:
        return Track3GPT(self)


TRACK3_MLP_RATIO = 4  # the MLP's hidden width over d_model
TRACK3_ATTN_SCALE = 0.12  # the attention logits' scale (not 1/sqrt(head_dim))
TRACK3_SOFTCAP = 15.0  # logits z become 15 z / sqrt(z² + 15²)
TRACK3_INIT_VAR = 0.33  # weights other than the embedding and the projections: N(0, 0.33 / fan_in)


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
    f = upcast(freq.to(x.device))  # float32 (float64 in a float64 model)
    theta = torch.outer(torch.arange(x.size(1), dtype=f.dtype, device=x.device), f)[None, :, None, :]
    return rotate_halves(upcast(x), theta.cos(), theta.sin()).type_as(x)


class HalfRotary(nn.Module):
    """`half_rotary` with its frequencies in a saved buffer ``angular_freq`` (the track's state-dict key)."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.register_buffer("angular_freq", half_rotary_frequencies(head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return half_rotary(x, self.angular_freq)


class Track3Attention(nn.Module):
    def __init__(self, cfg: Track3Config):
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
    def __init__(self, cfg: Track3Config):
        super().__init__()
        d = cfg.d_model
        self.fc, self.proj = CastLinear(d, TRACK3_MLP_RATIO * d), CastLinear(TRACK3_MLP_RATIO * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.relu(self.fc(x)).square())


class Track3Block(nn.Module):
    def __init__(self, cfg: Track3Config):
        super().__init__()
        self.attn, self.mlp = Track3Attention(cfg), Track3MLP(cfg)
        self.norm1, self.norm2 = GainRMSNorm(cfg.d_model), GainRMSNorm(cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Track3GPT(LanguageModel):
    """The optimization track's GPT (``model=track3``): bfloat16 embedding ``embed`` → RMSNorm ``norm1`` →
    blocks (pre-norm attention with separate q, k, v, QK-norm and half rotary; ReLU² MLP; every linear
    has a bias) → RMSNorm ``norm2`` → head ``proj`` → float32 logits soft-capped as
    ``15 z / sqrt(z² + 15²)`` → cross-entropy. The track sums the loss over tokens; this returns the
    mean (the trainer's convention; README, "The optimization track", says what that changes)."""

    output_head = "proj"
    loss_impl = "plain"  # the soft-cap comes before the loss, so the logits are materialised

    def __init__(self, cfg: Track3Config):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d).to(torch.bfloat16)
        self.blocks = nn.ModuleList(Track3Block(cfg) for _ in range(cfg.n_layer))
        self.proj = CastLinear(d, cfg.vocab_size)
        self.norm1, self.norm2 = GainRMSNorm(d), GainRMSNorm(d)
        self.reset_parameters()

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

    def shard_units(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx, targets: (B, T). Returns (soft-capped float32 logits, None) without targets, else
        (None, mean token loss)."""
        x = self.norm1(self.embed(idx))
        for block in self.blocks:
            x = block(x)
        z = upcast(self.proj(self.norm2(x)))  # float32 (float64 in a float64 model)
        logits = TRACK3_SOFTCAP * z * torch.rsqrt(z.square() + TRACK3_SOFTCAP**2)
        if targets is None:
            return logits, None
        return None, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
