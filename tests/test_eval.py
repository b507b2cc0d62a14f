"""`streamx eval`: the same run and seed give the same eval.json, and evaluation uses the
checkpoint's normalizer statistics without updating them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import streamx.evaluate
from streamx import cli
from streamx.checkpoint import restore_env_state
from streamx.envs import make_env
from streamx.rundir import checkpoint_paths, latest_checkpoint, load_run_config
from streamx.wrappers import NormalizeObservation, ScaleReward, find_wrapper


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """Stream AC on Pendulum (continuous returns: any change of the initial states shows)."""
    run = tmp_path_factory.mktemp("eval") / "pendulum"
    assert cli.main(["train", "stream_ac", "--env", "Pendulum-v1", "--steps", "2000", "--seed", "4",
                     "--run-dir", str(run), "max_episode_steps=100", "checkpoint_interval=1000",
                     "progress=false"]) == 0
    return run


def _eval(run: Path, *args: str) -> dict:
    assert cli.main(["eval", str(run), "--episodes", "3", *args]) == 0
    return json.loads((run / "eval.json").read_text())


def test_same_run_and_seed_give_the_same_eval_json(run_dir):
    first = _eval(run_dir)
    second = _eval(run_dir)
    assert first["episodes"] == 3 and len(first["returns"]) == 3 and first["lengths"] == [100, 100, 100]
    assert first["checkpoint_step"] == 2000
    assert first["returns"] == second["returns"] and first == second
    assert len(set(first["returns"])) == 3  # each episode starts from its own initial state
    # another checkpoint is another policy: the returns differ
    other = _eval(run_dir, "--checkpoint", str(checkpoint_paths(run_dir)[0]))
    assert other["checkpoint_step"] == 1000 and other["returns"] != first["returns"]


def _statistics(env) -> dict:
    """The Welford statistics (ScaleReward's return trace is episode state, not a statistic)."""
    return {wrapper_type.__name__: find_wrapper(env, wrapper_type).stats.state_dict()
            for wrapper_type in (NormalizeObservation, ScaleReward)}


def _same(left, right) -> bool:
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    return bool(np.array_equal(left, right))


def test_eval_uses_and_keeps_the_checkpoints_normalizer_statistics(run_dir, monkeypatch):
    config = load_run_config(run_dir)
    payload = latest_checkpoint(run_dir)
    expected_env = make_env(config)
    restore_env_state(expected_env, payload["env_state"], mid_episode=False)
    expected = _statistics(expected_env)
    assert expected["NormalizeObservation"]["count"] > 2000  # every training observation counted
    checkpoints = {path: path.read_bytes() for path in checkpoint_paths(run_dir)}

    built = []

    def recording_make_env(config):
        built.append(make_env(config))
        return built[-1]

    monkeypatch.setattr(streamx.evaluate, "make_env", recording_make_env)
    result = _eval(run_dir)
    (env,) = built
    assert sum(result["lengths"]) == 300
    assert find_wrapper(env, NormalizeObservation).frozen and find_wrapper(env, ScaleReward).frozen
    # 300 evaluation steps later, the statistics are still the checkpoint's, bit for bit
    assert _same(_statistics(env), expected)
    assert {path: path.read_bytes() for path in checkpoint_paths(run_dir)} == checkpoints


def test_frozen_statistics_decide_the_observations_the_policy_sees(run_dir, monkeypatch):
    """With the checkpoint's statistics the evaluation is the one above; with fresh statistics
    (as if they were not restored) the same policy sees other inputs and scores differently."""
    reference = _eval(run_dir)["returns"]
    restore = streamx.evaluate.restore_env_state

    def restore_without_statistics(env, state, mid_episode=True):
        restore(env, {**state, "wrappers": {}}, mid_episode=mid_episode)

    monkeypatch.setattr(streamx.evaluate, "restore_env_state", restore_without_statistics)
    assert _eval(run_dir)["returns"] != reference


def test_epsilon_evaluates_the_epsilon_greedy_policy(tmp_path):
    """--epsilon replaces each action by a uniformly random one with that probability, from a
    generator seeded like the rest of the evaluation: the same numbers each time."""
    run = tmp_path / "cartpole"
    assert cli.main(["train", "stream_q", "--env", "CartPole-v1", "--steps", "1000", "--seed", "2",
                     "--run-dir", str(run), "progress=false"]) == 0
    greedy = _eval(run)
    assert greedy["epsilon"] == 0.0 and _eval(run, "--epsilon", "0") == greedy
    random_play = _eval(run, "--epsilon", "1")
    assert random_play["epsilon"] == 1.0 and random_play == _eval(run, "--epsilon", "1")
    assert random_play["returns"] != greedy["returns"]


@pytest.mark.parametrize("epsilon", ["-0.1", "1.5", "nan"])
def test_epsilon_outside_zero_one_is_refused(run_dir, epsilon, capsys):
    assert cli.main(["eval", str(run_dir), "--epsilon", epsilon]) == 2
    assert "give a probability between 0 and 1" in capsys.readouterr().err


def test_epsilon_needs_a_discrete_action_space(run_dir, capsys):
    before = (run_dir / "eval.json").read_text() if (run_dir / "eval.json").exists() else None
    assert cli.main(["eval", str(run_dir), "--epsilon", "0.05"]) == 2
    assert "draws random actions from a discrete action space" in capsys.readouterr().err
    assert ((run_dir / "eval.json").read_text() if (run_dir / "eval.json").exists() else None) == before


def test_an_episode_a_reset_reports_is_counted(run_dir, monkeypatch):
    """An Atari game the frame cap ends inside a reset (life_loss=reset) is reported by that
    reset's info["episode"]: eval counts it like a game that ended on a step."""
    import gymnasium as gym

    class ReportsOnSecondReset(gym.Wrapper):
        resets = 0

        def reset(self, **kwargs):
            observation, info = self.env.reset(**kwargs)
            ReportsOnSecondReset.resets += 1
            if ReportsOnSecondReset.resets == 2:
                info = {**info, "episode": {"r": -123.0, "l": 7, "t": 0.0}}
            return observation, info

    real_make_env = streamx.evaluate.make_env
    monkeypatch.setattr(streamx.evaluate, "make_env", lambda *a, **k: ReportsOnSecondReset(real_make_env(*a, **k)))
    result = _eval(run_dir)
    assert result["returns"][1] == -123.0 and result["lengths"][1] == 7
    assert len(result["returns"]) == 3
