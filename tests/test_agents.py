"""Each agent's update against a reference written directly from PAPER §1.1 and §2."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from streamx import Config, ConfigError, make_agent
from streamx.agents.ac import CategoricalPolicy, GaussianPolicy
from streamx.nn import mlp

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)


def _reference_obgd(net, grads, traces, td_error, lr, gamma, lamda, kappa, reset):
    """w ← w + α̂ δ z with α̂ = α / max(α κ max(|δ|,1) Σ‖z‖₁, 1), written out per tensor."""
    for z, g in zip(traces, grads):
        z.mul_(gamma * lamda).add_(g)
    bound = lr * kappa * max(abs(td_error), 1.0) * sum(float(z.abs().sum()) for z in traces)
    step_size = lr / max(bound, 1.0)
    with torch.no_grad():
        for p, z in zip(net.parameters(), traces):
            p.add_(step_size * td_error * z)
    if reset:
        for z in traces:
            z.zero_()
    return step_size


def _random_transitions(n, seed=0, ends_every=7):
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield (rng.normal(size=4).astype(np.float32), float(rng.normal()), rng.normal(size=4).astype(np.float32),
               (i + 1) % ends_every == 0, False)


def test_stream_td_matches_reference():
    torch.manual_seed(0)
    agent = make_agent("stream_td", OBS_SPACE, None, hidden_sizes=[8, 8])
    ref = copy.deepcopy(agent.value_network)
    traces = [torch.zeros_like(p) for p in ref.parameters()]
    for obs, reward, next_obs, terminated, truncated in _random_transitions(30):
        metrics = agent.update(obs, None, reward, next_obs, terminated, truncated)
        v = ref(torch.as_tensor(obs)[None])[0, 0]
        with torch.no_grad():
            v_next = 0.0 if terminated else float(ref(torch.as_tensor(next_obs)[None])[0, 0])
        td_error = reward + 0.99 * v_next - float(v.detach())
        ref.zero_grad()
        v.backward()
        step = _reference_obgd(ref, [p.grad for p in ref.parameters()], traces, td_error, 1.0, 0.99, 0.8, 2.0,
                               terminated or truncated)
        assert metrics["td_error"] == pytest.approx(td_error, rel=1e-4, abs=1e-6)
        assert metrics["effective_step_size"] == pytest.approx(step, rel=1e-4)
    for p, q in zip(agent.value_network.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_truncation_is_termination_by_default_and_bootstraps_when_asked():
    obs, next_obs = np.ones(4, np.float32), np.zeros(4, np.float32)
    torch.manual_seed(0)
    a = make_agent("stream_td", OBS_SPACE, None, hidden_sizes=[8])
    torch.manual_seed(0)
    b = make_agent("stream_td", OBS_SPACE, None, hidden_sizes=[8], bootstrap_on_truncation=True)
    v, v_next = a.predict(obs), a.predict(next_obs)
    assert a.update(obs, None, 1.0, next_obs, False, True)["td_error"] == pytest.approx(1.0 - v, rel=1e-5)
    assert b.update(obs, None, 1.0, next_obs, False, True)["td_error"] == pytest.approx(
        1.0 + 0.99 * v_next - v, rel=1e-5)


def test_stream_q_watkins_cuts_traces_only_after_non_greedy_actions():
    torch.manual_seed(0)
    agent = make_agent("stream_q", OBS_SPACE, gym.spaces.Discrete(3), hidden_sizes=[8])
    obs, next_obs = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
    trace = agent.optimizer.state
    greedy = int(agent.q_values(obs).argmax())
    agent.update(obs, greedy, 0.5, next_obs, False, False)
    assert sum(float(s["eligibility_trace"].abs().sum()) for s in trace.values()) > 0  # greedy: kept
    greedy = int(agent.q_values(obs).argmax())
    non_greedy = (greedy + 1) % 3
    agent.update(obs, non_greedy, 0.5, next_obs, False, False)
    assert sum(float(s["eligibility_trace"].abs().sum()) for s in trace.values()) == 0  # exploratory: cut


def test_stream_q_target_uses_max_and_epsilon_decays_linearly():
    torch.manual_seed(0)
    agent = make_agent("stream_q", OBS_SPACE, gym.spaces.Discrete(3), hidden_sizes=[8], total_steps=1000,
                       exploration_fraction=0.1)
    obs, next_obs = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
    q, q_next = agent.q_values(obs), agent.q_values(next_obs)
    metrics = agent.update(obs, 1, 0.25, next_obs, False, False)
    assert metrics["td_error"] == pytest.approx(0.25 + 0.99 * float(q_next.max()) - float(q[1]), rel=1e-5)
    assert agent.epsilon == pytest.approx(1.0 - 0.99 * 1 / 100)
    agent.num_updates = 50
    assert agent.epsilon == pytest.approx(0.505)
    agent.num_updates = 5000
    assert agent.epsilon == pytest.approx(0.01)


def test_epsilon_horizon_is_absolute_when_exploration_steps_is_set():
    """PAPER §9: a shorter run keeps the paper's ε horizon instead of annealing faster."""
    agent = make_agent("stream_q", OBS_SPACE, gym.spaces.Discrete(3), hidden_sizes=[8], total_steps=1000,
                       exploration_fraction=0.5, exploration_steps=4000)
    agent.num_updates = 1000  # the run's end: a quarter of the way down the paper's schedule
    assert agent.epsilon == pytest.approx(1.0 - 0.99 * 0.25)


def test_suites_give_the_papers_epsilon_horizon_at_any_budget():
    from streamx.run import resolve_config

    assert resolve_config("stream_q", "CartPole-v1", overrides={"total_steps": 50_000}).exploration_steps == 25_000
    minatar = pytest.importorskip("minatar") and resolve_config("stream_q", "MinAtar/Breakout-v1",
                                                                 overrides={"total_steps": 100_000})
    assert minatar.exploration_steps == 1_000_000  # 0.2 × the paper's 5M steps
    assert resolve_config("stream_sarsa", "MinAtar/Breakout-v1").exploration_steps == 500_000  # 0.05 × 10M
    # asking for a fraction (without steps) gets the fraction, of this run's length
    custom = resolve_config("stream_q", "CartPole-v1", overrides={"total_steps": 50_000, "exploration_fraction": 0.1})
    assert custom.exploration_steps is None
    agent = make_agent("stream_q", OBS_SPACE, gym.spaces.Discrete(3), **{
        k: v for k, v in custom.to_dict().items() if k in ("total_steps", "exploration_fraction", "exploration_steps")})
    agent.num_updates = 2500  # half of 0.1 × 50k
    assert agent.epsilon == pytest.approx(1.0 - 0.99 * 0.5)


def test_stream_sarsa_bootstraps_on_the_next_action_it_then_takes():
    torch.manual_seed(0)
    agent = make_agent("stream_sarsa", OBS_SPACE, gym.spaces.Discrete(3), hidden_sizes=[8], epsilon_start=0.5,
                       epsilon_end=0.5)
    obs, next_obs = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
    for _ in range(20):
        q, q_next = agent.q_values(obs), agent.q_values(next_obs)
        metrics = agent.update(obs, 0, 1.0, next_obs, False, False)
        next_action = agent.act(next_obs)
        assert metrics["td_error"] == pytest.approx(1.0 + 0.99 * float(q_next[next_action]) - float(q[0]), rel=1e-5)
    # at an episode end no next action is kept: the first action of the new episode comes from act(reset_obs)
    agent.update(obs, 0, 1.0, next_obs, True, False)
    assert agent._next_action is None


def test_gaussian_and_categorical_closed_forms_match_torch_distributions():
    torch.manual_seed(0)
    gaussian = GaussianPolicy(mlp(4, [8]), 8, 2)
    obs = torch.randn(1, 4)
    action = torch.randn(2)
    log_prob, entropy = gaussian.log_prob_and_entropy(obs, action)
    mean, std = gaussian(obs)
    reference = torch.distributions.Normal(mean[0], std[0])
    assert float(log_prob) == pytest.approx(float(reference.log_prob(action).sum()), rel=1e-5)
    assert float(entropy) == pytest.approx(float(reference.entropy().sum()), rel=1e-5)
    categorical = CategoricalPolicy(mlp(4, [8]), 8, 3, prob_clamp=False)
    log_prob, entropy = categorical.log_prob_and_entropy(obs, torch.tensor(2))
    reference = torch.distributions.Categorical(logits=categorical(obs)[0])
    assert float(log_prob) == pytest.approx(float(reference.log_prob(torch.tensor(2))), rel=1e-5)
    assert float(entropy) == pytest.approx(float(reference.entropy()), rel=1e-5)


@pytest.mark.parametrize("saturated", [False, True])
def test_clamped_categorical_is_torchs_categorical_from_probabilities(saturated):
    """PAPER §9: the categorical built from probabilities clamps them to [eps, 1 − eps] before the
    log, so a saturated action's log-probability passes no gradient."""
    torch.manual_seed(0)
    policy = CategoricalPolicy(mlp(4, [8]), 8, 3)
    obs = torch.randn(1, 4)
    if saturated:  # the head drives action 0's probability far below float32 eps
        with torch.no_grad():
            policy.logits_head.weight.zero_()
            policy.logits_head.bias.copy_(torch.tensor([-30.0, 5.0, 4.0]))
    for action in range(3):
        log_prob, entropy = policy.log_prob_and_entropy(obs, torch.tensor(action))
        ours = torch.autograd.grad(log_prob + 0.3 * entropy, list(policy.parameters()))
        reference = torch.distributions.Categorical(probs=torch.softmax(policy(obs)[0], dim=-1))
        theirs = torch.autograd.grad(reference.log_prob(torch.tensor(action)) + 0.3 * reference.entropy(),
                                     list(policy.parameters()))
        assert float(log_prob) == pytest.approx(float(reference.log_prob(torch.tensor(action))), rel=1e-5)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    if saturated:
        log_prob, _ = policy.log_prob_and_entropy(obs, torch.tensor(0))
        assert float(log_prob) == pytest.approx(np.log(np.finfo(np.float32).eps), rel=1e-6)
        head_gradient = torch.autograd.grad(log_prob, policy.logits_head.bias)[0]
        assert torch.count_nonzero(head_gradient) == 0  # clamped: no gradient at all
        unclamped = CategoricalPolicy(policy.trunk, 8, 3, prob_clamp=False)
        unclamped.logits_head = policy.logits_head
        log_prob, _ = unclamped.log_prob_and_entropy(obs, torch.tensor(0))
        assert float(log_prob) < -30 and torch.autograd.grad(log_prob, policy.logits_head.bias)[0].abs().sum() > 1


@pytest.mark.parametrize("continuous", [True, False])
def test_stream_ac_actor_trace_holds_logpi_plus_signed_entropy_gradient(continuous):
    torch.manual_seed(0)
    space = gym.spaces.Box(-1, 1, (2,), np.float32) if continuous else gym.spaces.Discrete(3)
    agent = make_agent("stream_ac", OBS_SPACE, space, hidden_sizes=[8])
    actor = copy.deepcopy(agent.actor)
    obs, next_obs = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
    action = agent.act(obs)
    metrics = agent.update(obs, action, 2.0, next_obs, False, False)
    action_tensor = torch.as_tensor(action, dtype=torch.float32) if continuous else torch.as_tensor(action)
    log_prob, entropy = actor.log_prob_and_entropy(torch.as_tensor(obs)[None], action_tensor)
    objective = log_prob + 0.01 * np.sign(metrics["td_error"]) * entropy
    grads = torch.autograd.grad(objective, list(actor.parameters()))
    for p, g in zip(agent.actor.parameters(), grads):
        torch.testing.assert_close(agent.actor_optimizer.state[p]["eligibility_trace"], g, rtol=1e-5, atol=1e-7)
    # actor update = α̂_π δ z with κ_policy = 3
    bound = 3.0 * max(abs(metrics["td_error"]), 1.0) * sum(float(g.abs().sum()) for g in grads)
    assert metrics["policy_effective_step_size"] == pytest.approx(1.0 / max(bound, 1.0), rel=1e-5)


def test_wrong_action_space_is_a_clear_error():
    for fast_path in ("off", "auto"):
        with pytest.raises(ConfigError, match=r"stream_q supports Discrete action spaces, but .*Box.*; use an "
                                              r"algorithm that supports it: stream_td, stream_ac, avg"):
            make_agent("stream_q", OBS_SPACE, gym.spaces.Box(-1, 1, (2,)), fast_path=fast_path)
    with pytest.raises(ConfigError, match="stream_sarsa supports Discrete action spaces"):
        make_agent("stream_sarsa", OBS_SPACE, gym.spaces.Box(-1, 1, (2,)))
    with pytest.raises(ConfigError, match=r"avg .*1-D Box.*Discrete\(2\).*stream_q"):
        make_agent("avg", OBS_SPACE, gym.spaces.Discrete(2))


def test_agent_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    a = make_agent("stream_ac", OBS_SPACE, space, hidden_sizes=[8])
    for obs, reward, next_obs, term, trunc in _random_transitions(10):
        a.update(obs, a.act(obs), reward, next_obs, term, trunc)
    torch.manual_seed(1)
    b = make_agent("stream_ac", OBS_SPACE, space, hidden_sizes=[8])
    b.load_state_dict(a.state_dict())
    for obs, reward, next_obs, term, trunc in _random_transitions(10, seed=1):
        act_a, act_b = a.act(obs), b.act(obs)
        np.testing.assert_array_equal(act_a, act_b)
        assert a.update(obs, act_a, reward, next_obs, term, trunc) == b.update(obs, act_b, reward, next_obs, term,
                                                                                trunc)
    with pytest.raises(ConfigError, match="belongs to algorithm 'stream_ac'"):
        make_agent("stream_td", OBS_SPACE, None, hidden_sizes=[8]).load_state_dict(a.state_dict())


def test_config_is_validated():
    with pytest.raises(ConfigError, match="lamda=1.5 must lie in"):
        Config(lamda=1.5)
    with pytest.raises(ConfigError, match="unknown algorithm 'stream_qq'.*did you mean 'stream_q'"):
        Config(algo="stream_qq")
    with pytest.raises(ConfigError, match="unknown key 'lrr' in config.*did you mean 'lr'"):
        Config.from_dict({"lrr": 0.1})
    with pytest.raises(ConfigError, match="wrong type"):
        Config.from_dict({"lr": "fast"})
    with pytest.raises(ConfigError) as error:  # a whole Config where the algorithm's name belongs
        make_agent(Config(algo="stream_q"), OBS_SPACE, gym.spaces.Discrete(2))
    assert str(error.value).startswith("algo=Config(algo='stream_q'") and len(str(error.value)) < 150
    assert "… (Config) in config has the wrong type: expected a string" in str(error.value)
    assert Config.from_dict({"hidden_sizes": "64,64", "layer_norm": "false"}).hidden_sizes == [64, 64]
