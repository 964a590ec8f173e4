"""The training losses of a linear head: the mean cross-entropy of the logits z = h Wᵀ.

``chunked_linear_cross_entropy`` never materialises the (N, V) float32 logits (64 × 1024 × 50304 of them
are 12.3 GiB, plus their gradient); ``liger_linear_cross_entropy`` is the same loss through Liger-Kernel's
fused kernel (optional extra, CUDA only); the plain path is ``F.cross_entropy(upcast(h Wᵀ), y)``, which
a model computes itself. `LOSS_IMPLS` names them as the model configs' ``loss_impl`` does.
"""

from __future__ import annotations

import torch

LOSS_IMPLS = ("chunked", "plain", "liger")
IGNORE_INDEX = -100  # F.cross_entropy's default: such targets count neither in the sum nor in N


def upcast(z: torch.Tensor) -> torch.Tensor:
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
        z = upcast(h_s @ Wc.t())  # (c, V) logits of this chunk, as the plain path's lm_head(..).float()
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
                grad_W = upcast(g.t() @ h_s)
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
    return upcast(out[0] if isinstance(out, tuple) else out)
