"""Policies, critics and the running observation normaliser.

Box actions use a Gaussian policy with a state-independent log-std (TRPO's original choice: the
Fisher of the std part is constant, which keeps the natural gradient well conditioned). Samples
are NOT squashed: the log-probability is that of the unclipped sample, and the action sent to the
environment is clipped to the space's bounds (``clip_action``). Squashing with tanh would change
the density (a Jacobian term) and bias the mean near the bounds; clipping keeps the analytic KL
of two Gaussians exact, which the Fisher-vector product and the audited KL rely on.
Discrete actions use a categorical policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

from safe_trpo.algo.normalizer import FrozenNormalizer, ObsNormalizer  # noqa: F401 (re-export)
from safe_trpo.errors import UserError

# Argument validation re-checks every distribution's parameters on construction, a large share
# of the cost with small networks. Our parameters are finite by construction (the trainer
# reverts any step that makes them non-finite), so each distribution here skips it; the global
# default is left alone for code that imports safe_trpo.
_NO_CHECK = {"validate_args": False}


_HALF_LOG_2PI = 0.5 * float(np.log(2 * np.pi))


# This torch build's CPU tanh is scalar code, about 2 ns per element: 13x slower than numpy's
# SIMD tanh, and a large share of every forward pass of our tanh networks. The two agree to
# 1 ulp (each is within 1 ulp of the exact value; tests/algo/test_networks.py checks), so tanh is
# computed by numpy wherever it can be: in ``Tanh`` (autograd paths) and ``tanh_`` (the
# hand-written critic fit).


def tanh_(x: torch.Tensor) -> torch.Tensor:
    """tanh in place, by numpy, of a CPU tensor without autograd history."""
    np.tanh(x.numpy(), out=x.numpy())
    return x


class _NumpyTanh(torch.autograd.Function):
    """tanh forward by numpy; backward by torch's ``tanh_backward`` from the saved output,
    exactly as for ``torch.tanh``, so the backward is itself differentiable (the Fisher-vector
    product differentiates through it a second time)."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        y = torch.empty_like(x)
        np.tanh(x.detach().numpy(), out=y.numpy())
        return y

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Tanh):
    """nn.Tanh with numpy's tanh for CPU float tensors (see above); torch's otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
            return _NumpyTanh.apply(x)
        return torch.tanh(x)


_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": Tanh, "relu": nn.ReLU}


def input_major(weight: torch.Tensor) -> bool:
    """Whether a Linear layer's (out, in) weight is stored as the transpose of a contiguous
    (in, out) tensor: for layers wider out than in, like the first layer on a few observations.

    Same values and shape either way; only the memory order differs, and autograd computes a
    weight's gradient in its weight's order. For a batch of B rows that gradient is g^T x, and
    MKL takes 5-6x longer for it as a (out, B) x (B, in) product with a narrow in (3 for
    Pendulum) than as (x^T g)^T, the (in, B) x (B, out) product this order makes it use; the
    Fisher-vector products and the critic fit run it every time.
    """
    return weight.shape[1] < weight.shape[0]


def mlp(sizes: list[int], activation: str, out_gain: float = 1.0) -> nn.Sequential:
    act = _ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        linear = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        # Orthogonal init (as in SB3/CleanRL): a small last layer makes the initial policy
        # near-uniform around its mean, so early KL steps are well behaved.
        nn.init.orthogonal_(linear.weight, gain=out_gain if last else np.sqrt(2))
        nn.init.zeros_(linear.bias)
        if input_major(linear.weight):
            linear.weight = nn.Parameter(linear.weight.detach().t().contiguous().t())
        layers.append(linear)
        if not last:
            layers.append(act())
    return nn.Sequential(*layers)


def mlp_function(net: nn.Sequential) -> Callable[[np.ndarray], np.ndarray]:
    """``net``'s forward pass on a numpy batch, for acting on a few rows at a time.

    For the rollout's 8-row batches, torch's per-op dispatch (and nn.Module's per-call hooks)
    costs more than the arithmetic; numpy's matmul and SIMD tanh are about 1.5x faster there
    and agree with ``net(x)`` to float32 rounding (tests/algo/test_networks.py checks). The
    weights are numpy views of the parameter tensors, so in-place updates (TRPO's
    ``set_flat_params``, the normaliser's rescaling, ``load_state_dict``) are seen; build it
    afresh after anything that replaces the tensors (``.to()``, ``.double()``).
    """
    steps: list[Callable[[np.ndarray], np.ndarray]] = []
    for layer in net:
        if isinstance(layer, nn.Linear):
            w_t, b = layer.weight.detach().numpy().T, layer.bias.detach().numpy()
            steps.append(lambda x, w_t=w_t, b=b: x @ w_t + b)
        elif isinstance(layer, nn.Tanh):
            steps.append(lambda x: np.tanh(x, out=x))
        elif isinstance(layer, nn.ReLU):
            steps.append(lambda x: np.maximum(x, 0.0, out=x))
        else:
            raise TypeError(f"mlp_function: unsupported layer {type(layer).__name__}")

    def forward(x: np.ndarray) -> np.ndarray:
        for step in steps:
            x = step(x)
        return x

    return forward


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian with a state-independent log-std, for Box action spaces."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], activation: str,
                 init_log_std: float) -> None:
        super().__init__()
        self.mean_net = mlp([obs_dim, *hidden, act_dim], activation, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def distribution(self, obs: torch.Tensor) -> Distribution:
        return Normal(self.mean_net(obs), self.log_std.exp(), **_NO_CHECK)

    def log_prob(self, dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(actions).sum(-1)

    def kl(self, old: Distribution, new: Distribution) -> torch.Tensor:
        """Per-sample KL(old || new), summed over action dimensions."""
        return torch.distributions.kl_divergence(old, new).sum(-1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mean_net(obs)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, log-prob) without building a Distribution: the rollout's hot path.

        Same draw and density as ``distribution(obs)``: a = mu + sigma * eps, and
        log N(a; mu, sigma) = -eps^2 / 2 - log sigma - log(2 pi) / 2, summed over dimensions.
        """
        mean = self.mean_net(obs)
        eps = torch.randn_like(mean)
        log_prob = (-0.5 * eps.square() - self.log_std - _HALF_LOG_2PI).sum(-1)
        return mean + self.log_std.exp() * eps, log_prob

    def rollout_sampler(self, steps: int = 1
                        ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """obs -> (action, eps) with the current parameters: the rollout's per-step hot path.

        a = mu(obs) + sigma * eps with eps from torch's generator, like ``sample``, with the
        mean from ``mlp_function``. ``steps`` is how many calls (on batches of one shape) to
        expect: their noise is drawn in one torch call at the first, since drawing 8 numbers
        costs more in call overhead than in arithmetic (more calls draw another block). The
        log-probabilities come afterwards, for the whole rollout in one call, from
        ``log_prob_from_aux(actions, eps)``: they depend only on eps and the log-std, which
        do not change during a rollout.
        """
        mean_of = mlp_function(self.mean_net)
        std = self.log_std.detach().exp().numpy()
        block: Iterator[np.ndarray] = iter(())

        def draw(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            nonlocal block
            mean = mean_of(obs)
            eps = next(block, None)
            if eps is None:
                dtype = torch.from_numpy(mean).dtype
                block = iter(torch.randn((steps, *mean.shape), dtype=dtype).numpy())
                eps = next(block)
            return mean + std * eps, eps

        return draw

    def log_prob_from_aux(self, actions: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of ``rollout_sampler`` draws; ``aux`` is their eps."""
        return (-0.5 * aux.square() - self.log_std - _HALF_LOG_2PI).sum(-1)

    @staticmethod
    def dist_params(dist: Distribution) -> tuple[torch.Tensor, ...]:
        """The tensors the distribution is built from: mean and standard deviation."""
        return dist.loc, dist.scale

    @staticmethod
    def dist_from_params(loc: torch.Tensor, scale: torch.Tensor) -> Distribution:
        return Normal(loc, scale, **_NO_CHECK)

    @staticmethod
    def detach(dist: Distribution) -> Distribution:
        return Normal(dist.loc.detach(), dist.scale.detach(), **_NO_CHECK)


class CategoricalPolicy(nn.Module):
    """Softmax policy over a Discrete action space."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: list[int], activation: str) -> None:
        super().__init__()
        self.logits_net = mlp([obs_dim, *hidden, n_actions], activation, out_gain=0.01)

    def distribution(self, obs: torch.Tensor) -> Distribution:
        return Categorical(logits=self.logits_net(obs), **_NO_CHECK)

    def log_prob(self, dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(actions.long().reshape(dist.logits.shape[:-1]))

    def kl(self, old: Distribution, new: Distribution) -> torch.Tensor:
        return torch.distributions.kl_divergence(old, new)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits_net(obs).argmax(-1)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.distribution(obs)
        action = dist.sample()
        return action, dist.log_prob(action)

    def rollout_sampler(self, steps: int = 1
                        ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """obs -> (action, logits), as ``GaussianPolicy.rollout_sampler`` (``steps`` unused:
        each draw samples its own batch)."""
        logits_of = mlp_function(self.logits_net)

        def draw(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            logits = logits_of(obs)
            dist = Categorical(logits=torch.from_numpy(logits), **_NO_CHECK)
            return dist.sample().numpy(), logits

        return draw

    def log_prob_from_aux(self, actions: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of ``rollout_sampler`` draws; ``aux`` is their logits."""
        return Categorical(logits=aux, **_NO_CHECK).log_prob(actions)

    @staticmethod
    def dist_params(dist: Distribution) -> tuple[torch.Tensor, ...]:
        """The tensors the distribution is built from: the logits."""
        return (dist.logits,)

    @staticmethod
    def dist_from_params(logits: torch.Tensor) -> Distribution:
        return Categorical(logits=logits, **_NO_CHECK)

    @staticmethod
    def detach(dist: Distribution) -> Distribution:
        return Categorical(logits=dist.logits.detach(), **_NO_CHECK)


Policy = GaussianPolicy | CategoricalPolicy


def first_linear(module: nn.Module) -> nn.Linear:
    """The layer that reads the normalised observation."""
    return next(m for m in module.modules() if isinstance(m, nn.Linear))


def make_policy(obs_space: spaces.Space, action_space: spaces.Space, hidden: list[int],
                activation: str, init_log_std: float) -> Policy:
    if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
        raise UserError(f"unsupported observation space {obs_space}: safe-trpo's policies "
                        f"read a flat Box (wrap the env with a flattening wrapper)")
    obs_dim = obs_space.shape[0]
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        return GaussianPolicy(obs_dim, action_space.shape[0], hidden, activation, init_log_std)
    if isinstance(action_space, spaces.Discrete):
        return CategoricalPolicy(obs_dim, int(action_space.n), hidden, activation)
    raise UserError(f"unsupported action space {action_space}: safe-trpo's policies act in a "
                    f"flat Box or a Discrete space")


def clip_action(actions: np.ndarray, action_space: spaces.Space) -> np.ndarray:
    if isinstance(action_space, spaces.Box):
        # min(max(.)) is np.clip's arithmetic (NaN propagates alike) without its Python-level
        # dispatch, which costs more than the clipping for a handful of actions per step.
        clipped = np.minimum(np.maximum(actions, action_space.low), action_space.high)
        return clipped.astype(action_space.dtype, copy=False)
    return actions.astype(np.int64)


class ValueNet(nn.Module):
    """State-value critic V(s) = net(s) * out_std + out_mean, for the reward and each cost.

    ``net`` is fit to targets standardised by (out_mean, out_std), so the critic learns the
    same way whatever the units of its reward or cost (a cost in micro-units or in thousands).
    ``rescale_output`` changes the pair without changing V (PopArt, van Hasselt et al. 2016).
    A new critic has out_std = 0, so V = 0 until its first fit: a zero baseline rather than a
    random network's output in units that may be nothing like the targets'.
    """

    def __init__(self, obs_dim: int, hidden: list[int], activation: str) -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden, 1], activation, out_gain=1.0)
        self.register_buffer("out_mean", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("out_std", torch.tensor(0.0, dtype=torch.float64))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.net(obs).squeeze(-1)
        return out * self.out_std.to(out.dtype) + self.out_mean.to(out.dtype)

    @torch.no_grad()
    def rescale_output(self, mean: float, std: float) -> None:
        """Set (out_mean, out_std) to (mean, std > 0), rescaling the last layer so V is kept:
        W' = W s / s', b' = (b s + m - m') / s'. Before the first fit (s = 0) V is 0 and the
        network is untrained: the scale is set and the network left as it is."""
        last = self.net[-1]
        m, s = float(self.out_mean), float(self.out_std)
        if s > 0:
            last.weight.mul_(s / std)
            last.bias.copy_((last.bias.double() * s + m - mean) / std)
        self.out_mean.fill_(mean)
        self.out_std.fill_(std)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        # Checkpoints written before the output scale existed: their critics had none.
        for name, default in (("out_mean", 0.0), ("out_std", 1.0)):
            state_dict.setdefault(prefix + name, torch.tensor(default, dtype=torch.float64))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
