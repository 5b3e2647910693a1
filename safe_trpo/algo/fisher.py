"""The Fisher-vector product of a Gaussian MLP policy, written out: no autograd.

``trpo.autograd_fisher_product`` takes every product as J^T (K (J v)) by double backprop, for
any policy: J = dz/dtheta, z the distribution's parameters, K the KL's Hessian in z. For the
policy this project trains on Box actions (``GaussianPolicy``: a Linear/Tanh or Linear/ReLU
mean network and a state-independent log-std) every part has a closed form, and a product
becomes a dozen matrix products on activations computed once per update. CG runs ten of them
per update. ``benchmarks/bench_fisher_product.py`` prints the forms side by side (batch 2048,
64x64 tanh): 1.07 ms per product here, 2.17 ms by autograd's J^T K J (graph traversal and the
create_graph bookkeeping), 3.35 ms by plain reverse-over-reverse double backprop.

The math, per sample b and action dimension j, with mu the mean, s = exp(log_std) the scale
(the same for every sample), the old distribution's (mu_o, s_o) and d = mu - mu_o:

    KL = log s - log s_o + (s_o^2 + d^2) / (2 s^2) - 1/2
    K_mu,mu = 1 / s^2,   K_mu,s = -2 d / s^3,   K_s,s = -1 / s^2 + 3 (s_o^2 + d^2) / s^4

each divided by the batch size B (the KL is a mean over samples). J v has two parts: the mean
network's forward-mode derivative along v's network part (``_jvp``, layer by layer: dz_k =
h_k dW_k^T + db_k + dh_k W_k^T, dh_{k+1} = act'(z_k) dz_k), and ds = s * v_log_std. J^T of
(K J v) is the network's ordinary backward pass (``_vjp``) plus, for the log-std,
sum_b s * (K J v)_s: the generic product's J^T K J, in closed form. tests/algo/test_fisher.py
checks it against the explicit Hessian of the KL, and against the generic product where the
old distribution is not the current one (the observation normaliser moved since the
rollout; there both are the Gauss-Newton part of the Hessian).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution

from safe_trpo.algo.networks import GaussianPolicy, input_major


def gaussian_mlp_layers(policy: object) -> tuple[list[nn.Linear], list[bool]] | None:
    """(the mean network's Linear layers, whether each activation between them is tanh), or
    None when ``policy`` is not a Gaussian policy whose mean network is Linear layers with
    Tanh or ReLU between them (then only the generic product applies)."""
    if not isinstance(policy, GaussianPolicy):
        return None
    layers = list(policy.mean_net)
    linears, activations = layers[0::2], layers[1::2]
    if not (len(linears) == len(activations) + 1
            and all(type(m) is nn.Linear for m in linears)
            and all(isinstance(m, nn.Tanh | nn.ReLU) for m in activations)):
        return None
    return linears, [isinstance(m, nn.Tanh) for m in activations]


class GaussianMLPFisher:
    """v -> (H + damping I) v for a ``GaussianPolicy`` on ``obs``; see the module docstring.

    Built once per update (one forward pass, kept); each call is then a forward-mode and a
    backward pass over the kept activations. ``v`` is laid out as ``policy.parameters()``.
    """

    def __init__(self, policy: GaussianPolicy, obs: torch.Tensor, old_dist: Distribution,
                 damping: float) -> None:
        found = gaussian_mlp_layers(policy)
        if found is None:
            raise TypeError("GaussianMLPFisher: not a Gaussian policy with a Linear/Tanh or "
                            "Linear/ReLU mean network")
        linears, self.tanh = found
        self.damping = damping
        self.weights = [m.weight.detach() for m in linears]
        self.biases = [m.bias.detach() for m in linears]
        self.input_major = [input_major(w) for w in self.weights]
        params = list(policy.parameters())
        self.shapes = [p.shape for p in params]
        self.sizes = [p.numel() for p in params]
        # Where each of v's parts goes: the log-std (nn.Module lists a module's own
        # parameters before its children's), and the mean network's weight and bias per layer.
        net = [p for m in linears for p in (m.weight, m.bias)]
        self.log_std_index = next(i for i, p in enumerate(params) if p is policy.log_std)
        self.net_index = [next(i for i, p in enumerate(params) if p is q) for q in net]
        with torch.no_grad():
            # inputs[k]: what Linear k reads; slopes[k]: act'(z_k) of hidden layer k, from its
            # output (tanh: 1 - h^2; relu: 1 where h > 0), as autograd's backward takes it.
            self.inputs, self.slopes = [obs], []
            h = obs
            for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                h = torch.addmm(b, h, w.t())  # F.linear's kernel: the policy's own forward
                if k < len(self.tanh):
                    if self.tanh[k]:
                        np.tanh(h.numpy(), out=h.numpy())  # networks.Tanh's forward
                        self.slopes.append(1.0 - h * h)
                    else:
                        h = torch.relu_(h)
                        self.slopes.append((h > 0).to(h.dtype))
                    self.inputs.append(h)
            mean = h
            scale = policy.log_std.detach().exp().expand_as(mean)
            old_mean, old_scale = old_dist.mean.detach(), old_dist.stddev.detach()
            n = obs.shape[0]
            diff = mean - old_mean
            self.scale = scale
            self.k_mm = (1.0 / scale**2) / n
            self.k_ms = (-2.0 * diff / scale**3) / n
            self.k_ss = (-1.0 / scale**2 + 3.0 * (old_scale**2 + diff**2) / scale**4) / n

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            parts = [p.view(shape) for p, shape in zip(v.split(self.sizes), self.shapes,
                                                        strict=True)]
            net_parts = [parts[i] for i in self.net_index]
            d_mean = self._jvp(net_parts[0::2], net_parts[1::2])
            d_scale = self.scale * parts[self.log_std_index]
            g_mean = self.k_mm * d_mean + self.k_ms * d_scale
            g_scale = self.k_ms * d_mean + self.k_ss * d_scale
            out: list[torch.Tensor] = [torch.empty(0)] * len(parts)
            for i, grad in zip(self.net_index, self._vjp(g_mean), strict=True):
                out[i] = grad
            out[self.log_std_index] = (g_scale * self.scale).sum(0)
            return torch.cat([t.reshape(-1) for t in out]) + self.damping * v

    def _jvp(self, d_weights: list[torch.Tensor], d_biases: list[torch.Tensor]
             ) -> torch.Tensor:
        """The mean's derivative along (d_weights, d_biases), shape (B, act_dim)."""
        dz = torch.addmm(d_biases[0], self.inputs[0], d_weights[0].t())
        for k in range(1, len(self.weights)):
            dh = dz.mul_(self.slopes[k - 1])
            dz = torch.addmm(d_biases[k], self.inputs[k], d_weights[k].t())
            dz.addmm_(dh, self.weights[k].t())
        return dz

    def _vjp(self, grad: torch.Tensor) -> list[torch.Tensor]:
        """g -> J_net^T g for the mean network: [dW_0, db_0, dW_1, db_1, ...]."""
        out: list[torch.Tensor] = []  # from the last layer back: bias, then weight
        for k in range(len(self.weights) - 1, -1, -1):
            out.append(grad.sum(0))
            if self.input_major[k]:  # the product in the weight's memory order (fast in MKL)
                out.append(self.inputs[k].t().mm(grad).t())
            else:
                out.append(grad.t().mm(self.inputs[k]))
            if k > 0:
                grad = grad.mm(self.weights[k]).mul_(self.slopes[k - 1])
        return out[::-1]
