"""Batch baselines through Stable-Baselines3: the CLI, the run directory, batch-of-one models,
seeding, and the error messages."""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import os
import signal
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import episode_rows, kill_9_and_resume

from streamx import cli
from streamx.baselines import BASELINES, ZOO, baseline_hyperparameters, resolve_hyperparameters
from streamx.checkpoint import load_checkpoint
from streamx.config import Config
from streamx.outputs import EPISODE_FIELDS, METRIC_FIELDS, read_csv
from streamx.run import checkpoint_paths, resolve_config, resume, seed_everything, train

needs_sb3 = pytest.mark.skipif(importlib.util.find_spec("stable_baselines3") is None,
                               reason="the sb3 extra is not installed")

# The env of each baseline's short runs, and overrides that keep them short: Pendulum gets a short
# time limit (streamx's classic suite raises it to 10,000) so episodes end; PPO1 makes the zoo's
# 20 CartPole epochs per step 2 (test_batch_of_one_models checks the real setting).
_ENVS = {"ppo": ("CartPole-v1",), "ppo1": ("CartPole-v1", "sb3_kwargs={n_epochs: 2}"),
         "dqn": ("CartPole-v1",), "dqn1": ("CartPole-v1",),
         "sac": ("Pendulum-v1", "max_episode_steps=50"), "sac1": ("Pendulum-v1", "max_episode_steps=50")}


def _cli(tmp_path, algo, steps=200, seed=0, name=None, *extra):
    env, *env_overrides = _ENVS[algo]
    run_dir = tmp_path / (name or algo)
    code = cli.main(["train", algo, "--env", env, "--steps", str(steps), "--seed", str(seed), "--run-dir", str(run_dir),
                     "progress=false", "log_interval=100", *env_overrides, *extra])
    assert code == 0
    return run_dir


@needs_sb3
@pytest.mark.parametrize("algo", BASELINES)
def test_each_baseline_writes_a_run_directory(tmp_path, algo):
    run_dir = _cli(tmp_path, algo)
    episodes = read_csv(run_dir / "episodes.csv")
    assert episodes and tuple(episodes[0]) == EPISODE_FIELDS
    steps = [int(row["step"]) for row in episodes]
    assert steps == sorted(steps) and steps[-1] <= 200
    assert sum(int(row["length"]) for row in episodes) <= 200
    metrics = read_csv(run_dir / "metrics.csv")
    assert tuple(metrics[0]) == METRIC_FIELDS
    assert [int(row["step"]) for row in metrics] == [100, 200]
    assert all(float(row["steps_per_second"]) > 0 and row["td_error_rms"] == "" for row in metrics)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 200 and summary["episodes"] == len(episodes)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"] == algo and config["sb3_kwargs"]["policy"] == "MlpPolicy"
    Config.from_dict(config)  # the saved config loads back
    versions = json.loads((run_dir / "versions.json").read_text())
    assert versions["task"] == {"gymnasium": importlib.metadata.version("gymnasium")}
    assert versions["other"]["stable-baselines3"] is not None


@needs_sb3
def test_returns_are_raw_episode_returns_under_vecnormalize(tmp_path):
    """The zoo's Acrobot PPO uses VecNormalize (observations and rewards). Acrobot's raw reward is
    −1 per step and 0 on the step that reaches the goal, so a raw return is −length (cut at the
    time limit) or −(length − 1) (goal reached); the rewards PPO learned from were scaled."""
    from stable_baselines3.common.vec_env import VecNormalize

    config = resolve_config("ppo", "Acrobot-v1", overrides={
        "total_steps": 400, "seed": 0, "max_episode_steps": 50, "run_dir": str(tmp_path / "run"), "progress": False})
    assert resolve_hyperparameters(config)["normalize"] is True
    venv = train(config).agent.get_env()
    assert isinstance(venv, VecNormalize) and venv.norm_reward
    scaled = float(venv.normalize_reward(np.array([-1.0]))[0])
    assert abs(scaled + 1.0) > 0.05, f"VecNormalize left a reward of -1 at {scaled}: the test would not see scaling"
    episodes = read_csv(tmp_path / "run" / "episodes.csv")
    assert len(episodes) >= 7
    for row in episodes:
        length = int(row["length"])
        assert float(row["return"]) in (-float(length), -float(length - 1)), row


def _model(tmp_path, algo, **overrides):
    env, *env_overrides = _ENVS[algo]
    values = dict(item.split("=") for item in env_overrides if not item.startswith("sb3_kwargs"))
    config = resolve_config(algo, env, overrides={"total_steps": 20, "run_dir": str(tmp_path / algo),
                                                  "progress": False, **values, **overrides})
    return train(config).agent


@needs_sb3
def test_batch_of_one_models(tmp_path):
    sac1 = _model(tmp_path, "sac1")
    assert sac1.replay_buffer.buffer_size == 1 and sac1.batch_size == 1
    assert sac1.learning_starts == 0 and sac1.gradient_steps == 1 and sac1.train_freq.frequency == 1
    dqn1 = _model(tmp_path, "dqn1")
    assert dqn1.replay_buffer.buffer_size == 1 and dqn1.batch_size == 1
    assert dqn1.target_update_interval == 1 and dqn1.tau == 1.0 and dqn1.train_freq.frequency == 1
    ppo1 = _model(tmp_path, "ppo1")
    assert ppo1.n_steps == 1 and ppo1.rollout_buffer.buffer_size == 1 and ppo1.batch_size == 1
    assert ppo1.n_epochs == ZOO["ppo"]["CartPole"]["n_epochs"]  # only buffer and batch change


def test_zoo_hyperparameters_for_one_env():
    pytest.importorskip("mujoco")
    ppo = baseline_hyperparameters("ppo", "CartPole-v1")
    assert ppo["n_steps"] == 8 * 32 and "n_envs" not in ppo  # the zoo's 8 envs × 32 steps, in one env
    hopper = baseline_hyperparameters("ppo", "Hopper-v5")
    assert hopper["normalize"] and hopper["n_steps"] == 512 and hopper["learning_rate"] == 9.80828e-05
    assert baseline_hyperparameters("sac", "Walker2d-v5") == {"policy": "MlpPolicy", "learning_starts": 10000,
                                                              "flush_denormal": True, "fused_optimizer": True}
    sac1 = baseline_hyperparameters("sac1", "Walker2d-v5")
    assert sac1["buffer_size"] == sac1["batch_size"] == 1 and sac1["learning_starts"] == 0


def _denormal_survives():
    return bool((torch.tensor([1e-39]) * 1.0).item() != 0.0)  # 1e-39 is below float32's normal range


@needs_sb3
def test_numerics_fused_adam_and_flush_denormal_per_run(tmp_path):
    sac1 = _model(tmp_path, "sac1")
    optimizers = [sac1.actor.optimizer, sac1.critic.optimizer]
    assert all(group["fused"] for opt in optimizers for group in opt.param_groups)
    assert _denormal_survives()  # flushing is reset once the baseline run is over
    plain = _model(tmp_path / "plain", "ppo1", sb3_kwargs={"fused_optimizer": False, "flush_denormal": False})
    assert not any(group["fused"] for group in plain.policy.optimizer.param_groups)
    torch.set_flush_denormal(True)
    seed_everything(0)  # a stream-x run never inherits a baseline's flushing
    assert _denormal_survives()


@needs_sb3
def test_sb3_kwargs_override_and_are_saved(tmp_path):
    run_dir = _cli(tmp_path, "ppo", 100, 0, None, "sb3_kwargs={n_steps: 64, batch_size: 32, learning_rate: 1e-3}")
    saved = json.loads((run_dir / "config.json").read_text())["sb3_kwargs"]
    assert saved["n_steps"] == 64 and saved["batch_size"] == 32 and saved["learning_rate"] == 0.001
    assert saved["gamma"] == 0.98  # the zoo's CartPole value, not overridden


@needs_sb3
@pytest.mark.parametrize("algo", ["ppo1", "sac1"])
def test_same_seed_same_episodes(tmp_path, algo):
    a = _cli(tmp_path, algo, 200, 5, "a")
    b = _cli(tmp_path, algo, 200, 5, "b")
    c = _cli(tmp_path, algo, 200, 6, "c")
    assert len(episode_rows(a)) > 2
    assert episode_rows(a) == episode_rows(b)
    assert episode_rows(a) != episode_rows(c)


@needs_sb3
def test_unknown_hyperparameter_is_one_clear_line(tmp_path, capsys):
    code = cli.main(["train", "sac1", "--env", "Pendulum-v1", "--steps", "10", "--run-dir", str(tmp_path / "x"),
                     "sb3_kwargs={learning_rat: 0.1}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "unknown SAC hyperparameter 'learning_rat'" in err and "did you mean 'learning_rate'" in err
    assert not (tmp_path / "x").exists()


@needs_sb3
def test_wrong_action_space_is_a_clear_error(tmp_path, capsys):
    code = cli.main(["train", "dqn", "--env", "Pendulum-v1", "--steps", "10", "--run-dir", str(tmp_path / "x")])
    assert code == 2 and "dqn needs Discrete actions" in capsys.readouterr().err


def test_missing_extra_names_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import fails as if not installed
    code = cli.main(["train", "sac1", "--env", "Pendulum-v1", "--steps", "10", "--run-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install 'streamx-rl[sb3]'" in err


def _resume_config(tmp_path, algo, name, steps, **overrides):
    env, *env_overrides = _ENVS[algo]
    values = {}
    for item in env_overrides:
        key, value = item.split("=", 1)
        values[key] = {"n_epochs": 2} if key == "sb3_kwargs" else int(value)
    return resolve_config(algo, env, overrides={"total_steps": steps, "seed": 3, "run_dir": str(tmp_path / name),
                                                "progress": False, "log_interval": 50, "checkpoint_interval": 100,
                                                **values, **overrides})


def _sigterm_after(step_at_least):
    def on_episode(step, episode_return, length):
        if step >= step_at_least:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or slurm would: the run checkpoints and stops
        return False
    return on_episode


def _differences(left, right, where="") -> list[str]:
    """Where two nested structures (dicts, lists, tuples, tensors, arrays, numbers, strings)
    differ; tensors and arrays must match in dtype, shape and every bit of every value."""
    if isinstance(left, dict) and isinstance(right, dict):
        if left.keys() != right.keys():
            return [f"{where}: keys {sorted(map(str, left.keys() ^ right.keys()))}"]
        return [d for key in left for d in _differences(left[key], right[key], f"{where}/{key}")]
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        if type(left) is not type(right) or len(left) != len(right):
            return [f"{where}: {type(left).__name__}[{len(left)}] vs {type(right).__name__}[{len(right)}]"]
        return [d for i, (a, b) in enumerate(zip(left, right)) for d in _differences(a, b, f"{where}[{i}]")]
    if isinstance(left, torch.Tensor) and isinstance(right, torch.Tensor):
        same = left.dtype == right.dtype and left.shape == right.shape and torch.equal(left, right)
        return [] if same else [f"{where}: tensors differ"]
    if isinstance(left, np.ndarray) and isinstance(right, np.ndarray):
        same = left.dtype == right.dtype and np.array_equal(left, right, equal_nan=left.dtype.kind == "f")
        return [] if same else [f"{where}: arrays differ"]
    if type(left) is not type(right):
        return [f"{where}: {type(left).__name__} vs {type(right).__name__}"]
    if isinstance(left, (bool, int, float, str, type(None))):
        return [] if left == right else [f"{where}: {left!r} vs {right!r}"]
    raise TypeError(f"{where}: cannot compare {type(left).__name__}")


def test_differences_sees_every_kind_of_value():
    state = {"policy": {"w": torch.ones(2)}, "policy.optimizer": {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0], "fused": True}]}}
    assert _differences(state, copy.deepcopy(state)) == []
    for path, value in ((("policy.optimizer", "state", 0, "step"), torch.tensor(4.0)),
                        (("policy.optimizer", "param_groups", 0, "lr"), 2e-3),
                        (("policy.optimizer", "param_groups", 0, "betas"), (0.9, 0.99)),
                        (("policy.optimizer", "param_groups", 0, "fused"), False),
                        (("policy", "w"), torch.ones(2, dtype=torch.float64))):
        changed = copy.deepcopy(state)
        target = changed
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert _differences(state, changed), path


def _same_parameters(a, b):
    """Policy weights AND the optimizers' state (Adam's moments, step counts, param groups)."""
    differences = _differences(a.get_parameters(), b.get_parameters())
    assert not differences, differences[:5]
    return True


@needs_sb3
@pytest.mark.parametrize("algo, steps, stop_at", [("sac1", 500, 200), ("ppo1", 500, 200), ("dqn1", 500, 200),
                                                  ("ppo", 900, 300), ("sac", 500, 200)])
def test_signal_then_resume_equals_an_uninterrupted_run(tmp_path, algo, steps, stop_at):
    reference = train(_resume_config(tmp_path, algo, "ref", steps))
    stopped = train(_resume_config(tmp_path, algo, "run", steps), on_episode=_sigterm_after(stop_at))
    assert stopped.status == "interrupted" and stop_at <= stopped.steps < steps
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] == stopped.steps
    checkpoint = load_checkpoint(checkpoint_paths(tmp_path / "run")[-1])  # weights_only, checksummed
    assert checkpoint["loop"]["step"] == checkpoint["sb3"]["counters"]["num_timesteps"] == stopped.steps
    resumed = resume(tmp_path / "run")
    assert resumed.status == "finished" and resumed.steps == steps
    assert episode_rows(tmp_path / "run") == episode_rows(tmp_path / "ref")
    assert [int(row["step"]) for row in read_csv(tmp_path / "run" / "metrics.csv")] == list(range(50, steps + 1, 50))
    assert _same_parameters(resumed.agent, reference.agent)
    if algo in ("sac1", "sac"):
        assert torch.equal(resumed.agent.log_ent_coef, reference.agent.log_ent_coef)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["resumes"] == [
        {"step": stopped.steps, "mid_episode": True}]


@needs_sb3
def test_periodic_checkpoints_and_the_replay_buffer(tmp_path):
    run_dir = _cli(tmp_path, "sac", 450, 0, None, "checkpoint_interval=100", "keep_checkpoints=2")
    assert [path.name for path in checkpoint_paths(run_dir)] == ["step_000000000300.ckpt", "step_000000000400.ckpt"]
    saved = load_checkpoint(checkpoint_paths(run_dir)[-1])["sb3"]["replay_buffer"]
    assert saved["pos"] == 400 and not saved["full"] and saved["arrays"]["observations"].shape[0] == 401


@needs_sb3
@pytest.mark.parametrize("algo, env, extra", [
    pytest.param("sac1", "dm_control/cheetah-run-v0", {"max_episode_steps": 150}, marks=pytest.mark.skipif(
        importlib.util.find_spec("dm_control") is None, reason="the dmc extra is not installed")),
    pytest.param("dqn1", "MinAtar/Breakout-v1", {}, marks=pytest.mark.skipif(
        importlib.util.find_spec("minatar") is None, reason="the minatar extra is not installed")),
])
def test_a_baseline_resumes_mid_episode_exactly_where_the_simulator_state_is_saved(tmp_path, monkeypatch, algo,
                                                                                   env, extra):
    """DM Control's physics (cheetah-run: its model is never edited) and MinAtar's game state are
    saved for the baselines too, so a baseline stopped mid-episode continues that episode and
    equals the uninterrupted run."""
    from test_conformance import _SignalAt

    def config(name):
        return resolve_config(algo, env, overrides={
            "total_steps": 400, "seed": 3, "run_dir": str(tmp_path / name), "progress": False,
            "log_interval": 50, "checkpoint_interval": 100, **extra})

    reference = train(config("ref"))
    make, counter = gym.make, {"steps": 0}
    monkeypatch.setattr(gym, "make", lambda *args, **kwargs: _SignalAt(make(*args, **kwargs), 222, counter))
    stopped = train(config("run"))
    assert stopped.status == "interrupted" and stopped.steps == 222
    assert load_checkpoint(checkpoint_paths(tmp_path / "run")[-1])["env_state"]["exact"]
    resumed = resume(tmp_path / "run")
    assert resumed.status == "finished" and episode_rows(tmp_path / "run") == episode_rows(tmp_path / "ref")
    assert 222 not in [int(row["step"]) for row in episode_rows(tmp_path / "ref")]  # the stop fell inside an episode
    assert _same_parameters(resumed.agent, reference.agent)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["resumes"] == [
        {"step": 222, "mid_episode": True}]


@needs_sb3
@pytest.mark.skipif(importlib.util.find_spec("ale_py") is None, reason="the atari extra is not installed")
def test_an_atari_baseline_is_checkpointed_without_the_emulator():
    """SB3's AtariWrapper and VecFrameStack keep episode state streamx does not save, so an Atari
    baseline's checkpoint holds no emulator state and its resume starts a new game."""
    from streamx.baselines import _env_state, _vec_env

    for algo, env_id, exact in (("dqn", "BreakoutNoFrameskip-v4", False), ("dqn", "CartPole-v1", True)):
        config = resolve_config(algo, env_id)
        venv = _vec_env(config, {})
        venv.reset()
        state = _env_state(venv, config)
        assert state["exact"] is exact and (state["simulator"] is None) is not exact, env_id
        venv.close()


@needs_sb3
def test_without_simulator_state_a_resume_starts_a_new_episode(tmp_path, monkeypatch):
    from streamx import checkpoint

    monkeypatch.setattr(checkpoint, "_simulator_state", lambda unwrapped: None)  # as for Atari or DM Control
    config = _resume_config(tmp_path, "sac1", "run", 400)
    stopped = train(config, on_episode=_sigterm_after(120))  # signalled at an episode end: stops at the next step
    payload = load_checkpoint(checkpoint_paths(tmp_path / "run")[-1])
    assert payload["loop"]["mid_episode"] is False and not payload["env_state"]["exact"]
    resumed = resume(tmp_path / "run")
    assert resumed.status == "finished" and resumed.steps == 400
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["resumes"] == [{"step": stopped.steps, "mid_episode": False}]
    steps = [int(row["step"]) for row in read_csv(tmp_path / "run" / "episodes.csv")]
    assert steps == sorted(steps) and steps[-1] <= 400


@needs_sb3
def test_resume_refuses_a_finished_run_and_restarts_one_without_checkpoints(tmp_path, capsys):
    run_dir = _cli(tmp_path, "dqn1", 200, 2, None, "checkpoint_interval=0")
    first = episode_rows(run_dir)
    assert cli.main(["train", "--resume", str(run_dir)]) == 2
    assert "finished dqn1 run" in capsys.readouterr().err
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    assert not checkpoint_paths(run_dir)  # e.g. killed before its first checkpoint
    result = resume(run_dir)
    assert "no checkpoint yet; restarting" in capsys.readouterr().err
    assert result.status == "finished" and episode_rows(run_dir) == first


@needs_sb3
@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run_with_vecnormalize(tmp_path):
    pytest.importorskip("mujoco")
    common = ["ppo", "--env", "Hopper-v5", "--steps", "4000", "--seed", "7", "progress=false", "log_interval=500",
              "checkpoint_interval=1000"]
    _, killed_dir = kill_9_and_resume(tmp_path, common, 4000, checkpoints=2, timeout=240)
    assert load_checkpoint(checkpoint_paths(killed_dir)[-1])["sb3"]["normalizer"] is not None
    assert json.loads((killed_dir / "summary.json").read_text())["resumes"][0]["mid_episode"] is True


@needs_sb3
@pytest.mark.slow
@pytest.mark.parametrize("algo", ["sac1", "ppo1"])
def test_same_seed_same_episodes_on_mujoco(tmp_path, algo):
    pytest.importorskip("mujoco")
    runs = []
    for name in ("a", "b"):
        assert cli.main(["train", algo, "--env", "Hopper-v5", "--steps", "500", "--seed", "3",
                         "--run-dir", str(tmp_path / name), "progress=false"]) == 0
        runs.append(episode_rows(tmp_path / name))
    assert len(runs[0]) > 5 and runs[0] == runs[1]
