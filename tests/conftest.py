"""Shared test helpers: a tiny scripted environment with known rewards and episode ends."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
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


def streamx_process(*args: str, **kwargs: Any) -> subprocess.Popen:
    """``python -m streamx.cli ARGS`` in a child process (pipes for its output)."""
    return subprocess.Popen([sys.executable, "-m", "streamx.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "MUJOCO_GL": "disable"}, **kwargs)


def kill_9_and_resume(tmp_path: Path, train_args: list[str], steps: int, checkpoints: int = 1,
                      jitter: float = 0.0, timeout: float = 300.0) -> tuple[Path, Path]:
    """Run ``streamx train TRAIN_ARGS`` twice side by side: ``ref`` to the end, and ``killed``
    SIGKILLed once it has written ``checkpoints`` checkpoints (plus up to ``jitter`` seconds, to
    land between two), then ``streamx train --resume`` it. Checks that it really died before
    ``steps`` and that both runs wrote the same episodes; returns (ref dir, killed dir)."""
    from streamx.run import checkpoint_paths

    reference_dir, killed_dir = tmp_path / "ref", tmp_path / "killed"
    reference = streamx_process("train", *train_args, "--run-dir", str(reference_dir))
    victim = streamx_process("train", *train_args, "--run-dir", str(killed_dir))
    deadline = time.time() + timeout
    while len(checkpoint_paths(killed_dir)) < checkpoints and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(0).uniform(0.0, jitter))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert reference.wait(timeout=2 * timeout) == 0, reference.stderr.read()
    summary = killed_dir / "summary.json"
    assert not summary.exists() or json.loads(summary.read_text())["steps"] < steps  # it really died early
    resumed = streamx_process("train", "--resume", str(killed_dir))
    assert resumed.wait(timeout=2 * timeout) == 0, resumed.stderr.read()
    assert episode_rows(killed_dir) == episode_rows(reference_dir)
    return reference_dir, killed_dir


def episode_rows(run_dir: Path) -> list[dict]:
    """episodes.csv without its wall-clock column (what two identical runs share)."""
    from streamx.outputs import read_csv

    return [{k: v for k, v in row.items() if k != "wall_time"} for row in read_csv(Path(run_dir) / "episodes.csv")]
