"""DeepMind Control through the vector stack (PAPER §4): flatten → check finite → record raw
episode statistics → clip actions → scale rewards → normalize observations → time feature, on
dm_control/cheetah-run-v0 (skipped without the dmc extra)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

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


def test_a_run_stopped_mid_episode_resumes_exactly(tmp_path, monkeypatch):
    """The simulator state (MuJoCo integration state, the task's episode attributes, dm_control's
    step counter) is checkpointed: periodic checkpoints fall mid-episode at their interval, and a
    run stopped by a signal mid-episode continues it and equals the uninterrupted run bit for bit."""
    from test_conformance import _SignalAt

    from streamx.checkpoint import load_checkpoint
    from streamx.run import checkpoint_paths, resume

    def config(name: str):
        return resolve_config("stream_ac", ENV, overrides={
            "total_steps": 900, "seed": 3, "run_dir": str(tmp_path / name), "progress": False,
            "max_episode_steps": 300, "checkpoint_interval": 250, "keep_checkpoints": 5})

    full = train(config("full"))
    assert [path.name for path in checkpoint_paths(tmp_path / "full")] == [
        f"step_{step:012d}.ckpt" for step in (250, 500, 750, 900)]  # at the interval, mid-episode
    original, counter = envs._make_raw, {"steps": 0}
    monkeypatch.setattr(envs, "_make_raw", lambda cfg, **kw: _SignalAt(original(cfg, **kw), 433, counter))
    stopped = train(config("stopped"))
    assert stopped.status == "interrupted" and stopped.steps == 433
    payload = load_checkpoint(checkpoint_paths(tmp_path / "stopped")[-1])
    assert payload["env_state"]["exact"] and payload["env_state"]["simulator"]["kind"] == "dm_control"
    resumed = resume(tmp_path / "stopped")
    assert resumed.status == "finished" and resumed.steps == 900
    assert resumed.episode_returns == full.episode_returns and resumed.episode_lengths == [300, 300, 300]
    summary = json.loads((tmp_path / "stopped" / "summary.json").read_text())
    assert summary["resumes"] == [{"step": 433, "mid_episode": True}]
    final = load_checkpoint(checkpoint_paths(tmp_path / "stopped")[-1])["agent"]["networks"]
    reference = load_checkpoint(checkpoint_paths(tmp_path / "full")[-1])["agent"]["networks"]
    for name in reference:
        for key, value in reference[name].items():
            assert torch.equal(value, final[name][key]), (name, key)


def test_a_task_that_edits_its_model_is_resumed_at_an_episode_boundary():
    """reacher places its target by editing the model at each reset: the integration state alone
    would not continue it, so its state is not exact; an env not built by streamx is not either."""
    from streamx.checkpoint import env_state

    reacher = envs.make_env(resolve_config("stream_ac", "dm_control/reacher-easy-v0"))
    cheetah = envs.make_env(resolve_config("stream_ac", ENV))
    for env in (reacher, cheetah):
        env.reset(seed=0)
        env.step(env.action_space.sample())
    assert not env_state(reacher)["exact"] and env_state(cheetah)["exact"]
    built_elsewhere = gym.make(ENV)
    built_elsewhere.reset(seed=0)
    assert not env_state(built_elsewhere)["exact"]
    for env in (reacher, cheetah, built_elsewhere):
        env.close()


def test_the_saved_state_restores_the_tasks_attributes_with_their_types():
    """dog-stand measures its stand height and body weight at reset (a NumPy array and a NumPy
    float): a restored environment that never reset gets both back, types included."""
    from streamx.checkpoint import env_state, restore_env_state, to_plain

    config = resolve_config("stream_ac", "dm_control/dog-stand-v0")
    first, second = envs.make_env(config), envs.make_env(config)
    first.reset(seed=0)
    for _ in range(3):
        first.step(first.action_space.sample())
    state = to_plain(env_state(first))
    second.reset(seed=5)
    task, restored = first.unwrapped._env.task, second.unwrapped._env.task
    restored._stand_height, restored._body_weight = None, None
    restore_env_state(second, state)
    assert type(restored._body_weight) is type(task._body_weight) is np.float64
    assert restored._body_weight == task._body_weight
    np.testing.assert_array_equal(restored._stand_height, task._stand_height)
    action = np.full(first.action_space.shape, 0.3, np.float32)
    np.testing.assert_array_equal(first.step(action)[0], second.step(action)[0])
    first.close()
    second.close()


def test_a_task_that_edits_its_model_defers_periodic_checkpoints_to_episode_ends(tmp_path):
    """reacher's state is not exact (its model changes at each reset), which the loop can tell only
    after the first reset: its periodic checkpoints wait for the end of the episode."""
    from streamx.checkpoint import load_checkpoint
    from streamx.run import checkpoint_paths

    config = resolve_config("stream_ac", "dm_control/reacher-easy-v0", overrides={
        "total_steps": 1000, "seed": 0, "run_dir": str(tmp_path / "run"), "progress": False,
        "max_episode_steps": 300, "checkpoint_interval": 250, "keep_checkpoints": 5})
    train(config)
    paths = checkpoint_paths(tmp_path / "run")
    assert [path.name for path in paths] == [f"step_{step:012d}.ckpt" for step in (300, 600, 900, 1000)]
    assert load_checkpoint(paths[0])["loop"]["mid_episode"] is False


def test_dm_control_envs_build_without_notices_nobody_can_act_on():
    """Without a display, importing dm_control makes GLFW warn before dm_control falls back to
    another renderer, and MuJoCo notes that dm_control's own dog model uses a deprecated
    attribute; streamx builds DM Control envs without passing either on. Other MuJoCo warnings
    still reach the log."""
    import logging

    from streamx.envs import _drop_settotalmass_notice

    def record(message):
        return logging.LogRecord("absl", logging.WARNING, __file__, 1, message, None, None)

    assert not _drop_settotalmass_notice(record("compiler attribute 'settotalmass' is deprecated and will be removed"))
    assert _drop_settotalmass_notice(record("Nan, Inf or huge value in QACC at DOF 0. The simulation is unstable."))
    import subprocess
    import sys

    environment = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "MUJOCO_GL")}
    code = "from streamx.envs import make_env; from streamx.run import resolve_config; " \
           "make_env(resolve_config('stream_ac', 'dm_control/dog-stand-v0')).close()"
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "DISPLAY" not in result.stderr and "settotalmass" not in result.stderr
