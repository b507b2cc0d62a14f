"""Eligibility-trace optimizers: ObGD, AdaptiveObGD and plain traced SGD (PAPER §1.1–1.2).

Sign convention: ``p.grad`` must hold the gradient of the quantity being *learned*
(``v(s)``, ``Q(s, a)`` or the actor's objective), not of a loss. The update is then
``w ← w + α̂ δ z``. (The authors' code back-propagates ``-v(s)`` and subtracts; it is the
same update.)

Each optimizer keeps one eligibility trace per parameter tensor in ``self.state`` and
computes ONE effective step size for all parameter tensors, on tensors only: a step never
reads a value back to the host, so it is cheap for batch-1 work.

Usage::

    optimizer = ObGD(net.parameters(), lr=1.0, gamma=0.99, lamda=0.8, kappa=2.0)
    net.zero_grad(); value.backward()          # p.grad = ∇v(s)
    optimizer.step(td_error, reset=done)       # traces zeroed after the update when reset
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from streamx.errors import ConfigError

__all__ = ["AdaptiveObGD", "ObGD", "TracedSGD"]

# A list of tensors as torch's ``_foreach_*`` functions take and return them.
_Tensors = list[Tensor] | tuple[Tensor, ...]


def _check_hyperparameters(lr: float, gamma: float, lamda: float, kappa: float) -> None:
    if not lr >= 0.0:
        raise ConfigError(f"step size lr={lr} must be >= 0; pass a non-negative lr (paper: 1.0)")
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"gamma={gamma} must lie in [0, 1]; pass e.g. gamma=0.99")
    if not 0.0 <= lamda <= 1.0:
        raise ConfigError(f"lambda={lamda} must lie in [0, 1]; pass e.g. lamda=0.8")
    if not kappa > 0.0:
        raise ConfigError(f"kappa={kappa} must be > 0; pass kappa=2.0 (value) or 3.0 (policy)")


def l1_norm(tensors: _Tensors) -> Tensor:
    """``Σ_t ‖t‖₁`` over ``tensors`` (0-d float32): each norm accumulated in float64, the total
    rounded once. torch's float32 ``norm(z, 1)`` adds its entries one after the other and can be
    off by 1e-4 relative on a 128×128 trace, which ObGD's effective step size would inherit. The
    fast path's kernels sum as accurately (:func:`streamx.fast.kernels.l1_norm`)."""
    return torch.stack(torch._foreach_norm(tensors, 1, dtype=torch.float64)).sum().to(torch.float32)


class _TraceOptimizer(torch.optim.Optimizer):
    """Shared machinery: per-tensor traces ``z ← γλz + g``, the step, and the reset.

    Subclasses define :meth:`_direction` (the per-tensor update direction built from the
    traces) and :meth:`_bound` (the scalar ``M`` that limits the step).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)
        for group in self.param_groups:
            _check_hyperparameters(group["lr"], group["gamma"], group["lamda"], group["kappa"])
        self._last_effective_step_size: Tensor = torch.tensor(float(defaults["lr"]))
        self._last_trace_norm: Tensor = torch.tensor(0.0)

    # -- logging ---------------------------------------------------------------------
    @property
    def effective_step_size(self) -> Tensor:
        """α̂ of the last step (0-d tensor; of the first group when there are several)."""
        return self._last_effective_step_size

    @property
    def trace_norm(self) -> Tensor:
        """Σ over all parameter tensors of ‖z‖₁ after the last trace update (0-d tensor)."""
        return self._last_trace_norm

    # -- the step --------------------------------------------------------------------
    def _group_tensors(self, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        params, grads, traces = [], [], []
        for p in group["params"]:
            state = self.state[p]
            if "eligibility_trace" not in state:
                state["eligibility_trace"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad if p.grad is not None else torch.zeros_like(p))
            traces.append(state["eligibility_trace"])
        return params, grads, traces

    def _direction(self, group: dict[str, Any], params: list[Tensor], traces: list[Tensor],
                   td_error: Tensor) -> _Tensors:
        return traces

    def _bound(self, group: dict[str, Any], directions: _Tensors, l1_norm: Tensor,
               td_error: Tensor) -> Tensor | None:
        """``M = α κ max(|δ|, 1) Σ‖direction‖₁`` for this group (None: unbounded step)."""
        return group["lr"] * group["kappa"] * torch.clamp(td_error.abs(), min=1.0) * l1_norm

    @torch.no_grad()
    def step(self, td_error: Tensor | float, reset: bool = False) -> Tensor:  # type: ignore[override]
        """Apply one update driven by ``td_error``; zero the traces afterwards if ``reset``.

        Returns the effective step size α̂ (0-d tensor) of the first parameter group.
        """
        td_error = torch.as_tensor(td_error, dtype=torch.float32).detach().reshape(())
        per_group = []
        bound_total: Tensor | None = None
        trace_norm = torch.zeros(())
        for group in self.param_groups:
            params, grads, traces = self._group_tensors(group)
            torch._foreach_mul_(traces, group["gamma"] * group["lamda"])
            torch._foreach_add_(traces, grads)
            trace_l1 = l1_norm(traces)
            trace_norm = trace_norm + trace_l1
            directions = self._direction(group, params, traces, td_error)
            dir_l1 = trace_l1 if directions is traces else l1_norm(directions)
            bound = self._bound(group, directions, dir_l1, td_error)
            if bound is not None:
                bound_total = bound if bound_total is None else bound_total + bound
            per_group.append((group, params, traces, directions))

        # One global scale for every tensor of every group (PAPER §1.1: M is ONE scalar).
        scale = None if bound_total is None else 1.0 / torch.clamp(bound_total, min=1.0)
        first_step_size: Tensor | None = None
        for group, params, traces, directions in per_group:
            step_size = torch.as_tensor(group["lr"], dtype=torch.float32)
            if scale is not None:
                step_size = step_size * scale
            if first_step_size is None:
                first_step_size = step_size
            torch._foreach_add_(params, torch._foreach_mul(directions, step_size * td_error))
            if reset:
                torch._foreach_zero_(traces)
        # torch.optim.Optimizer refuses an empty parameter list, so there is a first group.
        assert first_step_size is not None
        self._last_effective_step_size = first_step_size
        self._last_trace_norm = trace_norm
        return first_step_size

    def reset_traces(self) -> None:
        """Zero every eligibility trace (e.g. when an episode is cut short by the caller)."""
        for group in self.param_groups:
            for p in group["params"]:
                if "eligibility_trace" in self.state[p]:
                    self.state[p]["eligibility_trace"].zero_()


class ObGD(_TraceOptimizer):
    """Overshooting-bounded gradient descent with eligibility traces (PAPER §1.1).

    ``z ← γλz + g``; ``M = α κ max(|δ|, 1) Σ‖z‖₁``; ``w ← w + α/max(M, 1) · δ z``.

    Args:
        params: parameters (or parameter groups) to optimize.
        lr: step size α (paper: 1.0).
        gamma: discount γ used to decay the traces.
        lamda: trace-decay λ (spelled without the b, ``lambda`` is a keyword).
        kappa: bounding factor κ (paper: 2.0 for value networks, 3.0 for policy networks).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1.0,
                 gamma: float = 0.99, lamda: float = 0.8, kappa: float = 2.0) -> None:
        super().__init__(params, dict(lr=lr, gamma=gamma, lamda=lamda, kappa=kappa))


class AdaptiveObGD(_TraceOptimizer):
    """ObGD with an RMS-style normalization of the update by a second moment of ``δz``
    (PAPER §1.2).

    ``v ← β₂v + (1−β₂)(δz)²``, ``v̂ = v/(1−β₂ᵗ)``, direction ``z/√(v̂+ε)``, bounded as ObGD.
    ``v`` and ``t`` survive trace resets.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1.0,
                 gamma: float = 0.99, lamda: float = 0.8, kappa: float = 2.0,
                 beta2: float = 0.999, eps: float = 1e-8) -> None:
        if not 0.0 <= beta2 < 1.0:
            raise ConfigError(f"beta2={beta2} must lie in [0, 1); pass e.g. beta2=0.999")
        if not eps > 0.0:
            raise ConfigError(f"eps={eps} must be > 0; pass e.g. eps=1e-8")
        super().__init__(params, dict(lr=lr, gamma=gamma, lamda=lamda, kappa=kappa, beta2=beta2, eps=eps))

    def _direction(self, group: dict[str, Any], params: list[Tensor], traces: list[Tensor],
                   td_error: Tensor) -> _Tensors:
        beta2 = group["beta2"]
        second_moments = []
        for p in params:
            state = self.state[p]
            if "second_moment" not in state:
                state["second_moment"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            second_moments.append(state["second_moment"])
        # t (the bias-correction count) lives in the state of the group's first tensor.
        first_state = self.state[params[0]]
        if "update_count" not in first_state:
            first_state["update_count"] = torch.zeros((), dtype=torch.float32)
        count = first_state["update_count"]
        count += 1.0
        delta_z = torch._foreach_mul(traces, td_error)
        torch._foreach_mul_(second_moments, beta2)
        torch._foreach_addcmul_(second_moments, delta_z, delta_z, value=1.0 - beta2)
        bias_correction = 1.0 - torch.pow(torch.tensor(beta2), count)
        denominators = torch._foreach_div(second_moments, bias_correction)
        torch._foreach_add_(denominators, group["eps"])
        torch._foreach_sqrt_(denominators)
        return torch._foreach_div(traces, denominators)


class TracedSGD(_TraceOptimizer):
    """Classic semi-gradient TD with accumulating traces and NO step bound: ``w ← w + α δ z``.

    This is the optimizer of the "classic" streaming baselines (PAPER §6); ``kappa`` is
    accepted for a uniform interface and ignored.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1.0,
                 gamma: float = 0.99, lamda: float = 0.8, kappa: float = 1.0) -> None:
        super().__init__(params, dict(lr=lr, gamma=gamma, lamda=lamda, kappa=kappa))

    def _bound(self, group: dict[str, Any], directions: _Tensors, l1_norm: Tensor,
               td_error: Tensor) -> Tensor | None:
        return None
