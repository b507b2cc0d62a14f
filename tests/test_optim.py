"""ObGD, AdaptiveObGD and traced SGD against hand-computed examples (PAPER §1.1–1.2)."""

from __future__ import annotations

import pytest
import torch

from streamx.errors import ConfigError
from streamx.optim import AdaptiveObGD, ObGD, TracedSGD


def _params():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    b = torch.nn.Parameter(torch.tensor([0.5]))
    return w, b


def _step(optimizer, params, grads, td_error, reset=False):
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g)
    return optimizer.step(td_error, reset=reset)


def test_obgd_hand_computed_three_steps_with_clipping_and_reset():
    w, b = _params()
    opt = ObGD([w, b], lr=1.0, gamma=0.5, lamda=0.5, kappa=2.0)  # γλ = 0.25
    # Step 1: z = g = ([1, 2], [1]); ‖z‖₁ = 4 over BOTH tensors; δ = 3 → δ̄ = 3;
    # M = 1·2·3·4 = 24 > 1 → α̂ = 1/24; w += α̂ δ z = z/8. Then reset.
    alpha_hat = _step(opt, [w, b], [[1.0, 2.0], [1.0]], 3.0, reset=True)
    assert alpha_hat.item() == pytest.approx(1 / 24)
    assert opt.trace_norm.item() == pytest.approx(4.0)
    assert w.tolist() == pytest.approx([1.125, -1.75])
    assert b.tolist() == pytest.approx([0.625])
    for tensor in (w, b):  # every tensor's trace is reset after the update
        assert opt.state[tensor]["eligibility_trace"].abs().sum().item() == 0.0
    # Step 2: traces were reset, z = g = ([0.1, -0.1], [0.05]); ‖z‖₁ = 0.25; δ = 0.5 → δ̄ = 1;
    # M = 0.5 ≤ 1 → α̂ = α = 1; w += 0.5 z.
    alpha_hat = _step(opt, [w, b], [[0.1, -0.1], [0.05]], 0.5)
    assert alpha_hat.item() == pytest.approx(1.0)
    assert w.tolist() == pytest.approx([1.175, -1.8])
    assert b.tolist() == pytest.approx([0.65])
    # Step 3: g = 0, z = 0.25·z = ([0.025, -0.025], [0.0125]); δ = 2 → M = 1·2·2·0.0625 = 0.25;
    # α̂ = 1; w += 2 z.
    alpha_hat = _step(opt, [w, b], [[0.0, 0.0], [0.0]], 2.0)
    assert alpha_hat.item() == pytest.approx(1.0)
    assert opt.state[w]["eligibility_trace"].tolist() == pytest.approx([0.025, -0.025])
    assert opt.state[b]["eligibility_trace"].tolist() == pytest.approx([0.0125])
    assert w.tolist() == pytest.approx([1.225, -1.85])
    assert b.tolist() == pytest.approx([0.675])


def test_obgd_effective_step_is_global_across_tensors():
    # The same gradients split over one or two tensors give the same update.
    w, b = _params()
    opt_two = ObGD([w, b], lr=1.0, gamma=0.9, lamda=0.8, kappa=2.0)
    _step(opt_two, [w, b], [[1.0, 2.0], [1.0]], 1.5)
    joined = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt_one = ObGD([joined], lr=1.0, gamma=0.9, lamda=0.8, kappa=2.0)
    _step(opt_one, [joined], [[1.0, 2.0, 1.0]], 1.5)
    assert torch.cat([w, b]).tolist() == pytest.approx(joined.tolist())


def test_obgd_trace_norm_is_exact_where_a_float32_sum_is_not():
    # z = g = [10⁴, then 16,383 entries of 10⁻⁴]: ‖z‖₁ = 10⁴ + 1.6383. A float32 sum in index
    # order loses every small entry (half an ulp of 10⁴ is 4.9e-4), 1.6e-4 relative; the bound
    # must see the exact value: M = 1·2·1·10001.6383 → α̂ = 1/M.
    grad = torch.full((16384,), 1e-4)
    grad[0] = 1e4
    w = torch.nn.Parameter(torch.zeros(16384))
    opt = ObGD([w], lr=1.0, gamma=0.9, lamda=0.8, kappa=2.0)
    alpha_hat = _step(opt, [w], [grad.tolist()], 0.5)
    exact = 1e4 + 16383 * float(torch.tensor(1e-4))
    assert opt.trace_norm.item() == torch.tensor(exact).item()
    assert alpha_hat.item() == pytest.approx(1 / (2 * exact), rel=1e-7)


def test_obgd_bound_clamps_the_step_when_it_must():
    """α κ max(|δ|, 1) ‖z‖₁ > 1: the step is α/M · δ z, not α δ z. Every value below is a power
    of two, so float32 holds the hand-computed numbers exactly."""
    w, b = _params()
    opt = ObGD([w, b], lr=0.5, gamma=0.5, lamda=0.5, kappa=2.0)
    # z = g = ([2, -4], [2]); ‖z‖₁ = 8; δ = -4 → δ̄ = 4; M = 0.5·2·4·8 = 32 > 1;
    # α̂ = α/M = 1/64; step α̂ δ z = -z/16 = ([-1/8, 1/4], [-1/8]) (unbounded: α δ z = -2z).
    alpha_hat = _step(opt, [w, b], [[2.0, -4.0], [2.0]], -4.0)
    assert alpha_hat.item() == 1 / 64 and opt.effective_step_size.item() == 1 / 64
    assert opt.trace_norm.item() == 8.0
    assert w.tolist() == [1.0 - 0.125, -2.0 + 0.25]
    assert b.tolist() == [0.5 - 0.125]
    # the same transition without the bound moves the weights 32 times as far
    w_sgd, b_sgd = _params()
    _step(TracedSGD([w_sgd, b_sgd], lr=0.5, gamma=0.5, lamda=0.5), [w_sgd, b_sgd], [[2.0, -4.0], [2.0]], -4.0)
    assert (w_sgd - torch.tensor([1.0, -2.0])).tolist() == [-4.0, 8.0]
    # |δ| < 1 counts as 1 in the bound (δ̄ = max(|δ|, 1)) but the step uses δ itself:
    # z = 0.25·z_old + g = ([0.5, -1], [0.5]) + ([0.5, 1], [0]) = ([1, 0], [0.5]); ‖z‖₁ = 1.5;
    # δ = 0.5 → δ̄ = 1; M = 0.5·2·1·1.5 = 1.5; α̂ = 1/3; step = α̂ δ z = z/6.
    alpha_hat = _step(opt, [w, b], [[0.5, 1.0], [0.0]], 0.5)
    assert alpha_hat.item() == pytest.approx(1 / 3)
    assert w.tolist() == pytest.approx([0.875 + 1 / 6, -1.75])
    assert b.tolist() == pytest.approx([0.375 + 0.5 / 6])


def test_obgd_bound_is_inactive_at_exactly_one():
    # ‖z‖₁ = 1, δ = 1: M = 0.5·2·1·1 = 1 → α̂ = α (the step is not shrunk at M = 1)
    w = torch.nn.Parameter(torch.tensor([0.0]))
    opt = ObGD([w], lr=0.5, gamma=0.9, lamda=0.9, kappa=2.0)
    assert _step(opt, [w], [[1.0]], 1.0).item() == 0.5
    assert w.tolist() == [0.5]


def test_obgd_one_global_bound_over_several_parameter_groups():
    """docs/stabilizers.md: M = Σ_k α_k κ_k δ̄ Σ_{w in group k} ‖z_w‖₁, and α̂_k = α_k / max(M, 1)."""
    w, b = _params()
    opt = ObGD([{"params": [w], "lr": 0.5, "kappa": 2.0}, {"params": [b], "lr": 0.25, "kappa": 4.0}],
               gamma=0.5, lamda=0.5)
    # z_w = [1, -2] (‖·‖₁ = 3), z_b = [4] (4); δ = 2 → δ̄ = 2;
    # M = 0.5·2·2·3 + 0.25·4·2·4 = 6 + 8 = 14; α̂_w = 0.5/14, α̂_b = 0.25/14.
    # (A bound per group would give α̂_w = 0.5/6 and α̂_b = 0.25/8; one read from the last
    # group only, 0.25·4·2·7 = 14 with α̂ = 0.25/14 for both, moves w half as far.)
    alpha_hat = _step(opt, [w, b], [[1.0, -2.0], [4.0]], 2.0)
    assert alpha_hat.item() == pytest.approx(0.5 / 14)  # the first group's α̂
    assert opt.trace_norm.item() == pytest.approx(7.0)  # Σ‖z‖₁ over both groups
    assert w.tolist() == pytest.approx([1.0 + 0.5 / 14 * 2 * 1.0, -2.0 + 0.5 / 14 * 2 * -2.0])
    assert b.tolist() == pytest.approx([0.5 + 0.25 / 14 * 2 * 4.0])
    # each group decays its traces with its own γλ (here both 0.25) and resets them all
    _step(opt, [w, b], [[0.0, 0.0], [0.0]], 0.0, reset=True)
    assert opt.state[w]["eligibility_trace"].tolist() == [0.0, 0.0]
    assert opt.state[b]["eligibility_trace"].tolist() == [0.0]


def test_obgd_groups_below_the_bound_keep_their_own_step_sizes():
    # M = 0.5·1·1·0.5 + 0.25·1·1·0.5 = 0.375 ≤ 1: each group steps with its own α
    w, b = _params()
    opt = ObGD([{"params": [w], "lr": 0.5}, {"params": [b], "lr": 0.25}], gamma=0.5, lamda=0.5, kappa=1.0)
    _step(opt, [w, b], [[0.25, 0.25], [0.5]], 1.0)
    assert w.tolist() == pytest.approx([1.0 + 0.125, -2.0 + 0.125])
    assert b.tolist() == pytest.approx([0.5 + 0.125])


def test_adaptive_obgd_hand_computed_two_steps():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = AdaptiveObGD([w], lr=1.0, gamma=0.5, lamda=0.5, kappa=2.0, beta2=0.5, eps=1e-12)
    # Step 1: z = 2, δz = 1, v = 0.5, v̂ = 0.5/(1−0.5) = 1, direction = 2, M = 2·1·2 = 4,
    # α̂ = 0.25, w += 0.25·0.5·2 = 0.25.
    alpha_hat = _step(opt, [w], [[2.0]], 0.5)
    assert alpha_hat.item() == pytest.approx(0.25)
    assert w.item() == pytest.approx(1.25)
    assert opt.state[w]["second_moment"].item() == pytest.approx(0.5)
    # Step 2: z = 0.25·2 = 0.5, δz = 0.05, v = 0.25 + 0.5·0.0025 = 0.25125,
    # v̂ = v/(1 − 0.25) = 0.335, d = 0.5/√0.335, M = 2·d > 1 → α̂ δ d = δ/2 = 0.05.
    alpha_hat = _step(opt, [w], [[0.0]], 0.1, reset=True)
    direction = 0.5 / 0.335 ** 0.5
    assert alpha_hat.item() == pytest.approx(1 / (2 * direction), rel=1e-5)
    assert w.item() == pytest.approx(1.3, rel=1e-6)
    assert opt.state[w]["second_moment"].item() == pytest.approx(0.25125)
    # reset zeroes the trace but keeps the second moment and the count
    assert opt.state[w]["eligibility_trace"].item() == 0.0
    assert opt.state[w]["update_count"].item() == 2.0


def test_traced_sgd_is_unbounded():
    w, b = _params()
    opt = TracedSGD([w, b], lr=0.5, gamma=0.5, lamda=0.5)
    _step(opt, [w, b], [[1.0, 2.0], [1.0]], 3.0)
    assert w.tolist() == pytest.approx([1.0 + 1.5, -2.0 + 3.0])  # w += α δ z with no bound
    assert b.tolist() == pytest.approx([0.5 + 1.5])


def test_state_dict_round_trip_keeps_traces():
    w, b = _params()
    opt = ObGD([w, b], gamma=0.9, lamda=0.8)
    _step(opt, [w, b], [[1.0, 2.0], [1.0]], 0.3)
    w2, b2 = _params()
    opt2 = ObGD([w2, b2], gamma=0.9, lamda=0.8)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[w2]["eligibility_trace"].tolist() == pytest.approx([1.0, 2.0])
    assert opt2.state[b2]["eligibility_trace"].tolist() == pytest.approx([1.0])
    # the loaded traces keep decaying: z = γλ z + g with γλ = 0.72 and g = 0
    _step(opt2, [w2, b2], [[0.0, 0.0], [0.0]], 0.0)
    assert opt2.state[w2]["eligibility_trace"].tolist() == pytest.approx([0.72, 1.44])
    assert opt2.state[b2]["eligibility_trace"].tolist() == pytest.approx([0.72])


@pytest.mark.parametrize("kwargs", [{"lr": -1.0}, {"lamda": 1.5}, {"gamma": -0.1}, {"kappa": 0.0}])
def test_invalid_hyperparameters_are_rejected(kwargs):
    with pytest.raises(ConfigError):
        ObGD([torch.nn.Parameter(torch.zeros(1))], **kwargs)
