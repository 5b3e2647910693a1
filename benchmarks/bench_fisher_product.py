"""Fisher-vector products: safe-trpo's J^T K J form vs plain reverse-over-reverse, side by side.

Both are double backprop of the mean KL(old || theta) at theta_old and give the same product
(the script prints the largest relative difference). The peer differentiates the KL's gradient
once more through the whole network; ``safe_trpo.algo.trpo.fisher_vector_product`` takes the product
as J^T (K (J v)), skipping the term that is zero at theta_old (its docstring has the math).
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
from safe_trpo.algo.trpo import PolicyBatch, fisher_vector_product, flat_grad


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
    ours = fisher_vector_product(policy, batch, 0.1)
    peer = reverse_over_reverse(policy, batch, 0.1)
    v = torch.randn(sum(p.numel() for p in policy.parameters()))
    difference = float((ours(v) - peer(v)).norm() / peer(v).norm())
    times: dict[str, float] = {"J^T K J (safe-trpo)": float("inf"),
                               "reverse-over-reverse": float("inf")}
    for _ in range(args.rounds):
        times["J^T K J (safe-trpo)"] = min(times["J^T K J (safe-trpo)"],
                                           best_time(ours, v, args.calls))
        times["reverse-over-reverse"] = min(times["reverse-over-reverse"],
                                            best_time(peer, v, args.calls))
    print(f"Fisher-vector product, batch {args.batch}, obs {args.obs}, hidden {args.hidden}, "
          f"1 torch thread, best of {args.rounds} rounds of {args.calls}")
    for name, seconds in times.items():
        print(f"  {name:24s} {seconds * 1e3:7.3f} ms per product")
    ratio = times["reverse-over-reverse"] / times["J^T K J (safe-trpo)"]
    print(f"speed-up {ratio:.2f}x; relative difference of the products {difference:.1e}")


if __name__ == "__main__":
    main()
