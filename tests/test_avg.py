"""AVG (streamx.agents.avg) against hand-computed values and an independent autograd recomputation
of its losses; action bounds, state-dict round trip, determinism, refused inputs."""

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
    # step 1: one reward, no variance yet → no scaling
    assert scaler.observe(1.0, 0.9, False) == 1.0
    # step 2: rewards 1, 2 → Var[R] = 0.5; discounts 0.9, 0.9 → Var[γ] = 0; no episode ended
    assert scaler.observe(2.0, 0.9, False) == pytest.approx(math.sqrt(0.5))
    # step 3 ends the episode (γ_t = 0): G = 1 + 0.9·2 + 0.81·4 = 6.04
    # rewards 1, 2, 4: mean 7/3, Var = (16 + 1 + 25)/9/2 = 7/3; discounts .9, .9, 0: Var = 0.54/2 = 0.27
    assert scaler.squared_returns.count == 0
    sigma = scaler.observe(4.0, 0.0, True)
    assert scaler.squared_returns.mean == pytest.approx(6.04 ** 2)
    assert sigma == pytest.approx(math.sqrt(7 / 3 + 0.27 * 6.04 ** 2))
    # step 4: rewards 1, 2, 4, −1: mean 1.5, Var = 13/3; discounts .9, .9, 0, .9: Var = 0.6075/3 = 0.2025
    assert scaler.observe(-1.0, 0.9, False) == pytest.approx(math.sqrt(13 / 3 + 0.2025 * 6.04 ** 2))
    # step 5: the new episode's partial return −1 + 0.9·3 = 1.7 is kept until it ends or is dropped
    scaler.observe(3.0, 0.9, False)
    assert scaler.episode_return == pytest.approx(1.7)
    scaler.forget_episode()
    assert (scaler.episode_return, scaler.discount_product) == (0.0, 1.0)
    assert scaler.squared_returns.count == 1


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


# -- one update against the paper's losses, recomputed independently --------------------------------
def _adam_step(param_before, grad, state_before, lr, beta2, eps):
    """Adam with β₁ = 0 written out: m = g, v = β₂v + (1 − β₂)g², Δ = −lr·g/(√(v/(1 − β₂ᵗ)) + ε)."""
    step = float(state_before["step"]) + 1 if state_before else 1.0
    v = (state_before["exp_avg_sq"] * beta2 if state_before else torch.zeros_like(grad)) + (1 - beta2) * grad ** 2
    return param_before - lr * grad / ((v / (1 - beta2 ** step)).sqrt() + eps)


@pytest.mark.parametrize("terminated", [False, True])
def test_one_update_follows_the_papers_losses(terminated):
    agent = _agent(seed=4)
    _run(agent, _stream(9, seed=1))  # warm up: σ_δ ≠ 1, Adam moments non-zero
    s = agent.settings
    obs, next_obs = np.float32([0.3, -1.2, 0.5]), np.float32([-0.1, 0.4, 2.0])
    action, reward = agent.act(obs), 0.7

    actor, critic = copy.deepcopy(agent.actor), copy.deepcopy(agent.critic)
    generator = torch.Generator()
    generator.set_state(agent.torch_generator.get_state())
    scaler = copy.deepcopy(agent.td_scaler)
    sigma = scaler.observe(reward, 0.0 if terminated else s.gamma, terminated)
    critic_state = copy.deepcopy(agent.critic_optimizer.state_dict()["state"])
    actor_state = copy.deepcopy(agent.actor_optimizer.state_dict()["state"])

    metrics = agent.update(obs, action, reward, next_obs, terminated, False)

    # the reference: a' at s' and ã at s from one N(0, I) draw of shape (2, d), log π from torch's
    # TransformedDistribution, the target, the losses, and their gradients by autograd
    observations = torch.from_numpy(np.stack((obs, next_obs)))
    noise = torch.randn((2, 2), generator=generator)
    mean, log_std = actor(observations)
    std = log_std.exp()
    tanh = TanhTransform(cache_size=1)
    sampled = tanh(mean + std * noise)
    log_prob = TransformedDistribution(Normal(mean, std), [tanh]).log_prob(sampled).sum(-1)
    with torch.no_grad():
        bootstrap = 0.0 if terminated else 1.0
        next_q = critic(observations[1:], sampled[1:].detach())[0]
        target = reward + s.gamma * bootstrap * (next_q - s.entropy_coef * log_prob[1])
    q = critic(observations[:1], torch.from_numpy(action)[None])[0]
    critic_loss = 0.5 * ((target - q) / sigma) ** 2
    critic_grads = torch.autograd.grad(critic_loss, list(critic.parameters()))
    updated_critic = copy.deepcopy(agent.critic)  # the actor's objective uses the updated critic
    actor_loss = s.entropy_coef * log_prob[0] - updated_critic(observations[:1], sampled[:1])[0]
    actor_grads = torch.autograd.grad(actor_loss, list(actor.parameters()))

    assert metrics["td_error"] == pytest.approx(float((target - q).detach()), rel=1e-5, abs=1e-6)
    assert metrics["td_error_scale"] == pytest.approx(sigma)
    assert sigma != 1.0
    assert metrics["entropy"] == pytest.approx(-float(log_prob[0].detach()), rel=1e-5, abs=1e-6)
    assert (metrics["effective_step_size"], metrics["trace_norm"]) == (s.critic_lr, 0.0)
    for index, (p, g, before) in enumerate(zip(agent.critic.parameters(), critic_grads, critic.parameters())):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(p.detach(), _adam_step(before.detach(), g, critic_state.get(index), s.critic_lr,
                                                          s.beta2, s.adam_eps), rtol=1e-4, atol=1e-6)
    for index, (p, g, before) in enumerate(zip(agent.actor.parameters(), actor_grads, actor.parameters())):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(p.detach(), _adam_step(before.detach(), g, actor_state.get(index), s.actor_lr,
                                                          s.beta2, s.adam_eps), rtol=1e-4, atol=1e-6)


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


def test_same_seed_same_learning_other_seed_other_weights():
    runs = [_run(_agent(seed=seed), _stream(25, seed=3)) for seed in (7, 7, 8)]
    for (a1, m1), (a2, m2) in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(a1, a2)
        assert m1 == m2
    assert not np.array_equal(runs[0][0][0], runs[2][0][0])


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


def test_end_episode_drops_the_partial_return():
    agent = _agent()
    _run(agent, _stream(4, ends_every=100))
    assert agent.td_scaler.episode_return != 0.0
    agent.end_episode()
    assert agent.td_scaler.episode_return == 0.0 and agent.td_scaler.squared_returns.count == 0


# -- settings and refused inputs --------------------------------------------------------------------
def test_settings_from_config():
    assert AVGSettings.from_config(Config()) == AVGSettings()
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
    assert "continuous action space" in message and "Discrete(3)" in message and "stream_ac" in message
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
