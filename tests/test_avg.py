"""AVG (streamx.agents.avg) against hand-computed values and an independent autograd recomputation
of the authors' update (the executed sample in the actor objective, both gradients at the
pre-update parameters, the TD-error scale); action bounds, state-dict round trip, determinism,
refused inputs."""

from __future__ import annotations

import copy
import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from streamx.agents.avg import AVG, AVGSettings, PenultimateNorm, TDErrorScaler, squashed_log_prob
from streamx.config import Config
from streamx.errors import ConfigError

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
ACTION_SPACE = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
SMALL = AVGSettings(hidden_sizes=(16, 16))


def _agent(seed=0, settings=SMALL, action_space=ACTION_SPACE, **config):
    return AVG(OBS_SPACE, action_space, Config(seed=seed, **config), settings)


def _stream(n, seed=0, ends_every=6):
    """(obs, reward, next_obs, terminated, truncated) with an episode end every ``ends_every`` steps."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=3).astype(np.float32)
    for i in range(n):
        next_obs = rng.normal(size=3).astype(np.float32)
        end = (i + 1) % ends_every == 0
        yield obs, float(rng.normal()), next_obs, end and i % 2 == 0, end and i % 2 == 1
        obs = next_obs


def _run(agent, transitions):
    out = []
    for obs, reward, next_obs, terminated, truncated in transitions:
        action = agent.act(obs)
        out.append((action, agent.update(obs, action, reward, next_obs, terminated, truncated)))
    return out


# -- TD-error scaling ----------------------------------------------------------------------------
def test_td_error_scaler_on_a_hand_computed_sequence():
    scaler = TDErrorScaler()
    # step 1: one reward, no variance: σ² = max(0, 1e-4) ≤ 0.01 and no G added → no scaling
    assert scaler.observe(1.0, 0.9, False) == 1.0
    # step 2: rewards 1, 2 → POPULATION variance 0.25 (the unbiased one would be 0.5); Var[γ] = 0
    assert scaler.observe(2.0, 0.9, False) == pytest.approx(0.5)
    # step 3 ends the episode (γ_t = 0): G = 1 + 2 + 4 = 7, UNDISCOUNTED (discounted: 6.04)
    # rewards 1, 2, 4: Var = (16 + 1 + 25)/9/3 = 14/9; discounts .9, .9, 0: mean .6, Var = .54/3 = .18
    assert scaler.squared_returns.count == 0
    sigma = scaler.observe(4.0, 0.0, True)
    assert scaler.squared_returns.mean == pytest.approx(49.0)
    assert sigma == pytest.approx(math.sqrt(14 / 9 + 0.18 * 49.0))
    assert scaler.episode_return == 0.0  # reset at the episode end
    # step 4: rewards 1, 2, 4, −1: mean 1.5, Var = 13/4; discounts .9, .9, 0, .9: Var = .6075/4
    assert scaler.observe(-1.0, 0.9, False) == pytest.approx(math.sqrt(3.25 + 0.151875 * 49.0))
    assert scaler.episode_return == -1.0
    # step 5 ends the episode with γ_t = γ (a bootstrapped truncation): G = −1 + 3 = 2 is added too
    # rewards …, 3: mean 1.8, Var = 14.8/5 = 2.96; discounts …, .9: mean .72, Var = .648/5 = .1296;
    # E[G²] = (49 + 4)/2 = 26.5
    assert scaler.observe(3.0, 0.9, True) == pytest.approx(math.sqrt(2.96 + 0.1296 * 26.5))
    assert scaler.squared_returns.count == 2 and scaler.episode_return == 0.0
    # a partial return is dropped by forget_episode, not added
    scaler.observe(0.5, 0.9, False)
    scaler.forget_episode()
    assert scaler.episode_return == 0.0 and scaler.squared_returns.count == 2


def test_td_error_scaler_floor_and_the_unscaled_start():
    scaler = TDErrorScaler()
    # Var[R] = 0.0025 (population): above the floor but ≤ 0.01 and no G yet → σ = 1
    scaler.observe(0.0, 0.9, False)
    assert scaler.observe(0.1, 0.9, False) == 1.0
    # once an episode's G was added, σ = √σ² however small: rewards 0, .1, .1 → Var = 0.02/9
    assert scaler.observe(0.1, 0.9, True) == pytest.approx(math.sqrt(0.02 / 9))
    # no variation at all: σ² is floored at 1e-4, so σ = 0.01 after the first episode end
    constant = TDErrorScaler()
    assert constant.observe(1.0, 0.9, False) == 1.0
    assert constant.observe(1.0, 0.9, True) == pytest.approx(0.01)
    assert constant.variance == pytest.approx(1e-4)


@pytest.mark.parametrize("bootstrap_on_truncation", [True, False])
def test_the_agents_scale_takes_entropy_rewards_undiscounted_returns_and_every_episode_end(bootstrap_on_truncation):
    """r_ent = r − α log π(ã|s) of the executed sample (entropy = −log π, checked against the
    reference in test_one_update_follows_the_authors_procedure), γ_t = γ·mask, and G = Σ r_ent of
    each episode added at its end — a truncation too — then reset."""
    agent = _agent(seed=2, bootstrap_on_truncation=bootstrap_on_truncation)
    alpha, gamma = agent.settings.entropy_coef, agent.settings.gamma
    rng = np.random.default_rng(0)
    ends = [(False, False), (False, True), (False, False), (False, False), (True, False)]
    entropy_rewards, discounts, returns, partial = [], [], [], 0.0
    for terminated, truncated in ends:
        obs, next_obs, reward = (rng.normal(size=3).astype(np.float32), rng.normal(size=3).astype(np.float32),
                                 float(rng.normal()))
        metrics = agent.update(obs, agent.act(obs), reward, next_obs, terminated, truncated)
        entropy_rewards.append(reward + alpha * metrics["entropy"])  # r − α log π(ã|s)
        discounts.append(0.0 if terminated or (truncated and not bootstrap_on_truncation) else gamma)
        partial += entropy_rewards[-1]  # undiscounted
        if terminated or truncated:
            returns.append(partial)
            partial = 0.0
        assert agent.td_scaler.episode_return == pytest.approx(partial, rel=1e-12, abs=0.0)
    scaler = agent.td_scaler
    assert scaler.rewards.mean == pytest.approx(np.mean(entropy_rewards), rel=1e-12)
    assert scaler.rewards.variance == pytest.approx(np.var(entropy_rewards), rel=1e-12)  # population
    assert scaler.discounts.variance == pytest.approx(np.var(discounts), rel=1e-12, abs=1e-15)
    assert scaler.squared_returns.count == 2
    assert scaler.squared_returns.mean == pytest.approx(np.mean(np.square(returns)), rel=1e-12)
    expected_sigma = math.sqrt(max(np.var(entropy_rewards) + np.var(discounts) * np.mean(np.square(returns)), 1e-4))
    assert metrics["td_error_scale"] == pytest.approx(expected_sigma, rel=1e-12)


def test_td_error_scaler_is_one_without_variation():
    scaler = TDErrorScaler()
    for _ in range(5):
        sigma = scaler.observe(1.0, 0.99, False)
    assert sigma == 1.0


def test_td_error_scaler_state_round_trip():
    scaler = TDErrorScaler()
    for r, g, end in [(1.0, 0.9, False), (3.0, 0.0, True), (-2.0, 0.9, False)]:
        scaler.observe(r, g, end)
    restored = TDErrorScaler()
    restored.load_state_dict(copy.deepcopy(scaler.state_dict()))
    assert restored.observe(0.5, 0.9, True) == scaler.observe(0.5, 0.9, True)


# -- networks and policy -------------------------------------------------------------------------
def test_penultimate_normalization_gives_unit_norm_features():
    features = PenultimateNorm()(torch.randn(5, 7) * 40.0)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(5))
    agent = _agent()
    for trunk in (agent.actor.trunk, agent.critic.trunk):
        in_features = trunk[0].in_features
        torch.testing.assert_close(trunk(torch.randn(4, in_features) * 10).norm(dim=-1), torch.ones(4))


def test_without_penultimate_normalization_the_features_are_not_normalized():
    agent = _agent(settings=AVGSettings(hidden_sizes=(16, 16), penultimate_normalization=False))
    assert not any(isinstance(m, PenultimateNorm) for m in agent.actor.modules())
    assert not any(isinstance(m, PenultimateNorm) for m in agent.critic.modules())


def test_squashed_log_prob_matches_torch_transformed_distribution():
    generator = torch.Generator().manual_seed(3)
    mean = torch.randn(6, 2, generator=generator, dtype=torch.float64)
    log_std = torch.randn(6, 2, generator=generator, dtype=torch.float64) * 0.5
    pre_tanh = mean + log_std.exp() * torch.randn(6, 2, generator=generator, dtype=torch.float64)
    tanh = TanhTransform(cache_size=1)
    action = tanh(pre_tanh)  # cached: log_prob inverts exactly to pre_tanh
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [tanh]).log_prob(action).sum(-1)
    torch.testing.assert_close(squashed_log_prob(pre_tanh, mean, log_std), reference)


def test_squashed_log_prob_stays_finite_where_tanh_saturates():
    pre_tanh = torch.tensor([[30.0, -30.0]])
    value = squashed_log_prob(pre_tanh, torch.zeros(1, 2), torch.zeros(1, 2))
    # log(1 − tanh²u) → log 4 − 2|u| for large |u|
    expected = 2 * (-0.5 * 900.0 - 0.5 * math.log(2 * math.pi)) - 2 * (math.log(4.0) - 60.0)
    assert value.item() == pytest.approx(expected, rel=1e-6)


# -- one update against the authors' procedure, recomputed independently ----------------------------
def _adam_step(param_before, grad, state_before, lr, beta2, eps):
    """Adam with β₁ = 0 written out: m = g, v = β₂v + (1 − β₂)g², Δ = −lr·g/(√(v/(1 − β₂ᵗ)) + ε)."""
    step = float(state_before["step"]) + 1 if state_before else 1.0
    v = (state_before["exp_avg_sq"] * beta2 if state_before else torch.zeros_like(grad)) + (1 - beta2) * grad ** 2
    return param_before - lr * grad / ((v / (1 - beta2 ** step)).sqrt() + eps)


def _squashed_sample(actor, obs, noise):
    """tanh(μ + σε) at one observation and its log π from torch's TransformedDistribution."""
    mean, log_std = actor(torch.from_numpy(obs)[None])
    std = log_std.exp()
    tanh = TanhTransform(cache_size=1)
    action = tanh(mean + std * noise)  # cached: log_prob inverts exactly to the pre-tanh value
    return action, TransformedDistribution(Normal(mean, std), [tanh]).log_prob(action).sum(-1)[0]


def _expected_update(agent, obs, action, reward, next_obs, terminated, truncated, noise, next_noise):
    """What ``agent.update`` must do, recomputed by autograd on copies of the agent's networks,
    optimizer states and TD-error statistics: ã from ``noise`` at s and a' from ``next_noise`` at s';
    the critic's loss δ̃² and the actor's loss α log π(ã|s) − Q(s, ã), both at the PRE-update
    weights; one Adam step each. Returns the metrics, the weights after, the gradients and ã."""
    s = agent.settings
    actor, critic = copy.deepcopy(agent.actor), copy.deepcopy(agent.critic)
    actor_state = copy.deepcopy(agent.actor_optimizer.state_dict()["state"])
    critic_state = copy.deepcopy(agent.critic_optimizer.state_dict()["state"])
    bootstrap = 0.0 if terminated or (truncated and not agent.config.bootstrap_on_truncation) else 1.0

    sampled, log_prob = _squashed_sample(actor, obs, noise)
    with torch.no_grad():
        next_action, next_log_prob = _squashed_sample(actor, next_obs, next_noise)
        next_q = critic(torch.from_numpy(next_obs)[None], next_action)[0]
        target = reward + s.gamma * bootstrap * (next_q - s.entropy_coef * next_log_prob)
    q = critic(torch.from_numpy(obs)[None], torch.from_numpy(action)[None])[0]  # the [-1, 1] box: ã = a
    scaler = copy.deepcopy(agent.td_scaler)
    entropy_reward = reward - s.entropy_coef * float(log_prob.detach())  # r_ent of the sample ã
    sigma = scaler.observe(entropy_reward, s.gamma * bootstrap, terminated or truncated)
    critic_grads = torch.autograd.grad(((target - q) / sigma) ** 2, list(critic.parameters()))
    actor_loss = s.entropy_coef * log_prob - critic(torch.from_numpy(obs)[None], sampled)[0]  # pre-update Q
    actor_grads = torch.autograd.grad(actor_loss, list(actor.parameters()))
    return {
        "metrics": {"td_error": float((target - q).detach()), "td_error_scale": sigma,
                    "entropy": -float(log_prob.detach())},
        "entropy_reward": entropy_reward,
        "sampled": sampled.detach()[0],
        "actor_grads": actor_grads,
        "critic_grads": critic_grads,
        "actor": [_adam_step(p.detach(), g, actor_state.get(i), s.actor_lr, s.beta2, s.adam_eps)
                  for i, (p, g) in enumerate(zip(actor.parameters(), actor_grads))],
        "critic": [_adam_step(p.detach(), g, critic_state.get(i), s.critic_lr, s.beta2, s.adam_eps)
                   for i, (p, g) in enumerate(zip(critic.parameters(), critic_grads))],
    }


def _assert_update_as_expected(agent, metrics, expected):
    for key, value in expected["metrics"].items():
        assert metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert (metrics["effective_step_size"], metrics["trace_norm"]) == (agent.settings.critic_lr, 0.0)
    for name in ("actor", "critic"):
        parameters = list(agent.networks[name].parameters())
        for p, g, after in zip(parameters, expected[f"{name}_grads"], expected[name], strict=True):
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(p.detach(), after, rtol=1e-4, atol=1e-6)


def _generator_copy(agent):
    generator = torch.Generator()
    generator.set_state(agent.torch_generator.get_state())
    return generator


OTHER_ACTION = np.float32([0.25, -0.6])


@pytest.mark.parametrize("terminated", [False, True])
@pytest.mark.parametrize("case", ["executed", "other_action", "not_acted", "deterministic_act"])
def test_one_update_follows_the_authors_procedure(case, terminated):
    """executed: act() then update() with its action — ã is the executed sample, recomputed from
    the ε act drew (the next draw of the agent's generator), and the actor's gradient goes through
    the pre-update critic. The other cases are updates for an action the agent did not just
    sample: ã is a fresh sample (the generator's next draw at update time)."""
    agent = _agent(seed=4)
    _run(agent, _stream(9, seed=1))  # warm up: σ_δ ≠ 1, Adam moments non-zero
    obs, next_obs, reward = np.float32([0.3, -1.2, 0.5]), np.float32([-0.1, 0.4, 2.0]), 0.7
    generator = _generator_copy(agent)
    if case == "executed":
        action = agent.act(obs)
    elif case == "other_action":
        agent.act(obs)
        torch.randn((1, 2), generator=generator)  # act's draw, not used by the update
        action = OTHER_ACTION
    elif case == "not_acted":
        action = OTHER_ACTION
    else:
        action = agent.act(obs, deterministic=True)  # draws nothing
    noise = torch.randn((1, 2), generator=generator)
    next_noise = torch.randn((1, 2), generator=generator)

    expected = _expected_update(agent, obs, action, reward, next_obs, terminated, False, noise, next_noise)
    metrics = agent.update(obs, action, reward, next_obs, terminated, False)

    if case == "executed":  # the actor objective's ã is the action taken
        torch.testing.assert_close(expected["sampled"], torch.from_numpy(action))
    assert metrics["td_error_scale"] != 1.0
    _assert_update_as_expected(agent, metrics, expected)
    assert agent.td_scaler.rewards.count == 10  # nine warm-up transitions and this one
    assert torch.equal(agent.torch_generator.get_state(), generator.get_state())  # no other draw


def test_the_old_order_and_a_fresh_sample_would_give_other_actor_gradients():
    """The reference tells the procedures apart: the actor's gradient through the critic after
    its step (the old order), or at a fresh ã, differs from the authors' beyond the tolerances."""
    agent = _agent(seed=6)
    _run(agent, _stream(5, seed=2))
    obs, next_obs = np.float32([1.0, 0.2, -0.7]), np.float32([0.1, 0.0, 0.9])
    generator = _generator_copy(agent)
    action = agent.act(obs)
    noise, next_noise = torch.randn((1, 2), generator=generator), torch.randn((1, 2), generator=generator)
    expected = _expected_update(agent, obs, action, 1.5, next_obs, False, False, noise, next_noise)
    fresh = _expected_update(agent, obs, action, 1.5, next_obs, False, False, next_noise,
                             torch.randn((1, 2), generator=generator))
    actor, stepped_critic = copy.deepcopy(agent.actor), copy.deepcopy(agent.critic)
    with torch.no_grad():
        for p, after in zip(stepped_critic.parameters(), expected["critic"], strict=True):
            p.copy_(after)
    sampled, log_prob = _squashed_sample(actor, obs, noise)
    late = torch.autograd.grad(
        agent.settings.entropy_coef * log_prob - stepped_critic(torch.from_numpy(obs)[None], sampled)[0],
        list(actor.parameters()))
    metrics = agent.update(obs, action, 1.5, next_obs, False, False)
    _assert_update_as_expected(agent, metrics, expected)
    for other in (late, fresh["actor_grads"]):
        assert any(not torch.allclose(g, e, rtol=1e-2, atol=1e-6) for g, e in zip(other, expected["actor_grads"]))


def test_without_td_error_scaling_the_scale_is_one():
    agent = _agent(settings=AVGSettings(hidden_sizes=(16, 16), td_error_scaling=False))
    assert {m["td_error_scale"] for _, m in _run(agent, _stream(12))} == {1.0}
    assert agent.td_scaler.rewards.count == 0


def test_metrics_carry_the_keys_the_loop_logs():
    agent = _agent()
    (_, metrics), = _run(agent, _stream(1))
    assert set(metrics) == {"td_error", "effective_step_size", "trace_norm", *AVG.extra_metrics}
    assert all(isinstance(v, float) for v in metrics.values())


# -- actions ---------------------------------------------------------------------------------------
def test_actions_lie_in_the_action_box():
    box = gym.spaces.Box(np.float32([-2.0, 0.0]), np.float32([1.0, 3.0]), dtype=np.float32)
    agent = _agent(action_space=box)
    rng = np.random.default_rng(0)
    for _ in range(50):
        obs = (rng.normal(size=3) * 50).astype(np.float32)
        for deterministic in (False, True):
            action = agent.act(obs, deterministic=deterministic)
            assert action.shape == (2,) and action.dtype == np.float32
            assert box.contains(action)
    with torch.no_grad():  # a saturated policy reaches the bounds without passing them
        agent.actor.mean_head.bias.copy_(torch.tensor([100.0, -100.0]))
    np.testing.assert_array_equal(agent.act(np.zeros(3, np.float32), deterministic=True), [1.0, 0.0])
    assert box.contains(agent.act(np.zeros(3, np.float32)))


def test_the_critic_sees_the_action_mapped_back_to_the_unit_box():
    box = gym.spaces.Box(np.float32([-2.0, 0.0]), np.float32([1.0, 3.0]), dtype=np.float32)
    agent = _agent(action_space=box)
    unit = agent._to_unit_action(np.float32([1.0, 0.75]))
    torch.testing.assert_close(unit, torch.tensor([1.0, -0.5]))


# -- state, determinism ----------------------------------------------------------------------------
def test_state_dict_round_trip_continues_identically():
    transitions = list(_stream(40, seed=2))
    original = _agent(seed=5)
    _run(original, transitions[:20])
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = _agent(seed=99)  # other weights and generators until the state is loaded
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for (a1, m1), (a2, m2) in zip(_run(original, transitions[20:]), _run(restored, transitions[20:]), strict=True):
        np.testing.assert_array_equal(a1, a2)
        assert m1 == m2
    for name in ("actor", "critic"):
        for p, q in zip(original.networks[name].parameters(), restored.networks[name].parameters()):
            assert torch.equal(p, q)
    assert original.td_scaler.state_dict() == restored.td_scaler.state_dict()
    assert restored.num_updates == 40


def test_a_state_taken_between_act_and_update_gives_the_same_update():
    transitions = list(_stream(30, seed=4))
    original = _agent(seed=5)
    _run(original, transitions[:8])
    obs, reward, next_obs, terminated, truncated = transitions[8]
    generator = _generator_copy(original)
    action = original.act(obs)
    noise, next_noise = torch.randn((1, 2), generator=generator), torch.randn((1, 2), generator=generator)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # the remembered sample is plain tensors
    restored, forgetful = _agent(seed=99), _agent(seed=99)
    restored.load_state_dict(state)
    forgetful.load_state_dict({**state, "extra": {**state["extra"], "executed": None}})

    expected = _expected_update(restored, obs, action, reward, next_obs, terminated, truncated, noise, next_noise)
    m1 = original.update(obs, action, reward, next_obs, terminated, truncated)
    m2 = restored.update(obs, action, reward, next_obs, terminated, truncated)
    assert m1 == m2
    _assert_update_as_expected(restored, m2, expected)  # the executed sample, not a fresh one
    for p, q in zip(original.actor.parameters(), restored.actor.parameters(), strict=True):
        assert torch.equal(p, q)
    # without the remembered sample the update falls back to a fresh ã: other actor weights
    forgetful.update(obs, action, reward, next_obs, terminated, truncated)
    assert not all(torch.equal(p, q) for p, q in zip(original.actor.parameters(), forgetful.actor.parameters()))
    for (a1, m1), (a2, m2) in zip(_run(original, transitions[9:]), _run(restored, transitions[9:]), strict=True):
        np.testing.assert_array_equal(a1, a2)
        assert m1 == m2


def test_loading_state_of_other_settings_is_refused_before_anything_changes():
    agent = _agent()
    _run(agent, _stream(3))
    other = _agent(settings=AVGSettings(hidden_sizes=(16, 16), entropy_coef=0.2))
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(ConfigError, match="entropy_coef"):
        other.load_state_dict(agent.state_dict())
    for name in ("actor", "critic"):
        for key, value in other.networks[name].state_dict().items():
            assert torch.equal(value, before["networks"][name][key])


def _mixed_run(agent, transitions):
    """Executed-sample updates, with every third one for an action the agent did not sample (a
    fallback) and a deterministic act in between."""
    out = []
    for i, (obs, reward, next_obs, terminated, truncated) in enumerate(transitions):
        action = agent.act(obs)
        out.append(agent.act(next_obs, deterministic=True))
        if i % 3 == 2:
            action = np.clip(action[::-1] * 0.5, -1, 1).astype(np.float32)
        out.append((action, agent.update(obs, action, reward, next_obs, terminated, truncated)))
    return out


def test_same_seed_same_learning_other_seed_other_weights():
    agents = [_agent(seed=seed) for seed in (7, 7, 8)]
    runs = [_mixed_run(agent, _stream(25, seed=3)) for agent in agents]
    for first, second in zip(runs[0], runs[1], strict=True):
        if isinstance(first, tuple):
            np.testing.assert_array_equal(first[0], second[0])
            assert first[1] == second[1]
        else:
            np.testing.assert_array_equal(first, second)
    for name in ("actor", "critic"):
        for p, q in zip(agents[0].networks[name].parameters(), agents[1].networks[name].parameters()):
            assert torch.equal(p, q)
    assert agents[0].td_scaler.state_dict() == agents[1].td_scaler.state_dict()
    assert agents[0].td_scaler.squared_returns.count == 4
    assert not np.array_equal(runs[0][1][0], runs[2][1][0])


def test_initial_weights_do_not_depend_on_the_global_rng():
    torch.manual_seed(1)
    first = _agent(seed=3)
    torch.manual_seed(2)
    second = _agent(seed=3)
    for p, q in zip(first.actor.parameters(), second.actor.parameters()):
        assert torch.equal(p, q)


def test_orthogonal_initialization_and_zero_biases():
    agent = _agent(settings=AVGSettings())
    hidden = agent.critic.trunk[2].weight  # 256 × 256: square, so W Wᵀ = I
    torch.testing.assert_close(hidden @ hidden.T, torch.eye(256), atol=1e-5, rtol=0)
    biases = [m.bias.detach() for m in agent.actor.modules() if isinstance(m, torch.nn.Linear)]
    assert all(float(b.abs().max()) == 0.0 for b in biases)


def test_end_episode_drops_the_partial_return_and_the_remembered_sample():
    agent = _agent()
    _run(agent, _stream(4, ends_every=100))
    obs = np.float32([0.5, 0.5, -0.5])
    action = agent.act(obs)
    assert agent.td_scaler.episode_return != 0.0 and agent._executed is not None
    agent.end_episode()
    assert agent.td_scaler.episode_return == 0.0 and agent.td_scaler.squared_returns.count == 0
    assert agent._executed is None
    # an update for that action now falls back to a fresh sample: two draws (ã and a')
    generator = _generator_copy(agent)
    agent.update(obs, action, 0.0, obs, False, False)
    torch.randn((1, 2), generator=generator), torch.randn((1, 2), generator=generator)
    assert torch.equal(agent.torch_generator.get_state(), generator.get_state())


def test_the_remembered_sample_lives_from_act_to_the_next_update():
    agent = _agent()
    obs, other = np.float32([0.1, 0.2, 0.3]), np.float32([1.0, 1.0, 1.0])
    assert agent._executed is None
    action = agent.act(obs)
    agent.act(other, deterministic=True)  # a deterministic act leaves the sample as it is
    np.testing.assert_array_equal(agent._executed.action, action)
    np.testing.assert_array_equal(agent._executed.obs, obs)
    agent.update(obs, action, 1.0, other, False, False)
    assert agent._executed is None  # the weights changed: the same transition again is a fallback
    generator = _generator_copy(agent)
    agent.update(obs, action, 1.0, other, False, False)
    torch.randn((1, 2), generator=generator), torch.randn((1, 2), generator=generator)  # fresh ã and a'
    assert torch.equal(agent.torch_generator.get_state(), generator.get_state())


# -- settings and refused inputs --------------------------------------------------------------------
def test_settings_from_config():
    assert AVGSettings.from_config(Config(hidden_sizes=[256, 256])) == AVGSettings()
    authors_hopper = AVGSettings.from_config(Config(avg_actor_lr=1.1e-5, avg_critic_lr=7.7e-5, avg_entropy_coef=0.3,
                                                    avg_td_error_scaling=False))
    assert (authors_hopper.actor_lr, authors_hopper.critic_lr, authors_hopper.entropy_coef,
            authors_hopper.td_error_scaling) == (1.1e-5, 7.7e-5, 0.3, False)
    assert AVGSettings.from_config(Config(gamma=0.95)).gamma == 0.95
    assert AVGSettings.from_config(Config(hidden_sizes=[64, 32])).hidden_sizes == (64, 32)
    assert AVGSettings.from_config(Config(), entropy_coef=0.1).entropy_coef == 0.1
    defaults = AVGSettings()
    assert (defaults.actor_lr, defaults.critic_lr, defaults.beta1, defaults.beta2, defaults.entropy_coef,
            defaults.gamma, defaults.hidden_sizes) == (0.0063, 0.0087, 0.0, 0.999, 0.07, 0.99, (256, 256))
    assert AVG(OBS_SPACE, ACTION_SPACE, Config(hidden_sizes=[8])).settings.hidden_sizes == (8,)


@pytest.mark.parametrize("bad", [{"beta1": 1.0}, {"actor_lr": -1.0}, {"hidden_sizes": ()}, {"gamma": 1.5},
                                 {"log_std_min": 3.0}])
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ConfigError, match="AVG settings"):
        AVGSettings(**bad)


def test_discrete_action_spaces_are_refused_with_one_clear_line():
    with pytest.raises(ConfigError) as error:
        AVG(OBS_SPACE, gym.spaces.Discrete(3), Config())
    message = str(error.value)
    assert "avg supports 1-D Box action spaces" in message and "Discrete(3)" in message and "stream_ac" in message
    assert "\n" not in message


@pytest.mark.parametrize("space", [gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32), None])
def test_unbounded_or_missing_action_spaces_are_refused(space):
    with pytest.raises(ConfigError, match="avg"):
        AVG(OBS_SPACE, space, Config())


def test_image_observations_are_refused():
    with pytest.raises(ConfigError, match="1-D observations"):
        AVG(gym.spaces.Box(0, 1, shape=(4, 10, 10), dtype=np.float32), ACTION_SPACE, Config())


# -- learning (slow) ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_learns_a_contextual_bandit(seed):
    """One-step episodes, reward −(a − s/2)² for s = ±1: the mean action moves to s/2 (the
    entropy bonus keeps the maximum-entropy optimum centred there)."""
    agent = AVG(gym.spaces.Box(-np.inf, np.inf, (2,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32),
                Config(seed=seed), AVGSettings(hidden_sizes=(32, 32)))
    rng = np.random.default_rng(seed)
    for _ in range(600):
        obs = np.float32([rng.choice([-1.0, 1.0]), 0.0])
        action = agent.act(obs)
        agent.update(obs, action, -float((action[0] - 0.5 * obs[0]) ** 2), obs, True, False)
    for sign in (-1.0, 1.0):
        assert agent.act(np.float32([sign, 0.0]), deterministic=True)[0] == pytest.approx(0.5 * sign, abs=0.25)
