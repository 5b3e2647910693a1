"""The critics' Adam: torch's fused Adam kernel on state the trainer owns, without ``torch.optim``.

``torch.optim.Optimizer`` imports ``torch._dynamo`` the first time one is built or stepped
(its methods are wrapped to stay out of ``torch.compile`` graphs): a second or more of every
run's start-up, for a loop that never compiles. ``CriticAdam`` holds the same state as a fused
``torch.optim.Adam`` (per parameter ``step``, ``exp_avg``, ``exp_avg_sq``) and calls the same
kernel, ``torch._fused_adam_``, so the parameters and the state are bit for bit what
``torch.optim.Adam(params, lr, fused=True).step()`` gives (``tests/algo/test_critics.py``
checks this); ``state_dict``/``load_state_dict`` use ``torch.optim.Adam``'s layout, so either
can load the other's checkpoint.

The kernel is private. Once per process ``fused_kernel_works`` runs it on a 3-vector against
Adam's textbook update in float64; if it is missing, takes other arguments or disagrees, every
step uses the textbook update written with foreach ops instead (the same formula, not bit for
bit the kernel's rounding).

Adam (Kingma & Ba 2015), per parameter p with gradient g at step t:
m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch


class CriticAdam:
    """Adam over ``params`` (no weight decay, amsgrad or maximise: the critics use none).

    Args:
        params: the tensors to train, in a fixed order (``critics.parameters()``).
        lr: step size; the scenario's ``critic_lr`` (1e-3 usually).
        betas: decay rates of the first and second moment averages.
        eps: added to the root of the second moment, against division by ~0.
    """

    def __init__(self, params: list[torch.Tensor], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        # The state a fused torch Adam creates at its first step (float32 step counters).
        self.steps = [torch.zeros((), dtype=torch.float32) for _ in self.params]
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format)
                         for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format)
                            for p in self.params]
        self._ones = [torch.ones(())] * len(self.params)

    def step(self, grads: list[torch.Tensor]) -> None:
        """One Adam step with ``grads`` (one per parameter, in ``params`` order)."""
        # The step counters + 1 as Adam.step does, with 1-tensors: the same sums, without a
        # scalar-to-tensor conversion per counter.
        torch._foreach_add_(self.steps, self._ones)
        if fused_kernel_works():
            torch._fused_adam_(self.params, grads, self.exp_avgs, self.exp_avg_sqs, [],
                               self.steps, amsgrad=False, lr=self.lr, beta1=self.betas[0],
                               beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
                               maximize=False)
        else:
            _textbook_step(self.params, grads, self.exp_avgs, self.exp_avg_sqs, self.steps,
                           self.lr, self.betas, self.eps)

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Adam(params, lr, fused=True).state_dict()``'s layout."""
        state = {i: {"step": s.clone(), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
                 for i, (s, m, v) in enumerate(zip(self.steps, self.exp_avgs,
                                                   self.exp_avg_sqs, strict=True))}
        group = {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": 0,
                 "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                 "differentiable": False, "fused": True, "decoupled_weight_decay": False,
                 "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore from ``state_dict()`` or a torch Adam's; KeyError or RuntimeError (naming
        what differs) when it is for other parameters or other settings."""
        (group,) = saved["param_groups"]
        if len(group["params"]) != len(self.params):
            raise RuntimeError(f"optimiser state for {len(group['params'])} parameters, "
                               f"expected {len(self.params)}")
        plain = not (group.get("amsgrad") or group.get("maximize") or group.get("weight_decay"))
        if not plain:
            raise RuntimeError("optimiser state uses amsgrad, maximize or weight decay")
        state = saved["state"]
        for k, (index, p) in enumerate(zip(group["params"], self.params, strict=True)):
            if index not in state:  # never stepped: fresh state, as torch Adam keeps none
                continue
            entry = state[index]
            if entry["exp_avg"].shape != p.shape or entry["exp_avg_sq"].shape != p.shape:
                raise RuntimeError(f"optimiser state of parameter {k} has shape "
                                   f"{tuple(entry['exp_avg'].shape)}, expected {tuple(p.shape)}")
            step = torch.as_tensor(entry["step"], dtype=torch.float32).reshape(())
            self.steps[k] = step.clone()
            self.exp_avgs[k] = entry["exp_avg"].to(p.dtype).clone()
            self.exp_avg_sqs[k] = entry["exp_avg_sq"].to(p.dtype).clone()
        self.lr, self.eps = float(group["lr"]), float(group["eps"])
        self.betas = (float(group["betas"][0]), float(group["betas"][1]))


def _textbook_step(params: list[torch.Tensor], grads: list[torch.Tensor],
                   exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor],
                   steps: list[torch.Tensor], lr: float, betas: tuple[float, float],
                   eps: float) -> None:
    """Adam's update as in the module docstring; ``steps`` already counts this step."""
    beta1, beta2 = betas
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    for p, m, v, s in zip(params, exp_avgs, exp_avg_sqs, steps, strict=True):
        t = float(s)
        denom = (v.sqrt() / math.sqrt(1 - beta2 ** t)).add_(eps)  # torch's order of operations
        p.addcdiv_(m, denom, value=-lr / (1 - beta1 ** t))


@functools.cache
def fused_kernel_works() -> bool:
    """Once per process: does ``torch._fused_adam_`` exist, take these arguments and follow
    Adam's update (two steps on a 3-vector, against float64 to float32 rounding)?"""
    lr, beta1, beta2, eps = 1e-2, 0.9, 0.999, 1e-8
    grads = [[0.1, -0.2, 0.3], [-0.3, 0.2, 0.05]]
    try:
        p = torch.tensor([0.5, -1.0, 2.0])
        m, v, step = torch.zeros(3), torch.zeros(3), torch.zeros(())
        for g in grads:
            step += 1
            torch._fused_adam_([p], [torch.tensor(g)], [m], [v], [], [step], amsgrad=False,
                               lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps,
                               maximize=False)
    except (AttributeError, TypeError, RuntimeError):
        return False
    ref, m_ref, v_ref = [0.5, -1.0, 2.0], [0.0] * 3, [0.0] * 3
    for t, g in enumerate(grads, start=1):
        for i in range(3):
            m_ref[i] = beta1 * m_ref[i] + (1 - beta1) * g[i]
            v_ref[i] = beta2 * v_ref[i] + (1 - beta2) * g[i] ** 2
            ref[i] -= lr * (m_ref[i] / (1 - beta1 ** t)) / (
                math.sqrt(v_ref[i] / (1 - beta2 ** t)) + eps)
    return all(math.isclose(float(a), b, rel_tol=1e-5, abs_tol=1e-7)
               for a, b in zip(p.tolist(), ref, strict=True))
