"""The MuonMVR paper compatibility: its training loops run as written against ``from optim import MuonMVR``.

Also: the copy-free look-ahead loop equals the MuonMVR paper's exact (copy-the-parameters) loop and hands
over exactly h_t = ∇f(X_{t−1}; ξ_t); and the MuonMVR paper's gradient-accumulation loop is shown to be wrong
(it mixes two gradients into the reference and discards the current gradient), next to the correct
pattern (each gradient accumulated over its own full window into a clean .grad).
"""

from __future__ import annotations

import copy
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optim import MuonMVR


class TinyNet(nn.Module):
    """The MuonMVR paper's standard loop calls ``logits, loss = model(X, Y)``; its exact loop calls
    ``net(x)``."""

    def __init__(self, with_loss: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 32)
        self.fc2 = nn.Linear(32, 4)
        self.with_loss = with_loss

    def forward(self, X: torch.Tensor, Y: torch.Tensor | None = None):  # noqa: ANN201
        logits = self.fc2(torch.tanh(self.fc1(X)))
        if not self.with_loss:
            return logits
        return logits, F.cross_entropy(logits, Y)


def make_data(n_batches: int = 8, batch: int = 32, dtype: torch.dtype = torch.float32, seed: int = 0):  # noqa: ANN201
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(8, 4, generator=gen, dtype=dtype)
    X = torch.randn(n_batches * batch, 8, generator=gen, dtype=dtype)
    Y = (X @ teacher).argmax(-1)
    return [(X[i : i + batch], Y[i : i + batch]) for i in range(0, len(X), batch)], X, Y


def full_loss(model: nn.Module, X: torch.Tensor, Y: torch.Tensor) -> float:
    with torch.no_grad():
        out = model(X, Y) if model.with_loss else (None, F.cross_entropy(model(X), Y))
    return float(out[1])


@pytest.mark.parametrize("is_approx", [False, True])
def test_muonmvr_paper_standard_loop_as_written_trains(is_approx: bool) -> None:
    torch.manual_seed(0)
    data_loader, X_all, Y_all = make_data()
    model = TinyNet()
    args = SimpleNamespace(lr=0.02, gamma=0.025)
    epochs = 4
    start = full_loss(model, X_all, Y_all)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no missing-reference / no-gradient warnings
        # ---- the MuonMVR paper, "Standard Training (No Gradient Accumulation)", verbatim ----
        optimizer = MuonMVR(model.parameters(), lr=args.lr, gamma=args.gamma, is_approx=is_approx)
        previous_X, previous_Y = None, None
        for epoch in range(epochs):  # noqa: B007
            for X, Y in data_loader:
                if previous_X is not None:
                    # Calculate the gradient for the previous batch
                    logits, loss = model(previous_X, previous_Y)
                    loss.backward()
                    optimizer.update_last_grad()
                    optimizer.zero_grad(set_to_none=True)
                # Process the current batch
                logits, loss = model(X, Y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                # Store the current batch for the next iteration
                previous_X, previous_Y = X.clone(), Y.clone()
        # ---- end of the MuonMVR paper's loop ----
    assert full_loss(model, X_all, Y_all) < 0.6 * start


def test_muonmvr_paper_exact_loop_as_written_trains() -> None:
    torch.manual_seed(0)
    trainloader, X_all, Y_all = make_data()
    trainloader = trainloader * 4  # 4 epochs
    net = TinyNet(with_loss=False)
    criterion = nn.CrossEntropyLoss()
    args = SimpleNamespace(lr=0.02, gamma=0.025)
    start = full_loss(net, X_all, Y_all)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        # ---- the MuonMVR paper, "Exact Variance Reduction (is_approx=False)", verbatim ----
        optimizer = MuonMVR(net.parameters(), lr=args.lr, gamma=args.gamma, is_approx=False)
        old_state_dict = {}
        for batch_idx, (inputs, targets) in enumerate(trainloader):  # noqa: B007
            # Store the current model state
            cur_state_dict = {k: v.data.clone() for k, v in net.state_dict().items()}
            if old_state_dict:
                # Load the previous model state to compute the old gradient
                net.load_state_dict(old_state_dict)
                optimizer.zero_grad()
                outputs = net(inputs)
                loss = criterion(outputs, targets)
                loss.backward()
                optimizer.update_last_grad()
                # Restore the current model state to compute the new gradient
                net.load_state_dict(cur_state_dict)
            old_state_dict = {k: v.data.clone() for k, v in cur_state_dict.items()}
            # Standard forward/backward pass and step
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
        # ---- end of the MuonMVR paper's loop ----
    assert optimizer.reference_source == "prev_params" and optimizer.grad_evals_per_step == 2
    assert full_loss(net, X_all, Y_all) < 0.6 * start


def _exact_loop(net: nn.Module, batches: list, opt: MuonMVR) -> None:
    old_state_dict = {}
    for inputs, targets in batches:
        cur_state_dict = {k: v.data.clone() for k, v in net.state_dict().items()}
        if old_state_dict:
            net.load_state_dict(old_state_dict)
            opt.zero_grad()
            F.cross_entropy(net(inputs), targets).backward()
            opt.update_last_grad()
            net.load_state_dict(cur_state_dict)
        old_state_dict = {k: v.data.clone() for k, v in cur_state_dict.items()}
        opt.zero_grad()
        F.cross_entropy(net(inputs), targets).backward()
        opt.step()


def test_lookahead_loop_gives_prev_params_reference_and_equals_exact_loop() -> None:
    """Copy-free loop: at step t (params X_t) accumulate ∇f(X_t; ξ_{t+1}) → update_lookahead_grad(),
    zero, accumulate g_t on ξ_t, step(). Then step t uses h_t = ∇f(X_{t−1}; ξ_t), exactly."""
    torch.manual_seed(1)
    batches, _, _ = make_data(n_batches=6, dtype=torch.float64, seed=1)
    net_a = TinyNet(with_loss=False).double()
    net_b = copy.deepcopy(net_a)
    kw = dict(lr=0.05, gamma=0.1, is_approx=False, ns_dtype=torch.float64)
    opt_b = MuonMVR(net_b.parameters(), **kw)
    prev_net = None
    for t, (X, Y) in enumerate(batches):
        if t + 1 < len(batches):
            opt_b.zero_grad()
            F.cross_entropy(net_b(batches[t + 1][0]), batches[t + 1][1]).backward()
            opt_b.update_lookahead_grad()
        opt_b.zero_grad()
        F.cross_entropy(net_b(X), Y).backward()
        if prev_net is not None:  # h_t must be ∇f(X_{t−1}; ξ_t), evaluated independently
            prev_net.zero_grad()
            F.cross_entropy(prev_net(X), Y).backward()
            for p, q in zip(net_b.parameters(), prev_net.parameters()):
                if p.ndim >= 2:
                    assert torch.allclose(opt_b.state[p]["h"], q.grad, rtol=0, atol=1e-15)
        prev_net = copy.deepcopy(net_b)
        opt_b.step()
    _exact_loop(net_a, batches, MuonMVR(net_a.parameters(), **kw))
    for p, q in zip(net_a.parameters(), net_b.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-12)


def _grads(model: nn.Module, batch: tuple, scale: float = 1.0) -> list[torch.Tensor]:
    model.zero_grad()
    (model(*batch)[1] * scale).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads


def test_muonmvr_paper_gradient_accumulation_loop_is_wrong_and_the_correct_pattern() -> None:
    torch.manual_seed(2)
    data_loader, X_all, Y_all = make_data(n_batches=8, batch=16, seed=2)
    model = TinyNet()
    args = SimpleNamespace(lr=0.02, gamma=0.025)
    optimizer = MuonMVR(model.parameters(), lr=args.lr, gamma=args.gamma, is_approx=False)
    accum_steps = 4
    seen: list[dict] = []
    real_update, real_step = optimizer.update_last_grad, optimizer.step

    def spy_update() -> None:  # what the loop hands over, and what the parameters were then
        seen.append({"h": [p.grad.clone() for p in model.parameters()], "X": copy.deepcopy(model)})
        real_update()

    def spy_step(*a, **k):  # noqa: ANN002, ANN003, ANN202
        seen.append({"step_grads": [p.grad for p in model.parameters()]})
        return real_step(*a, **k)

    optimizer.update_last_grad, optimizer.step = spy_update, spy_step
    with pytest.warns(RuntimeWarning, match="no parameter has a .grad"):
        # ---- the MuonMVR paper, "Training with Gradient Accumulation", verbatim (one epoch) ----
        previous_X, previous_Y = None, None
        for i, (X, Y) in enumerate(data_loader):
            logits, loss = model(X, Y)
            loss = loss / accum_steps
            loss.backward()
            if previous_X is not None:
                prev_logits, prev_loss = model(previous_X, previous_Y)
                prev_loss = prev_loss / accum_steps
                prev_loss.backward()
                optimizer.update_last_grad()
                # Clear the gradients for the previous batch, keeping the gradients for the current batch
                optimizer.zero_grad(set_to_none=True)
            if (i + 1) % accum_steps == 0:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                previous_X, previous_Y = None, None
            else:
                previous_X, previous_Y = X.clone(), Y.clone()
        # ---- end of the MuonMVR paper's loop ----
    steps = [s for s in seen if "step_grads" in s]
    assert len(steps) == 2
    # Problem 1: the current gradient was discarded by zero_grad before step(): step() sees nothing.
    assert all(g is None for s in steps for g in s["step_grads"])
    # Problem 2: the handed-over "reference" mixes two micro-batches' gradients, (∇f(ξ_3) + ∇f(ξ_2))/4,
    # neither a previous-window gradient nor a full-window mean.
    last = [s for s in seen if "h" in s][2]  # the hand-over right before the first step() (i = 3)
    g3 = _grads(last["X"], data_loader[3], 1 / accum_steps)
    g2 = _grads(last["X"], data_loader[2], 1 / accum_steps)
    for h, a, b in zip(last["h"], g3, g2):
        assert torch.allclose(h, a + b, atol=1e-7)
        assert not torch.allclose(h, a, atol=1e-4) and not torch.allclose(h, b, atol=1e-4)

    # ---- the correct pattern (MVR3, "prev_batch"): each gradient over its own full window ----
    torch.manual_seed(2)
    model = TinyNet()
    start = full_loss(model, X_all, Y_all)
    opt = MuonMVR(model.parameters(), lr=args.lr, gamma=args.gamma, reference="prev_batch")
    windows = [data_loader[i : i + accum_steps] for i in range(0, len(data_loader), accum_steps)] * 12
    previous_window = None
    for window in windows:
        if previous_window is not None:  # reference: previous window, current params, clean .grad
            opt.zero_grad(set_to_none=True)
            for X, Y in previous_window:
                (model(X, Y)[1] / accum_steps).backward()
            opt.update_last_grad()
            h_expected = [p.grad.clone() for p in model.parameters()]
        full_window = [torch.stack(gs).mean(0) for gs in zip(*[_grads(model, b) for b in window])]
        opt.zero_grad(set_to_none=True)  # main gradient: current window, clean .grad
        for X, Y in window:
            (model(X, Y)[1] / accum_steps).backward()
        for p, g in zip(model.parameters(), full_window):
            assert torch.allclose(p.grad, g, atol=1e-6)  # the step sees the mean over the whole window
        if previous_window is not None:
            for p, h in zip(model.parameters(), h_expected):
                if p.ndim >= 2:
                    assert torch.equal(opt.state[p]["h"], h)
        opt.step()
        previous_window = window
    assert full_loss(model, X_all, Y_all) < 0.75 * start
