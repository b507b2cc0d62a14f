"""The paper's normalizers against numpy and hand-rolled references (PAPER §1.5–1.7)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from streamx.wrappers import AddTimeFeature, NormalizeObservation, RunningMeanStd, ScaleReward


def test_running_mean_std_matches_numpy_unbiased_on_a_stream():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(50, 4))
    stats = RunningMeanStd((4,))
    for i, x in enumerate(data):
        stats.update(x)
        np.testing.assert_allclose(stats.mean, data[: i + 1].mean(axis=0), rtol=1e-12)
        expected_var = data[: i + 1].var(axis=0, ddof=1) if i else np.ones(4)
        np.testing.assert_allclose(stats.var, expected_var, rtol=1e-10)


def test_running_mean_std_in_place_and_scalar_are_the_plain_float64_recurrence():
    """The in-place array statistics and the Python-float scalar ones give bit for bit the
    values of the textbook recurrence written with fresh float64 arrays."""
    rng = np.random.default_rng(2)
    data = rng.normal(1.0, 4.0, size=(40, 3)).astype(np.float32)
    array_stats, scalar_stats = RunningMeanStd((3,)), RunningMeanStd(())
    mean, sum_sq = None, None
    first_mean = array_stats.mean
    for i, x in enumerate(data):
        array_stats.update(x)
        scalar_stats.update(float(x[0]))
        x64 = np.asarray(x, dtype=np.float64)
        if i == 0:
            mean, sum_sq = x64.copy(), np.zeros(3)
        else:
            deviation = x64 - mean
            mean = mean + deviation / (i + 1)
            sum_sq = sum_sq + deviation * (x64 - mean)
        assert np.array_equal(array_stats.mean, mean)
        assert np.array_equal(array_stats.var, sum_sq / i if i else np.ones(3))
        assert scalar_stats.mean == mean[0] and scalar_stats.var == (sum_sq[0] / i if i else 1.0)
    assert array_stats.mean is first_mean  # updated in place
    assert np.array_equal(array_stats.std(1e-8), np.sqrt(array_stats.var + 1e-8))
    restored = RunningMeanStd(())
    restored.load_state_dict(scalar_stats.state_dict())
    assert restored.mean == scalar_stats.mean and restored.var == scalar_stats.var


def test_normalize_observation_updates_before_normalizing_including_resets(scripted_env):
    rng = np.random.default_rng(1)
    observations = rng.normal(5.0, 3.0, size=(12, 3))
    env = NormalizeObservation(scripted_env(observations, [0.0] * 11, [None, None, "term"] + [None] * 8))
    outputs = [env.reset()[0]]
    for i in range(11):
        obs = env.step(0)[0]
        outputs.append(obs)
        if i == 2:  # the reset observation after an episode end also updates the statistics
            outputs.append(env.reset()[0])
            break
    seen = observations[: len(outputs)]
    for i, out in enumerate(outputs):
        mean = seen[: i + 1].mean(axis=0)
        var = seen[: i + 1].var(axis=0, ddof=1) if i else np.ones(3)
        np.testing.assert_allclose(out, (seen[i] - mean) / np.sqrt(var + 1e-8), rtol=1e-5, atol=1e-6)
        assert out.dtype == np.float32
    np.testing.assert_allclose(outputs[0], 0.0)  # first sample sets the mean


def test_normalize_observation_frozen_and_state_dict(scripted_env):
    obs = np.arange(12, dtype=float).reshape(6, 2)
    env = NormalizeObservation(scripted_env(obs, [0.0] * 5))
    env.reset()
    env.step(0)
    state = env.state_dict()
    env.frozen = True
    env.step(0)
    assert env.stats.count == 2
    other = NormalizeObservation(scripted_env(obs, [0.0] * 5))
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.stats.mean, env.stats.mean)


def test_frozen_normalize_observation_uses_the_stored_statistics(scripted_env):
    rng = np.random.default_rng(3)
    obs = rng.normal(4.0, 2.0, size=(6, 2))
    env = NormalizeObservation(scripted_env(obs, [0.0] * 5))
    env.reset()
    env.step(0)  # statistics of obs[0], obs[1]
    mean, var = obs[:2].mean(axis=0), obs[:2].var(axis=0, ddof=1)
    env.frozen = True
    for i in (2, 3, 4):  # normalized with the two-sample statistics, which these observations do not change
        np.testing.assert_allclose(env.step(0)[0], (obs[i] - mean) / np.sqrt(var + 1e-8), rtol=1e-6)
    assert env.stats.count == 2
    np.testing.assert_allclose(env.stats.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(env.stats.var, var, rtol=1e-12)
    # a frozen copy loaded from the state dict normalizes the same observation the same way
    other = NormalizeObservation(scripted_env(obs[4:], [0.0]), frozen=True)
    other.load_state_dict(env.state_dict())
    np.testing.assert_allclose(other.reset()[0], (obs[4] - mean) / np.sqrt(var + 1e-8), rtol=1e-6)
    assert other.stats.count == 2


def test_frozen_scale_reward_uses_the_stored_statistics(scripted_env):
    env = ScaleReward(scripted_env(np.zeros((5, 1)), [1.0, 2.0, 3.0, 4.0]), gamma=0.5)
    env.reset()
    env.step(0)
    env.step(0)  # u = 1, 2.5: Var = 1.125 (ddof 1)
    env.frozen = True
    # the trace still follows the rewards (u = 4.25, 6.125) but the statistics stay at Var = 1.125
    assert env.step(0)[1] == pytest.approx(3.0 / np.sqrt(1.125 + 1e-8), rel=1e-12)
    assert env.step(0)[1] == pytest.approx(4.0 / np.sqrt(1.125 + 1e-8), rel=1e-12)
    assert env.stats.count == 2 and env.stats.var == pytest.approx(1.125)
    assert env.return_trace == pytest.approx(0.5 * 4.25 + 4.0)


def test_scale_reward_hand_computed_two_steps(scripted_env):
    env = ScaleReward(scripted_env(np.zeros((3, 1)), [1.0, 2.0]), gamma=0.5)
    env.reset()
    # u1 = 1, Var = 1 (one sample) → r' = 1/√(1 + 1e-8)
    assert env.step(0)[1] == pytest.approx(1.0 / np.sqrt(1 + 1e-8))
    # u2 = 0.5·1 + 2 = 2.5, Var[1, 2.5] (ddof 1) = 1.125 → r' = 2/√1.125
    assert env.step(0)[1] == pytest.approx(2.0 / np.sqrt(1.125 + 1e-8))


def test_scale_reward_matches_hand_rolled_trace_with_episode_ends(scripted_env):
    rng = np.random.default_rng(2)
    rewards = rng.normal(size=40).tolist()
    ends = [None] * 40
    ends[9], ends[20], ends[31] = "term", "trunc", "term"
    env = ScaleReward(scripted_env(np.zeros((50, 1)), rewards, ends), gamma=0.9)
    env.reset()
    trace, history = 0.0, []
    for r, end in zip(rewards, ends):
        scaled = env.step(0)[1]
        done = end is not None
        trace = 0.9 * (1.0 - done) * trace + r  # done is THIS step's flag: u = r on a last step
        history.append(trace)
        var = np.var(history, ddof=1) if len(history) > 1 else 1.0
        assert scaled == pytest.approx(r / np.sqrt(var + 1e-8), rel=1e-9)
        if done:
            env.reset()


def test_time_feature_runs_from_minus_half_and_resets(scripted_env):
    ends = [None, None, "trunc", None]
    env = AddTimeFeature(scripted_env(np.ones((6, 2)), [0.0] * 4, ends), time_limit=4)
    assert env.observation_space.shape == (3,)
    obs, _ = env.reset()
    features = [obs[-1]]
    for _ in range(3):
        features.append(env.step(0)[0][-1])
    assert features == pytest.approx([-0.5, -0.25, 0.0, 0.25])
    assert env.reset()[0][-1] == pytest.approx(-0.5)
    assert env.step(0)[0][-1] == pytest.approx(-0.25)


def test_time_feature_appends_to_a_new_float32_array_each_step(scripted_env):
    """The observation is rounded to float32 and the feature appended as np.float32(t/T − 0.5),
    in a new array every step (a learner may still hold the previous one)."""
    values = np.array([[0.1, 1e-9], [2.0 / 3.0, -7.3], [1e30, 3.0]], dtype=np.float64)
    env = AddTimeFeature(scripted_env(values, [0.0] * 2, [None, None]), time_limit=3)
    first, _ = env.reset()
    second = env.step(0)[0]
    assert first.dtype == second.dtype == np.float32 and first is not second
    np.testing.assert_array_equal(first, np.array([0.1, 1e-9, np.float32(-0.5)], dtype=np.float32))
    np.testing.assert_array_equal(second, np.array([2.0 / 3.0, -7.3, np.float32(1 / 3 - 0.5)], dtype=np.float32))
    np.testing.assert_array_equal(first, np.array([0.1, 1e-9, -0.5], dtype=np.float32))  # untouched by step


class _Emits(gym.Env):
    """Emits one given observation and reward at every step."""

    def __init__(self, space: gym.spaces.Box, observation, reward):
        self.observation_space, self.action_space = space, gym.spaces.Discrete(2)
        self.observation, self.reward = observation, reward

    def reset(self, *, seed=None, options=None):
        return np.zeros(self.observation_space.shape, self.observation_space.dtype), {}

    def step(self, action):
        return self.observation, self.reward, False, False, {}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("observation", "reward", "message"), [
    ([1.0, 2.0, 3.0], 1.0, None),
    ([1.0, np.nan, 3.0], 1.0, "non-finite observation"),
    ([1.0, 2.0, -np.inf], 1.0, "non-finite observation"),
    ([1.0, 2.0, 3.0], float("nan"), "non-finite reward"),
    ([1.0, 2.0, 3.0], float("inf"), "non-finite reward"),
    ([1.0, 2.0, 3.0], np.float32(2.0), None),
    ([1.0, 2.0, 3.0], np.ones(2), "not one number"),
    ([1.0, 2.0], 1.0, r"shape \(2,\) while its observation space declares \(3,\)"),
    ([3e38, 3e38, 3e38], 1e308, None),  # large but finite: the quick sum overflows, the exact check passes
])
def test_check_finite_refuses_what_it_must_and_passes_the_rest(dtype, observation, reward, message):
    from streamx.errors import EnvironmentFault
    from streamx.wrappers import CheckFinite

    space = gym.spaces.Box(-np.inf, np.inf, (3,), dtype)
    env = CheckFinite(_Emits(space, np.asarray(observation, dtype=dtype), reward))
    env.reset()
    if message is None:
        result = env.step(0)
        assert result[0] is env.env.observation and result[1] is reward  # passed through untouched
    else:
        with pytest.raises(EnvironmentFault, match=message):
            env.step(0)


def test_check_finite_refuses_observations_that_are_not_numbers():
    from streamx.errors import EnvironmentFault
    from streamx.wrappers import CheckFinite

    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    env = CheckFinite(_Emits(space, np.array(["a", "b"]), 1.0))
    env.reset()
    with pytest.raises(EnvironmentFault, match="not numbers"):
        env.step(0)
    env = CheckFinite(_Emits(space, [1.0, float("nan")], 1.0))  # a list, not an array
    env.reset()
    with pytest.raises(EnvironmentFault, match="non-finite observation"):
        env.step(0)
