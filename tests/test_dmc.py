"""DeepMind Control through the vector stack (PAPER §4): flatten → check finite → record raw
episode statistics → clip actions → scale rewards → normalize observations → time feature, on
dm_control/cheetah-run-v0 (skipped without the dmc extra)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("dm_control", reason="the dmc extra is not installed")
pytest.importorskip("shimmy", reason="the dmc extra is not installed")

from streamx import envs
from streamx.outputs import read_csv
from streamx.run import resolve_config, train
from streamx.wrappers import NormalizeObservation, ScaleReward, find_wrapper

ENV = "dm_control/cheetah-run-v0"
ROOT = Path(__file__).resolve().parents[1]
# outermost first, down to gymnasium's TimeLimit that gym.make adds
STACK = ["AddTimeFeature", "NormalizeObservation", "ScaleReward", "ClipAction", "RecordEpisodeStatistics",
         "CheckFinite", "FlattenObservation", "TimeLimit"]


@pytest.fixture(autouse=True)
def _no_rendering(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "disable"))


class RawSpy(gym.Wrapper):
    """Sits directly on the environment gym.make returns: records the actions it receives and
    the raw rewards of each episode."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.actions: list[np.ndarray] = []
        self.episode_rewards: list[list[float]] = []

    def reset(self, **kwargs: Any):
        self.episode_rewards.append([])
        return self.env.reset(**kwargs)

    def step(self, action: Any):
        self.actions.append(np.array(action, copy=True))
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.episode_rewards[-1].append(float(reward))
        return observation, reward, terminated, truncated, info


def _names(env: gym.Env) -> list[str]:
    names, current = [], env
    while isinstance(current, gym.Wrapper):
        names.append(type(current).__name__)
        current = current.env
    return names


@pytest.fixture
def spies(monkeypatch) -> list[RawSpy]:
    made: list[RawSpy] = []
    make_raw = envs._make_raw

    def spied(config, **extra):
        made.append(RawSpy(make_raw(config, **extra)))
        return made[-1]

    monkeypatch.setattr(envs, "_make_raw", spied)
    return made


def test_wrapper_order_is_the_papers():
    env = envs.make_env(resolve_config("stream_ac", ENV))
    assert _names(env)[:len(STACK)] == STACK
    # docs/environments.md shows the same stack
    doc = (ROOT / "docs" / "environments.md").read_text()
    line = " ".join(part.strip() for part in doc.split(f"{ENV}:", 1)[1].split("```", 1)[0].splitlines())
    assert [name.strip() for name in line.split("<-")][:len(STACK)] == STACK
    env.close()


def test_each_wrapper_acts_where_the_order_says(spies):
    config = resolve_config("stream_ac", ENV, overrides={"max_episode_steps": 40})
    env = envs.make_env(config)
    spy = spies[-1]
    assert _names(env)[:len(STACK) - 1] == STACK[:-1] and isinstance(env.unwrapped, gym.Env)
    normalizer, scaler = find_wrapper(env, NormalizeObservation), find_wrapper(env, ScaleReward)
    flat_size = sum(int(np.prod(space.shape)) for space in spy.observation_space.spaces.values())
    obs, _ = env.reset(seed=0)
    assert normalizer.stats.mean.shape == (flat_size,)  # normalization sees the flattened observation
    assert obs.shape == (flat_size + 1,) and obs[-1] == -0.5  # the time feature comes last, not normalized
    rng = np.random.default_rng(0)
    for t in range(1, 41):
        action = rng.uniform(-3.0, 3.0, size=env.action_space.shape).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        raw = spy.episode_rewards[-1][-1]
        # actions reach the simulator clipped to [-1, 1]
        np.testing.assert_array_equal(spy.actions[-1], np.clip(action, -1.0, 1.0))
        # the agent sees the reward scaled by the std of the return trace, this step's included
        assert reward == pytest.approx(raw / scaler.stats.std(1e-8), rel=1e-12)
        assert obs[-1] == np.float32(t / 40 - 0.5)
    assert truncated and not terminated
    # the episode statistics are the raw ones, not the scaled ones the agent saw
    assert info["episode"]["l"] == 40
    assert float(info["episode"]["r"]) == pytest.approx(sum(spy.episode_rewards[-1]), rel=1e-9)
    assert scaler.stats.count == 40 and scaler.stats.var != 1.0
    env.close()


def test_episodes_csv_holds_raw_returns(tmp_path, spies, monkeypatch):
    import streamx.loop

    seen: list[RawSpy] = []  # outside the whole stack: the rewards the agent learns from

    def make_env(config):
        seen.append(RawSpy(envs.make_env(config)))
        return seen[-1]

    monkeypatch.setattr(streamx.loop, "make_env", make_env)
    config = resolve_config("stream_ac", ENV, overrides={
        "total_steps": 1000, "seed": 0, "run_dir": str(tmp_path / "run"), "progress": False, "log_interval": 500})
    assert config.reward_scaling and config.obs_normalization and config.max_episode_steps == 1000
    assert train(config).steps == 1000
    raw, scaled = spies[0].episode_rewards[0], seen[0].episode_rewards[0]
    assert len(raw) == len(scaled) == 1000
    assert abs(sum(scaled) - sum(raw)) > 0.05 * abs(sum(raw))  # scaling changed what the agent saw
    episodes = read_csv(tmp_path / "run" / "episodes.csv")
    assert [int(row["length"]) for row in episodes] == [1000]
    assert float(episodes[0]["return"]) == pytest.approx(sum(raw), rel=1e-5)  # episodes.csv keeps 6 digits
