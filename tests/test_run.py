"""The training loop, run directory, presets and CLI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamx import Config
from streamx.config import load_yaml
from streamx.envs import suite_defaults
from streamx.outputs import EPISODE_FIELDS, read_csv
from streamx.run import resolve_config, train

REPO = Path(__file__).resolve().parents[1]


def _run(tmp_path, name, algo="stream_q", env="CartPole-v1", steps=3000, **overrides):
    config = resolve_config(algo, env, overrides={"total_steps": steps, "run_dir": str(tmp_path / name),
                                                  "progress": False, "log_interval": 1000, **overrides})
    return train(config)


def _episodes_without_wall_time(run_dir):
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in read_csv(Path(run_dir) / "episodes.csv")]


@pytest.mark.parametrize("algo", ["stream_q", "stream_sarsa", "stream_ac", "stream_td"])
def test_same_seed_gives_identical_episodes(tmp_path, algo):
    first = _run(tmp_path, "a", algo, seed=3)
    second = _run(tmp_path, "b", algo, seed=3)
    other = _run(tmp_path, "c", algo, seed=4)
    rows = _episodes_without_wall_time(first.run_dir)
    assert len(rows) > 5
    assert rows == _episodes_without_wall_time(second.run_dir)
    assert rows != _episodes_without_wall_time(other.run_dir)


def test_same_seed_identical_on_mujoco(tmp_path):
    pytest.importorskip("mujoco")
    a = _run(tmp_path, "a", "stream_ac", "Hopper-v5", steps=600)
    b = _run(tmp_path, "b", "stream_ac", "Hopper-v5", steps=600)
    assert _episodes_without_wall_time(a.run_dir) == _episodes_without_wall_time(b.run_dir)
    for p, q in zip(a.agent.actor.parameters(), b.agent.actor.parameters()):
        assert (p == q).all()


def test_run_directory_contents(tmp_path):
    result = _run(tmp_path, "run", "stream_ac", steps=2500)
    run_dir = Path(result.run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"] == "stream_ac" and config["hidden_sizes"] == [32, 32] and config["max_episode_steps"] == 10000
    episodes = read_csv(run_dir / "episodes.csv")
    assert tuple(episodes[0]) == EPISODE_FIELDS
    assert sum(int(r["length"]) for r in episodes) <= 2500
    assert [float(r["return"]) for r in episodes] == result.episode_returns
    metrics = read_csv(run_dir / "metrics.csv")
    assert [int(r["step"]) for r in metrics] == [1000, 2000, 2500]  # the last, partial interval too
    assert all(0 < float(r["effective_step_size_mean"]) <= 1.0 for r in metrics)
    assert all(0 < float(r["policy_effective_step_size_mean"]) <= 1.0 for r in metrics)
    assert all(float(r["entropy_mean"]) > 0 for r in metrics)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 2500


def test_existing_run_directory_is_never_overwritten(tmp_path):
    _run(tmp_path, "run", steps=200)
    with pytest.raises(Exception, match="already holds a run"):
        _run(tmp_path, "run", steps=200)


def test_episode_callback_stops_training(tmp_path):
    result = train(resolve_config("stream_q", "CartPole-v1", overrides={
        "total_steps": 5000, "run_dir": str(tmp_path / "r"), "progress": False}),
        on_episode=lambda step, ret, length: True)
    assert result.stopped_early and len(result.episode_returns) == 1
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "stopped_early"


def test_suite_defaults_and_presets_agree():
    assert suite_defaults("CartPole-v1")["hidden_sizes"] == [32, 32]
    assert suite_defaults("Hopper-v5")["hidden_sizes"] == [128, 128]
    paper = Config()
    for preset, env in (("classic_control.yaml", "CartPole-v1"), ("mujoco.yaml", "Hopper-v5")):
        values = load_yaml(REPO / "configs" / preset)
        config = Config.from_dict({"env": env, **values})
        for key, value in suite_defaults(env).items():
            assert getattr(config, key) == value, (preset, key)
        for key in ("lr", "gamma", "lamda", "kappa_value", "kappa_policy", "entropy_coef", "sparsity"):
            assert getattr(config, key) == getattr(paper, key)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "streamx.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["train", "stream_x", "--env", "CartPole-v1"], "unknown algorithm 'stream_x'"),
    (["train", "stream_q", "--env", "CartPoles-v1"],
     "unknown environment id 'CartPoles-v1'. Did you mean: CartPole-v1"),
    (["train", "stream_q", "--env", "Pendulum-v1"], "stream_q supports Discrete action spaces"),
    (["train", "stream_ac", "--env", "CartPole-v1", "lamda=1.5"], "lamda=1.5 must lie in [0, 1]"),
    (["train", "stream_ac", "--env", "CartPole-v1", "--lr", "-0.1"], "lr=-0.1 must be >= 0"),
    (["train", "stream_ac", "--env", "CartPole-v1", "lrr=0.1"], "unknown key"),
    (["train", "stream_ac", "--env", "CartPole-v1", "--config", "missing.yaml"], "cannot read config file"),
    (["train", "stream_ac"], "no environment given: pass --env <id>"),
    (["train", "stream_ac", "--env", "CartPole-v1", "--ste", "5"], "unknown key 'ste' in the overrides"),
])
def test_bad_input_gets_one_clear_line(tmp_path, args, message):
    result = _cli(*args, "--run-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("streamx: error:") and message in lines[0], result.stderr
    assert not (tmp_path / "r" / "episodes.csv").exists()


def test_true_false_fields_are_flags_on_the_command_line():
    from streamx.cli import _parse_overrides
    from streamx.errors import ConfigError

    assert _parse_overrides(["--no-progress"]) == {"progress": "false"}
    assert _parse_overrides(["--tensorboard", "lr=0.5", "--no-layer-norm", "--gamma", "0.9"]) == {
        "tensorboard": "true", "lr": "0.5", "layer_norm": "false", "gamma": "0.9"}
    assert _parse_overrides(["--layer-norm", "false", "--progress=false"]) == {"layer_norm": "false",
                                                                               "progress": "false"}
    with pytest.raises(ConfigError, match=r"unknown key 'progres' in the overrides \(did you mean 'progress'"):
        _parse_overrides(["--progres"])
    with pytest.raises(ConfigError, match="option --lr needs a value"):
        _parse_overrides(["--lr"])
    with pytest.raises(ConfigError, match="unknown key 'no-lr'"):  # lr is not a true/false field
        _parse_overrides(["--no-lr"])


def test_cli_train_writes_a_run(tmp_path):
    result = _cli("train", "stream_sarsa", "--env", "CartPole-v1", "--steps", "1500", "--seed", "2",
                  "--run-dir", str(tmp_path / "r"), "progress=false", "--hidden-sizes", "16,16", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["seed"] == 2 and config["total_steps"] == 1500 and config["hidden_sizes"] == [16, 16]
    assert "results in" in result.stdout


def test_cli_default_run_dir_and_help(tmp_path):
    result = _cli("train", "stream_q", "--env", "CartPole-v1", "--steps", "300", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("stream_q__CartPole-v1__0__")
    help_text = _cli("train", "--help").stdout
    assert "kappa_policy" in help_text and "Entropy coefficient" in help_text


def test_readme_python_example_runs():
    import re

    code = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    namespace: dict = {}
    exec(code.replace("50_000", "500"), namespace)
    assert set(namespace["metrics"]) >= {"td_error", "effective_step_size", "trace_norm"}


def test_every_preset_resolves(tmp_path):
    for preset in sorted((REPO / "configs").rglob("*.yaml")):
        values = load_yaml(preset)
        algos = [values["algo"]] if "algo" in values else ["stream_ac", "stream_q"]
        env = None if "env" in values else ("Hopper-v5" if "mujoco" in preset.name else
                                            "MinAtar/Breakout-v1" if "minatar" in str(preset) else
                                            "Breakout" if "atari" in str(preset) else "CartPole-v1")
        for algo in algos:
            if algo == "stream_q" and env == "Hopper-v5":
                continue
            config = resolve_config(algo, env, preset)
            assert config.algo == algo, preset
    q = resolve_config("stream_q", "MinAtar/Breakout-v1", REPO / "configs/minatar/stream_q.yaml")
    assert (q.total_steps, q.exploration_fraction) == (5_000_000, 0.2)
    dog = resolve_config("stream_ac", None, REPO / "configs/dmc/dog-run.yaml")
    assert (dog.env, dog.max_episode_steps, dog.hidden_sizes) == ("dm_control/dog-run-v0", 1000, [128, 128])
    # classic Q(λ) on Atari: CartPole's classic agent with the Atari sweep's step size, nothing else changed
    cartpole = load_yaml(REPO / "configs/classic/classic_q.yaml")
    atari = load_yaml(REPO / "configs/atari/classic_q.yaml")
    assert atari == {**cartpole, "lr": 1e-8} and cartpole["lr"] == 3e-4
    classic = resolve_config("stream_q", "Breakout", REPO / "configs/atari/classic_q.yaml")
    assert (classic.lr, classic.optimizer, classic.layer_norm, classic.obs_normalization, classic.reward_scaling,
            classic.sparse_init, classic.exploration_steps) == (1e-8, "sgd", False, False, False, False, 500_000)


@pytest.mark.parametrize("preset, algo, env", [
    ("classic_control.yaml", "stream_q", "CartPole-v1"), ("classic_control.yaml", "stream_ac", "Pendulum-v1"),
    ("mujoco.yaml", "stream_ac", "Hopper-v5"), ("dmc/stream_ac.yaml", "stream_ac", "dm_control/cheetah-run-v0"),
    ("atari/common.yaml", "stream_q", "BreakoutNoFrameskip-v4"),
    *[(f"atari/stream_{a}.yaml", f"stream_{a}", "BreakoutNoFrameskip-v4") for a in ("q", "sarsa", "ac")],
    ("minatar/common.yaml", "stream_q", "MinAtar/Breakout-v1"),
    *[(f"minatar/stream_{a}.yaml", f"stream_{a}", "MinAtar/Breakout-v1") for a in ("q", "sarsa", "ac")],
])
def test_a_suite_preset_restates_the_defaults_of_its_suite(preset, algo, env):
    """The suite presets make the paper's settings explicit: run on their own suite they resolve
    to exactly the config a run without --config gets (docs/configs.md)."""
    if env.startswith("dm_control/") and importlib.util.find_spec("shimmy") is None:
        pytest.skip("the dmc extra is not installed")
    if "NoFrameskip" in env and importlib.util.find_spec("ale_py") is None:
        pytest.skip("the atari extra is not installed")
    if env.startswith("MinAtar/") and importlib.util.find_spec("minatar") is None:
        pytest.skip("the minatar extra is not installed")
    if env.startswith("Hopper") and importlib.util.find_spec("mujoco") is None:
        pytest.skip("the mujoco extra is not installed")
    assert resolve_config(algo, env, REPO / "configs" / preset).to_dict() == resolve_config(algo, env).to_dict()


def test_preset_inheritance_and_errors(tmp_path):
    from streamx.errors import ConfigError

    (tmp_path / "base.yaml").write_text("lr: 0.5\nlamda: 0.5\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nlamda: 0.7\nenv: CartPole-v1\nalgo: stream_q\n")
    config = resolve_config("stream_q", None, tmp_path / "child.yaml")
    assert (config.lr, config.lamda, config.env) == (0.5, 0.7, "CartPole-v1")
    with pytest.raises(ConfigError, match="is a preset for stream_q, not stream_ac"):
        resolve_config("stream_ac", None, tmp_path / "child.yaml")
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_yaml(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match="no environment given"):
        resolve_config("stream_q", None, tmp_path / "base.yaml")
