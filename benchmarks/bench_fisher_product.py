"""Fisher-vector products: safe-trpo's two forms vs plain reverse-over-reverse, side by side.

All three give the Hessian of the mean KL(old || theta) at theta_old times v (the script prints
each one's relative difference from the peer). The peer differentiates the KL's gradient once
more through the whole network. ``safe_trpo.algo.trpo.autograd_fisher_product`` takes the
product as J^T (K (J v)) by autograd, skipping the term that is zero at theta_old (its docstring
has the math); ``fisher_vector_product`` gives a Gaussian MLP policy the same J^T K J in closed
form, without autograd (``safe_trpo/algo/fisher.py``).
Settings are the Pendulum benchmark's: 3 observations, 1 action, 64x64 tanh, a batch of 2048.
Both run on the same network (first layer input-major, see ``networks.input_major``), so the
ratio is the formulation's alone. One torch thread; the two sides alternate, and the best of
several rounds is reported.

    python benchmarks/bench_fisher_product.py [--batch 2048] [--hidden 64 64] [--obs 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from gymnasium import spaces

from safe_trpo.algo.networks import make_policy
from safe_trpo.algo.trpo import (
    PolicyBatch,
    autograd_fisher_product,
    fisher_vector_product,
    flat_grad,
)


def reverse_over_reverse(policy, batch: PolicyBatch, damping: float
                         ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The textbook product: the KL's gradient with its graph, differentiated along v."""
    kl = policy.kl(batch.old_dist, policy.distribution(batch.obs)).mean()
    grad_kl = flat_grad(kl, policy, create_graph=True)

    def product(v: torch.Tensor) -> torch.Tensor:
        return flat_grad(grad_kl @ v, policy, retain_graph=True) + damping * v

    return product


def best_time(product: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor,
              calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        product(v)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--obs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50, help="products per round and side")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = make_policy(spaces.Box(-1, 1, (args.obs,)), spaces.Box(-2, 2, (1,)), args.hidden,
                         "tanh", 0.0)
    with torch.no_grad():  # away from the initialisation, as after some training
        for p in policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    obs = torch.randn(args.batch, args.obs)
    with torch.no_grad():
        dist = policy.distribution(obs)
        actions = dist.sample()
        batch = PolicyBatch(policy, obs, actions, policy.log_prob(dist, actions))
    peer = reverse_over_reverse(policy, batch, 0.1)
    sides = {"closed form (safe-trpo)": fisher_vector_product(policy, batch, 0.1),
             "J^T K J by autograd": autograd_fisher_product(policy, batch, 0.1),
             "reverse-over-reverse": peer}
    v = torch.randn(sum(p.numel() for p in policy.parameters()))
    reference = peer(v)
    times = dict.fromkeys(sides, float("inf"))
    for _ in range(args.rounds):  # alternating, best of the rounds
        for name, product in sides.items():
            times[name] = min(times[name], best_time(product, v, args.calls))
    print(f"Fisher-vector product, batch {args.batch}, obs {args.obs}, hidden {args.hidden}, "
          f"1 torch thread, best of {args.rounds} rounds of {args.calls}")
    for name, product in sides.items():
        difference = float((product(v) - reference).norm() / reference.norm())
        print(f"  {name:24s} {times[name] * 1e3:7.3f} ms per product, "
              f"{times['reverse-over-reverse'] / times[name]:5.2f}x the peer's speed, "
              f"relative difference {difference:.1e}")

if __name__ == "__main__":
    main()
