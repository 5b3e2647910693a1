"""Critic regression without autograd: the MLP's backward pass written out, and Adam's fused
kernel called without ``Optimizer.step``'s per-call overhead.

``fit_critics`` takes 160 small Adam steps per update (10 epochs x 16 minibatches of 128 rows
in the usual settings). At that size, autograd's bookkeeping (building the graph, hooks,
gradient accumulation) and ``Optimizer.step``'s (grad-mode guards, profiler hooks, regrouping
the tensors by device) cost about as much as the arithmetic. Nothing here changes the
arithmetic:

- the forward pass is the critic's own (``addmm`` as in ``F.linear``, tanh by numpy as in
  ``networks.Tanh``), and its backward, a few matrix products, is written out with the kernels
  autograd itself calls for it (``mm``, ``sum``, ``tanh_backward`` / ``threshold_backward``)
  in the same order, so the gradients are autograd's (bit for bit with torch 2.13);
- the Adam step runs the same fused kernel on the optimiser's own state tensors, so the
  parameters and the checkpointed optimiser state are bit for bit what ``optim.step()`` gives.

tests/test_trpo_math.py checks both against ``loss.backward()`` and ``optim.step()``.

For the loss mean((V(x) - y)^2) over B rows, with layers h_{i+1} = act(h_i W_i^T + b_i):
dL/dV = 2 (V - y) / B; through a Linear layer, dL/dW = g^T h, dL/db = sum_rows g, and
dL/dh = g W; through tanh, dL/dz = g (1 - tanh(z)^2) (from the layer's output); through relu,
g where the output is positive.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from safe_trpo.algo.networks import ValueNet, input_major, tanh_

_aten = torch.ops.aten


class SquaredErrorGrads:
    """Gradient of mean((net(x) - y)^2) for one critic's network ``critic.net`` (its output
    before ``ValueNet``'s output scale: y is in standardised units), by the backward pass
    written out."""

    def __init__(self, critic: ValueNet) -> None:
        layers = list(critic.net)
        self.linears = layers[0::2]  # Linear, activation, Linear, ..., Linear (``mlp``)
        self.activations = layers[1::2]
        if not (all(isinstance(m, nn.Linear) for m in self.linears)
                and all(isinstance(m, nn.Tanh | nn.ReLU) for m in self.activations)
                and len(self.linears) == len(self.activations) + 1):
            raise TypeError("no hand-written backward for this network: expected Linear "
                            "layers with Tanh or ReLU between them")
        # Read at each call (not copied), so in-place optimiser steps are seen.
        self.weights = [m.weight for m in self.linears]
        self.biases = [m.bias for m in self.linears]
        self.input_major = [input_major(w) for w in self.weights]
        self.tanh = [isinstance(m, nn.Tanh) for m in self.activations]

    def __call__(self, x: torch.Tensor, y: torch.Tensor
                 ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(V(x) - y, the gradient for each of ``critic.parameters()``, in that order).

        ``x`` is (B, obs_dim), ``y`` is (B, 1) (the shape of the network's output; (B,) is
        accepted too); the error has y's shape. Call under ``torch.no_grad()``.
        """
        if y.dim() == 1:
            y = y.unsqueeze(-1)
        inputs = [x]  # inputs[k]: what Linear layer k reads (the previous activation's output)
        h = x
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.addmm(b, h, w.t())  # what F.linear runs
            if k < len(self.activations):  # in place on the fresh product
                h = tanh_(h) if self.tanh[k] else torch.relu_(h)
                inputs.append(h)
        error = h - y
        grad = error * (2.0 / x.shape[0])  # d mean(e^2) / de
        grads: list[torch.Tensor] = []  # filled from the last layer back: bias, then weight
        for k in range(len(self.weights) - 1, -1, -1):
            grads.append(grad.sum(0))
            if self.input_major[k]:  # the weight's gradient, in the parameter's memory order
                grads.append(inputs[k].t().mm(grad).t())
            else:
                grads.append(grad.t().mm(inputs[k]))
            if k > 0:
                grad = grad.mm(self.weights[k])
                grad = (_aten.tanh_backward(grad, inputs[k]) if self.tanh[k - 1]
                        else _aten.threshold_backward(grad, inputs[k], 0))
        return error, grads[::-1]


class AdamStepper:
    """Applies ``optim``'s update for given gradients of ``params`` (all of its parameters).

    For a plain fused torch Adam (``fused=True``; no amsgrad, maximize or capturable) the
    steps after the first run the fused kernel directly on the optimiser's state, exactly as
    ``Adam.step`` does (step counters + 1, then ``_fused_adam_``). The first step, and every
    step of any other optimiser, goes through ``optim.step()``.
    """

    def __init__(self, optim: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
        self.optim = optim
        self.params = params
        # The kernel's arguments once the optimiser's state exists (from an earlier fit).
        self._fused: dict | None = self._fused_arguments()
        self._ones = [torch.ones(())] * len(params)

    def step(self, grads: list[torch.Tensor]) -> None:
        if self._fused is not None:
            # The step counters + 1, as Adam.step does. A list of 1-tensors, not the Python
            # scalar 1: the same sums, without a scalar-to-tensor conversion per counter
            # (a fifth of a minibatch step's time at these sizes).
            torch._foreach_add_(self._fused["state_steps"], self._ones)
            torch._fused_adam_(self.params, grads, **self._fused)
            return
        # Outside inference mode (the caller may be in it): state the optimiser creates here is
        # checkpointed and may be stepped anywhere later, so it must be a normal tensor.
        with torch.inference_mode(False):
            for p, g in zip(self.params, grads, strict=True):
                p.grad = g.clone()  # a normal tensor even if ``g`` is an inference tensor
            self.optim.step()
            for p in self.params:
                p.grad = None
        self._fused = self._fused_arguments()

    def _fused_arguments(self) -> dict | None:
        return self._fused_arguments_unchecked() if _kernel_matches_adam() else None

    def _fused_arguments_unchecked(self) -> dict | None:
        optim = self.optim
        if type(optim) is not torch.optim.Adam or len(optim.param_groups) != 1:
            return None
        group = optim.param_groups[0]
        plain = (group["fused"] and not group["amsgrad"] and not group["maximize"]
                 and not group["capturable"] and not group["differentiable"]
                 and not group.get("decoupled_weight_decay", False)
                 and all(isinstance(v, float) for v in (group["lr"], *group["betas"])))
        same_params = len(group["params"]) == len(self.params) and all(
            p is q for p, q in zip(group["params"], self.params, strict=True))
        if not (plain and same_params and all(p in optim.state for p in self.params)):
            return None
        state = [optim.state[p] for p in self.params]
        beta1, beta2 = group["betas"]
        return {"exp_avgs": [s["exp_avg"] for s in state],
                "exp_avg_sqs": [s["exp_avg_sq"] for s in state], "max_exp_avg_sqs": [],
                "state_steps": [s["step"] for s in state], "amsgrad": False,
                "lr": group["lr"], "beta1": beta1, "beta2": beta2,
                "weight_decay": group["weight_decay"], "eps": group["eps"], "maximize": False}


@functools.cache
def _kernel_matches_adam() -> bool:
    """Once per process: does the private kernel exist, take these arguments and give exactly
    ``Adam.step``'s result on this torch build? If not, every step uses ``optim.step()``."""
    try:
        params = [torch.tensor([0.5, -1.0, 2.0], requires_grad=True)]
        twin = [params[0].detach().clone().requires_grad_(True)]
        grads = [torch.tensor([0.1, -0.2, 0.3]), torch.tensor([-0.3, 0.2, 0.05])]
        reference = torch.optim.Adam(twin, lr=1e-3, fused=True)
        for g in grads:
            twin[0].grad = g.clone()
            reference.step()
        stepper = AdamStepper.__new__(AdamStepper)
        stepper.optim = torch.optim.Adam(params, lr=1e-3, fused=True)
        stepper.params, stepper._fused, stepper._ones = params, None, [torch.ones(())]
        stepper.step([grads[0].clone()])  # through optim.step(): creates the state
        stepper._fused = stepper._fused_arguments_unchecked()
        if stepper._fused is None:
            return False
        stepper.step([grads[1].clone()])  # through the kernel
        return bool(torch.equal(params[0].detach(), twin[0].detach()))
    except (AttributeError, TypeError, RuntimeError):
        return False
