"""Shared test helpers: a tiny scripted environment with known rewards and episode ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch


class ScriptedEnv(gym.Env):
    """Emits scripted observations/rewards; ``ends[i]`` is ("term" | "trunc" | None) for step i.

    The script continues across resets, so wrappers see one known stream.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, observations: Sequence[Sequence[float]], rewards: Sequence[float],
                 ends: Sequence[str | None] | None = None, num_actions: int = 2):
        self.observations = np.asarray(observations, dtype=np.float64)
        self.rewards = list(rewards)
        self.ends = list(ends) if ends is not None else [None] * len(self.rewards)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=self.observations.shape[1:], dtype=np.float64)
        self.action_space = gym.spaces.Discrete(num_actions)
        self.cursor = 0  # index of the next observation
        self.step_index = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs = self.observations[self.cursor]
        self.cursor += 1
        return obs.copy(), {}

    def step(self, action):
        reward = self.rewards[self.step_index]
        end = self.ends[self.step_index]
        self.step_index += 1
        obs = self.observations[self.cursor]
        self.cursor += 1
        return obs.copy(), reward, end == "term", end == "trunc", {}


@pytest.fixture
def scripted_env():
    return ScriptedEnv


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
