"""Critic regression without autograd: the MLP's backward pass written out (the Adam step that
uses it is ``safe_trpo.algo.adam``).

``fit_critics`` takes 160 small Adam steps per update (10 epochs x 16 minibatches of 128 rows
in the usual settings). At that size, autograd's bookkeeping (building the graph, hooks,
gradient accumulation) and ``Optimizer.step``'s (grad-mode guards, profiler hooks, regrouping
the tensors by device) cost about as much as the arithmetic. Nothing here changes the
arithmetic:

- the forward pass is the critic's own (``addmm`` as in ``F.linear``, tanh by numpy as in
  ``networks.Tanh``), and its backward, a few matrix products, is written out with the kernels
  autograd itself calls for it (``mm``, ``sum``, ``tanh_backward`` / ``threshold_backward``)
  in the same order, so the gradients are autograd's (bit for bit with torch 2.13);
- the Adam step (``adam.CriticAdam``) runs torch's fused Adam kernel on its own state, so the
  parameters and the checkpointed optimiser state are bit for bit what ``optim.step()`` gives.

tests/algo/test_critics.py checks both against ``loss.backward()`` and ``optim.step()``.

For the loss mean((V(x) - y)^2) over B rows, with layers h_{i+1} = act(h_i W_i^T + b_i):
dL/dV = 2 (V - y) / B; through a Linear layer, dL/dW = g^T h, dL/db = sum_rows g, and
dL/dh = g W; through tanh, dL/dz = g (1 - tanh(z)^2) (from the layer's output); through relu,
g where the output is positive.
"""

from __future__ import annotations

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
