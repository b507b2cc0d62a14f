"""Checkpoint/resume: exactness after kill -9, SIGTERM, faults, corrupted and unsafe files."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import episode_rows, kill_9_and_resume, streamx_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamx.checkpoint import MAGIC, load_checkpoint, save_checkpoint
from streamx.errors import CheckpointError, ConfigError, EnvironmentFault
from streamx.registry import algorithm_class
from streamx.run import checkpoint_paths, resolve_config, resume, train


def _final_weights(run_dir: Path) -> dict:
    return load_checkpoint(checkpoint_paths(run_dir)[-1])["agent"]["networks"]


@pytest.mark.parametrize("algo, env, steps, interval", [
    # long enough that even the fast path (≈10k steps/s) is still running when it is killed
    ("stream_q", "CartPole-v1", 60000, 10000),
    pytest.param("stream_ac", "Hopper-v5", 30000, 5000, marks=pytest.mark.skipif(
        __import__("importlib").util.find_spec("mujoco") is None, reason="extra 'mujoco' not installed")),
])
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, algo, env, steps, interval):
    common = [algo, "--env", env, "--steps", str(steps), "--seed", "7", "progress=false", "log_interval=500",
              f"checkpoint_interval={interval}"]
    # killed somewhere between two checkpoints
    _, killed_dir = kill_9_and_resume(tmp_path, common, steps, checkpoints=1, jitter=0.5, timeout=120)
    summary = killed_dir / "summary.json"
    reference_weights, resumed_weights = _final_weights(tmp_path / "ref"), _final_weights(killed_dir)
    for net in reference_weights:
        for key, value in reference_weights[net].items():
            assert torch.equal(value, resumed_weights[net][key]), (net, key)
    assert json.loads(summary.read_text())["resumes"][0]["mid_episode"] is True


class SignalAt(gym.Wrapper):
    """Sends ``signum`` to this process from inside env step ``at_step`` (1-based), counted in
    ``counter`` (shared by the environments of a run and of its resumption)."""

    def __init__(self, env, at_step, signum, counter):
        super().__init__(env)
        self.at_step, self.signum, self.counter = at_step, signum, counter

    def step(self, action):
        self.counter["steps"] += 1
        if self.counter["steps"] == self.at_step:
            os.kill(os.getpid(), self.signum)
        return self.env.step(action)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_loop_at_the_step_it_arrived_in(tmp_path, monkeypatch, signum):
    """The loop finishes the step the signal arrived in, takes no further step, and checkpoints
    exactly that state (mid-episode, between two periodic checkpoints)."""
    from streamx import envs

    original, counter = envs._make_raw, {"steps": 0}
    monkeypatch.setattr(envs, "_make_raw",
                        lambda config, **kw: SignalAt(original(config, **kw), 1234, signum, counter))
    run_dir = tmp_path / "r"
    config = resolve_config("stream_q", "CartPole-v1", overrides={
        "total_steps": 5000, "run_dir": str(run_dir), "progress": False, "checkpoint_interval": 1000})
    handler_before = signal.getsignal(signum)
    result = train(config)
    assert signal.getsignal(signum) is handler_before  # the loop's handler is gone again
    assert result.status == "interrupted" and result.signal == signum
    assert result.steps == 1234  # no step after the one the signal arrived in
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] == 1234
    payload = load_checkpoint(checkpoint_paths(run_dir)[-1])
    assert payload["loop"]["step"] == 1234
    resumed = resume(run_dir)
    assert resumed.status == "finished" and resumed.steps == 5000


def test_sigterm_from_outside_checkpoints_and_exits_0_with_the_resume_command(tmp_path):
    run_dir = tmp_path / "run"
    process = streamx_process("train", "stream_q", "--env", "CartPole-v1", "--steps", "500000", "--run-dir",
                              str(run_dir), "progress=false", "checkpoint_interval=2000")
    deadline = time.time() + 120
    while len(checkpoint_paths(run_dir)) < 1 and time.time() < deadline:
        time.sleep(0.05)
    before = checkpoint_paths(run_dir)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0  # a hang guard, not a speed bound
    assert "--resume" in process.stderr.read()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] < 500000
    last = checkpoint_paths(run_dir)[-1]
    assert last not in before and load_checkpoint(last)["loop"]["step"] == summary["steps"]


def test_resume_after_interrupt_in_python(tmp_path):
    config = resolve_config("stream_q", "CartPole-v1", overrides={
        "total_steps": 3000, "run_dir": str(tmp_path / "r"), "progress": False, "checkpoint_interval": 1000})
    stopped = train(config, on_episode=lambda step, ret, length: step > 1500)
    assert stopped.stopped_early
    with pytest.raises(ConfigError, match="already holds a run"):
        train(config)
    config_full = config.replace(run_dir=str(tmp_path / "full"))
    full = train(config_full)
    result = resume(tmp_path / "r")
    assert result.steps == 3000 and result.episode_returns == full.episode_returns[:len(result.episode_returns)]


class NaNAfter(gym.Wrapper):
    def __init__(self, env, at_step):
        super().__init__(env)
        self.count, self.at_step = 0, at_step

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.count += 1
        if self.count >= self.at_step:
            obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


def test_nan_observation_stops_with_last_good_state_and_keeps_results(tmp_path, monkeypatch):
    from streamx import envs

    original = envs._make_raw
    monkeypatch.setattr(envs, "_make_raw", lambda config, **kw: NaNAfter(original(config, **kw), 700))
    config = resolve_config("stream_q", "CartPole-v1", overrides={
        "total_steps": 5000, "run_dir": str(tmp_path / "r"), "progress": False, "log_interval": 200})
    with pytest.raises(EnvironmentFault, match=r"non-finite observation.*step 700; last good state saved to"):
        train(config)
    run_dir = tmp_path / "r"
    payload = load_checkpoint(checkpoint_paths(run_dir)[-1])
    assert payload["loop"]["step"] == 700
    for net in payload["agent"]["networks"].values():
        assert all(torch.isfinite(t).all() for t in net.values())
    assert len(episode_rows(run_dir)) > 5
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "non-finite observation" in summary["error"]


def test_unwritable_run_directory_is_refused_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = resolve_config("stream_q", "CartPole-v1", overrides={"run_dir": str(blocker / "run"), "progress": False})
    with pytest.raises(ConfigError, match="not writable"):
        train(config)


def _small_checkpoint(tmp_path) -> Path:
    config = resolve_config("stream_q", "CartPole-v1", overrides={
        "total_steps": 300, "run_dir": str(tmp_path / "small"), "progress": False})
    train(config)
    return checkpoint_paths(tmp_path / "small")[-1]


def test_checkpoint_round_trip_and_wrong_run(tmp_path):
    path = _small_checkpoint(tmp_path)
    payload = load_checkpoint(path)
    assert payload["algo"] == "stream_q" and payload["loop"]["step"] == 300
    other = tmp_path / "other"
    train(resolve_config("stream_sarsa", "CartPole-v1", overrides={
        "total_steps": 200, "run_dir": str(other), "progress": False}))
    (other / "checkpoints" / "step_000000000999.ckpt").write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match="is for algo='stream_q'.*resume each run from its own directory"):
        resume(other)


def test_a_crafted_pickle_cannot_execute_code(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import hashlib

    data = pickle.dumps({"format_version": 1, "payload": Exploit()})
    path = tmp_path / "evil.ckpt"
    path.write_bytes(f"{MAGIC} 1 {hashlib.sha256(data).hexdigest()} {len(data)}\n".encode() + data)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()
    # the same through torch's own zip format
    torch_path = tmp_path / "evil_zip.ckpt"
    import io

    buffer = io.BytesIO()
    torch.save({"format_version": 1, "x": Exploit()}, buffer)
    data = buffer.getvalue()
    torch_path.write_bytes(f"{MAGIC} 1 {hashlib.sha256(data).hexdigest()} {len(data)}\n".encode() + data)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(torch_path)
    assert not marker.exists()


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    return _small_checkpoint(tmp_path_factory.mktemp("ckpt")).read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_checkpoints_are_always_rejected(tmp_path, checkpoint_bytes, data):
    raw = bytearray(checkpoint_bytes)
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "header"]))
    if kind == "flip":
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "insert":
        index = data.draw(st.integers(0, len(raw)))
        raw[index:index] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        raw = bytearray(data.draw(st.binary(max_size=64))) + raw[raw.index(b"\n"):]
    path = tmp_path / "c.ckpt"
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_save_checkpoint_is_atomic_and_plain(tmp_path):
    path = tmp_path / "x.ckpt"
    save_checkpoint(path, {"format_version": 1, "a": np.arange(3), "b": np.float64(2.5)})
    payload = load_checkpoint(path)
    assert torch.equal(payload["a"], torch.arange(3)) and payload["b"] == 2.5
    assert [p.name for p in tmp_path.iterdir()] == ["x.ckpt"]


_values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.lists(st.integers(-5, 300), max_size=4))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["lr", "gamma", "lamda", "kappa_value", "hidden_sizes", "optimizer", "seed",
                                        "layer_norm", "total_steps", "epsilon_end", "max_episode_steps", "lrr",
                                        "env_kwargs", "sparsity", "threads"]), _values, max_size=5))
def test_config_inputs_never_crash_and_never_pass_silently(values):
    from streamx.config import Config

    try:
        config = Config.from_dict(values)
    except ConfigError:
        return
    config.validate()
    for key, value in values.items():
        stored = getattr(config, key)
        assert (stored == value or (isinstance(value, int) and stored == float(value))
                or stored == [value]), (key, value, stored)  # a single width is a one-layer list


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s))
def test_override_strings_never_crash(text):
    from streamx.config import Config

    for key in ("lr", "hidden_sizes", "layer_norm", "max_episode_steps", "optimizer", "env_kwargs"):
        with contextlib.suppress(ConfigError):  # anything else (a traceback) fails the test
            Config.from_dict({key: text}, source="the overrides")


def test_a_damaged_policy_file_gets_one_clear_error(tmp_path):
    """Entries of a policy file that do not fit (the normalizer's shapes and values, the time limit,
    the action space, the weights) are refused when it is loaded, not when it acts."""
    import copy

    from streamx.evaluate import Policy, export_policy

    run_dir = tmp_path / "run"
    train(resolve_config("stream_ac", "Pendulum-v1", overrides={"total_steps": 300, "run_dir": str(run_dir),
                                                                "progress": False, "checkpoint_interval": 100}))
    good = torch.load(export_policy(run_dir), weights_only=True)
    first = next(iter(good["network"]))
    damaged = {
        "obs_mean does not have the observation's shape": {"obs_mean": torch.zeros(7, dtype=torch.float64)},
        "obs_var holds values that are not finite and non-negative": {"obs_var": -good["obs_var"] - 1},
        "time_limit is 0, not a positive number of steps": {"time_limit": 0},
        "observation_shape is \\[-1\\]": {"observation_shape": [-1]},
        "action_space is 'x'": {"action_space": "x"},
        "KeyError: 'algo'": {"algo": None},
        f"size mismatch for {first}": {"network": {**good["network"], first: good["network"][first][:1]}},
    }
    for message, change in damaged.items():
        exported = {**copy.deepcopy(good), **change}
        if change.get("algo", "") is None:
            del exported["algo"]
        with pytest.raises(CheckpointError, match=f"the policy file is damaged \\(.*{message}.*\\); export it again"):
            Policy(exported)
    assert Policy(good).act(np.zeros(3, np.float32), t=0).shape == (1,)


@pytest.mark.parametrize("algo, env", [("stream_q", "CartPole-v1"), ("stream_ac", "Pendulum-v1")])
def test_eval_and_exported_policy(tmp_path, algo, env):
    from streamx.config import Config
    from streamx.evaluate import Policy, evaluate, export_policy

    run_dir = tmp_path / "run"
    train(resolve_config(algo, env, overrides={"total_steps": 1500, "run_dir": str(run_dir), "progress": False,
                                               "max_episode_steps": 200}))
    result = evaluate(run_dir, episodes=2)
    assert len(result["returns"]) == 2 and json.loads((run_dir / "eval.json").read_text())["episodes"] == 2
    policy = Policy.load(export_policy(run_dir))
    payload = load_checkpoint(checkpoint_paths(run_dir)[-1])
    config = Config.from_dict(json.loads(payload["config"]))
    raw_env = gym.make(env)
    agent = algorithm_class(algo)(gym.spaces.Box(-np.inf, np.inf, (raw_env.observation_space.shape[0] + 1,),
                                                           np.float32), raw_env.action_space, config)
    agent.load_state_dict(payload["agent"])
    normalizer = next(v for k, v in payload["env_state"]["wrappers"].items() if k.endswith("NormalizeObservation"))
    rng = np.random.default_rng(0)
    for t in range(5):
        raw = raw_env.observation_space.sample() if algo == "stream_ac" else rng.normal(size=4)
        mean, count = normalizer["stats"]["mean"].numpy(), normalizer["stats"]["count"]
        var = normalizer["stats"]["sum_sq_dev"].numpy() / (count - 1)
        expected = np.append((raw - mean) / np.sqrt(var + 1e-8), t / 200 - 0.5).astype(np.float32)
        np.testing.assert_allclose(policy.preprocess(raw, t), expected, rtol=1e-6)
        np.testing.assert_allclose(policy.act(raw, t), agent.act(expected, deterministic=True), rtol=1e-6)


@pytest.mark.skipif(__import__("importlib").util.find_spec("ale_py") is None, reason="extra 'atari' not installed")
def test_atari_resumes_exactly_from_a_mid_game_periodic_checkpoint(tmp_path):
    """The emulator's state is saved: the periodic checkpoint is taken at its interval, mid-game,
    and a run resumed from it (as after kill -9) equals the uninterrupted one."""
    import shutil

    config = resolve_config("stream_q", "Breakout", overrides={
        "total_steps": 1500, "run_dir": str(tmp_path / "full"), "progress": False, "checkpoint_interval": 400,
        "keep_checkpoints": 20})
    train(config)
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    first, *later = checkpoint_paths(tmp_path / "resumed")
    assert first.name == "step_000000000400.ckpt" and load_checkpoint(first)["loop"]["mid_episode"] is True
    for path in later:
        path.unlink()
    resume(tmp_path / "resumed")
    assert episode_rows(tmp_path / "resumed") == episode_rows(tmp_path / "full")
    full, resumed = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "resumed")
    assert all(torch.equal(full[n][k], resumed[n][k]) for n in full for k in full[n])
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["resumes"] == [{"step": 400, "mid_episode": True}]


@pytest.mark.skipif(__import__("importlib").util.find_spec("ale_py") is None, reason="extra 'atari' not installed")
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_emulator_state_is_one_clear_error(tmp_path, damage):
    """A checkpoint whose checksum is right but whose emulator state is not one the emulator wrote
    is refused with a CheckpointError naming it; the results already written stay."""
    config = resolve_config("stream_q", "Breakout", overrides={
        "total_steps": 300, "run_dir": str(tmp_path / "run"), "progress": False, "checkpoint_interval": 0})
    train(config)
    path = checkpoint_paths(tmp_path / "run")[-1]
    payload = load_checkpoint(path)
    emulator = payload["env_state"]["simulator"]["state"]
    payload["env_state"]["simulator"]["state"] = (emulator[:len(emulator) // 3] if damage == "truncated" else
                                                  torch.randint(0, 256, (5000,), dtype=torch.uint8))
    save_checkpoint(path, payload)
    episodes = (tmp_path / "run" / "episodes.csv").read_text()
    (tmp_path / "run" / "summary.json").write_text(
        (tmp_path / "run" / "summary.json").read_text().replace('"finished"', '"interrupted"'))
    with pytest.raises(CheckpointError, match="emulator state cannot be restored"):
        resume(tmp_path / "run")
    assert (tmp_path / "run" / "episodes.csv").read_text() == episodes


def test_tensorboard_events_after_the_checkpoint_are_purged_on_resume(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = resolve_config("stream_q", "CartPole-v1", overrides={
        "total_steps": 3000, "run_dir": str(tmp_path / "r"), "progress": False, "checkpoint_interval": 1000,
        "log_interval": 250, "tensorboard": True})
    train(config, on_episode=lambda step, ret, length: step > 1600)
    newest = checkpoint_paths(tmp_path / "r")[-1]
    newest.unlink()  # as after kill -9 at that moment: the resume goes back to step 1000
    assert load_checkpoint(checkpoint_paths(tmp_path / "r")[-1])["loop"]["step"] == 1000
    resume(tmp_path / "r")
    events = EventAccumulator(str(tmp_path / "r" / "tb"))
    events.Reload()
    steps = [event.step for event in events.Scalars("train/recent_return")]
    assert steps == list(range(250, 3001, 250))  # each metric once: the first session's 1250, 1500 are gone


# -- faults end in one line and lose nothing -------------------------------------------------------

def _small_run(run_dir: Path, steps: int = 300, **overrides):
    return train(resolve_config("stream_q", "CartPole-v1", overrides={
        "total_steps": steps, "run_dir": str(run_dir), "progress": False, "hidden_sizes": [8],
        "checkpoint_interval": 100, **overrides}))


def _cli(capsys, *argv: str) -> tuple[int, str]:
    from streamx.cli import main

    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def _one_line(capsys, *argv: str) -> str:
    code, err = _cli(capsys, *argv)
    assert code == 2 and err.startswith("streamx: error: ") and "\n" not in err, (code, err)
    return err


def test_export_out_must_be_a_file_path(tmp_path, capsys):
    _small_run(tmp_path / "run")
    (tmp_path / "folder").mkdir()
    assert "is a folder; name a file in it" in _one_line(capsys, "export", str(tmp_path / "run"), "--out",
                                                         str(tmp_path / "folder"))
    assert "--out is empty" in _one_line(capsys, "export", str(tmp_path / "run"), "--out", "")
    assert list((tmp_path / "folder").iterdir()) == []


def test_eval_and_export_refuse_a_checkpoint_of_another_run(tmp_path, capsys):
    _small_run(tmp_path / "run")
    _small_run(tmp_path / "wide", hidden_sizes=[16])  # another architecture
    _small_run(tmp_path / "other_seed", seed=5)  # same architecture, another run
    for other in ("wide", "other_seed"):
        foreign = str(checkpoint_paths(tmp_path / other)[-1])
        for command in ("eval", "export"):
            err = _one_line(capsys, command, str(tmp_path / "run"), "--checkpoint", foreign)
            assert "made with other settings" in err
    assert not (tmp_path / "run" / "eval.json").exists() and not (tmp_path / "run" / "policy.pt").exists()


def test_eval_export_and_policy_refuse_non_finite_weights(tmp_path, capsys):
    from streamx.evaluate import Policy, export_policy

    _small_run(tmp_path / "run")
    good = checkpoint_paths(tmp_path / "run")[-1]
    payload = load_checkpoint(good)
    next(iter(payload["agent"]["networks"]["q_network"].values())).fill_(float("nan"))
    bad = tmp_path / "step_bad.ckpt"
    save_checkpoint(bad, payload)
    for command in ("eval", "export"):
        assert "non-finite weights" in _one_line(capsys, command, str(tmp_path / "run"), "--checkpoint", str(bad))
    policy_file = export_policy(tmp_path / "run")
    exported = torch.load(policy_file, weights_only=True)
    next(iter(exported["network"].values())).fill_(float("inf"))
    with pytest.raises(CheckpointError, match="not finite"):
        Policy(exported)


def test_policy_act_checks_its_observation(tmp_path):
    from streamx.errors import InputError
    from streamx.evaluate import Policy, export_policy

    _small_run(tmp_path / "run")
    policy = Policy.load(export_policy(tmp_path / "run"))
    assert policy.act(np.zeros(4)) in (0, 1)
    for bad, message in ((None, "obs is None"), (np.array([0.0, np.nan, 0.0, 0.0]), "NaN/inf"),
                         (np.zeros(5), r"shape \(5,\); expected shape \(4,\)")):
        with pytest.raises(InputError, match=message):
            policy.act(bad)


def test_resume_refuses_a_damaged_run_directory_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    _small_run(run)
    before = sorted(p.name for p in checkpoint_paths(run))
    (run / "episodes.csv").rename(tmp_path / "episodes.csv")
    assert "episodes.csv is missing" in _one_line(capsys, "train", "--resume", str(run))
    (tmp_path / "episodes.csv").rename(run / "episodes.csv")
    saved = (run / "config.json").read_text()
    (run / "config.json").write_text("[1, 2]")
    assert "holds a JSON list, not the run's settings" in _one_line(capsys, "train", "--resume", str(run))
    edited = json.loads(saved)
    edited["hidden_sizes"] = [32, 32]
    (run / "config.json").write_text(json.dumps(edited))
    assert "hidden_sizes: [8] vs [32, 32]" in _one_line(capsys, "train", "--resume", str(run))
    assert sorted(p.name for p in checkpoint_paths(run)) == before


def test_seed_and_lr_out_of_range_are_one_line(tmp_path, capsys):
    assert "seed=99999999999999999999 must lie in [0, 4294967295]" in _one_line(
        capsys, "train", "stream_q", "--env", "CartPole-v1", "--seed", "99999999999999999999",
        "--run-dir", str(tmp_path / "r"))
    assert "lr=inf must be a finite number" in _one_line(
        capsys, "train", "stream_q", "--env", "CartPole-v1", "lr=inf", "--run-dir", str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_a_checkpoint_write_that_fails_mid_run_is_one_line_and_keeps_the_results(tmp_path, capsys, monkeypatch):
    import streamx.rundir

    writes = []

    def failing_save(path, payload):
        if writes:
            raise PermissionError(13, "Permission denied", str(path))
        writes.append(path)
        save_checkpoint(path, payload)

    monkeypatch.setattr(streamx.rundir, "save_checkpoint", failing_save)
    run = tmp_path / "run"
    err = _one_line(capsys, "train", "stream_q", "--env", "CartPole-v1", "--steps", "300", "--run-dir", str(run),
                    "progress=false", "checkpoint_interval=100", "hidden_sizes=8")
    assert "cannot write checkpoint" in err and "Permission denied" in err and "step_000000000100.ckpt" in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "cannot write checkpoint" in summary["error"]
    assert [p.name for p in checkpoint_paths(run)] == ["step_000000000100.ckpt"]
    assert (run / "episodes.csv").read_text().count("\n") > 1


def test_resume_of_a_run_without_checkpoint_restarts_it_from_step_0(tmp_path, capsys):
    reference, run = tmp_path / "reference", tmp_path / "run"
    _small_run(reference)
    _small_run(run)
    for path in checkpoint_paths(run):  # as if killed before its first checkpoint
        path.unlink()
    (run / "summary.json").unlink()
    code, err = _cli(capsys, "train", "--resume", str(run))
    assert code == 0 and "has no checkpoint yet; restarting" in err
    assert episode_rows(run) == episode_rows(reference)


def test_pruning_deletes_only_the_runs_own_checkpoint_files(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    mine = [run / "checkpoints" / name for name in ("step_best.ckpt", "step_1.ckpt", "step_000000000100.ckpt.bak")]
    for path in mine:
        path.write_text("kept")
    _small_run(run, keep_checkpoints=1)
    assert all(path.read_text() == "kept" for path in mine)
    assert [p.name for p in checkpoint_paths(run)] == ["step_000000000300.ckpt"]


def test_unsafe_checkpoint_refusal_gives_no_unsafe_advice(tmp_path):
    import hashlib
    import io

    buffer = io.BytesIO()
    torch.save({"format_version": 1, "x": contextlib.nullcontext()}, buffer)
    data = buffer.getvalue()
    path = tmp_path / "evil.ckpt"
    path.write_bytes(f"{MAGIC} 1 {hashlib.sha256(data).hexdigest()} {len(data)}\n".encode() + data)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "refusing to load it" in message and "contextlib" in message
    assert "weights_only=False" not in message and "\n" not in message


def test_a_diverging_run_never_writes_a_non_finite_checkpoint(tmp_path):
    from streamx.checkpoint import learner_state_faults
    from streamx.errors import NonFiniteError

    run = tmp_path / "run"
    config = resolve_config("stream_ac", "Pendulum-v1", overrides={
        "total_steps": 2000, "run_dir": str(run), "progress": False, "optimizer": "sgd", "lr": 1e4,
        "layer_norm": False, "obs_normalization": False, "reward_scaling": False, "sparse_init": False,
        "checkpoint_interval": 1})
    with pytest.raises(NonFiniteError) as caught:
        train(config)
    message = str(caught.value)
    kept = checkpoint_paths(run)
    assert kept and all(not learner_state_faults(load_checkpoint(path)) for path in kept)
    assert "not saved" in message and f"{kept[-1]} (step {load_checkpoint(kept[-1])['loop']['step']})" in message
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"


def test_an_env_whose_observations_do_not_match_its_space_is_an_environment_fault(tmp_path):
    # 5 values where 3 are declared (plus the time feature: 6 where 4)
    class Liar(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(3, np.float32), {}

        def step(self, action):
            return np.zeros(5, np.float32), 0.0, False, False, {}

    gym.register("streamx-test/Liar-v0", entry_point=lambda **kwargs: Liar(), max_episode_steps=50)
    # the env's own check (CheckFinite, innermost) names it before any normalizer or agent sees it,
    # with or without observation normalization
    expected = r"Liar-v0 returned an observation of shape \(5,\) while its observation space declares \(3,\)"
    for normalization in (False, True):
        run = tmp_path / f"run{normalization}"
        with pytest.raises(EnvironmentFault, match=expected):
            train(resolve_config("stream_q", "streamx-test/Liar-v0", overrides={
                "total_steps": 100, "run_dir": str(run), "progress": False, "obs_normalization": normalization}))
        assert json.loads((run / "summary.json").read_text())["status"] == "failed"


@pytest.mark.skipif(__import__("importlib").util.find_spec("minatar") is None, reason="extra 'minatar' not installed")
@pytest.mark.parametrize("algo, game", [("stream_q", "SpaceInvaders"), ("stream_sarsa", "Asterix")])
def test_minatar_resumes_mid_episode_exactly(tmp_path, monkeypatch, algo, game):
    """A MinAtar game's state (its attributes, sticky-action memory, RNG) is checkpointed:
    periodic checkpoints fall at their interval, and a run stopped by a signal mid-episode
    resumes that episode and equals the uninterrupted run bit for bit."""
    from test_conformance import _SignalAt

    from streamx import envs

    def config(name: str):
        return resolve_config(algo, f"MinAtar/{game}-v1", overrides={
            "total_steps": 900, "seed": 2, "run_dir": str(tmp_path / name), "progress": False,
            "checkpoint_interval": 250, "keep_checkpoints": 5})

    full = train(config("full"))
    assert [path.name for path in checkpoint_paths(tmp_path / "full")] == [
        f"step_{step:012d}.ckpt" for step in (250, 500, 750, 900)]
    original, counter = envs._make_raw, {"steps": 0}
    monkeypatch.setattr(envs, "_make_raw", lambda cfg, **kw: _SignalAt(original(cfg, **kw), 433, counter))
    stopped = train(config("stopped"))
    assert stopped.status == "interrupted" and stopped.steps == 433
    assert load_checkpoint(checkpoint_paths(tmp_path / "stopped")[-1])["env_state"]["simulator"]["kind"] == "minatar"
    resumed = resume(tmp_path / "stopped")
    assert resumed.status == "finished" and resumed.steps == 900
    assert resumed.episode_returns == full.episode_returns and resumed.episode_lengths == full.episode_lengths
    assert json.loads((tmp_path / "stopped" / "summary.json").read_text())["resumes"] == [
        {"step": 433, "mid_episode": True}]
    final, reference = _final_weights(tmp_path / "stopped"), _final_weights(tmp_path / "full")
    for net in reference:
        for key, value in reference[net].items():
            assert torch.equal(value, final[net][key]), (net, key)


def test_game_state_keeps_its_values_and_types_through_a_checkpoint(tmp_path):
    """The plain-data trees a game's state is saved as come back with the same types: NumPy
    scalars and arrays (dtype too), tuples, None, nested lists and string-keyed dicts."""
    from streamx.checkpoint import _decode_tree, _encode_tree

    value = {"pos": 4, "flag": np.bool_(True), "speed": np.float64(0.25), "dir": (0, 2), "none": None,
             "entities": [None, [3, 4, True, np.int64(7)], [(1, 2), "l"]], "map": np.eye(3, dtype=bool),
             "channels": {"ball": 1, "trail": 2}, "big": 2 ** 70}
    save_checkpoint(tmp_path / "c.ckpt", {"format_version": 1, "tree": _encode_tree(value)})
    back = _decode_tree(load_checkpoint(tmp_path / "c.ckpt")["tree"])

    def same(a, b):
        assert type(a) is type(b), (a, b)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        elif isinstance(a, dict):
            assert a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        else:
            assert a == b
        return True

    assert same(value, back)
    with pytest.raises(TypeError, match="RandomState"):
        _encode_tree({"rng": np.random.RandomState(0)})


@pytest.mark.parametrize("env_id", ["MountainCar-v0", "Pendulum-v1", "CartPole-v1"])
def test_classic_control_state_keeps_its_types_and_earlier_checkpoints_still_restore(tmp_path, env_id):
    """A classic-control env's attributes (MountainCar's tuple state, Pendulum's float32 last_u,
    CartPole's steps_beyond_terminated None) come back from a checkpoint with their types, and
    the step after the restore equals the step of the env that was saved; a state in the
    earlier layout (attributes with tuple/None/scalar key lists) restores the same way."""
    from streamx.checkpoint import env_state, restore_env_state

    def stepped(seed_steps):
        env = gym.make(env_id)
        env.reset(seed=5)
        env.action_space.seed(5)
        for _ in range(seed_steps):
            env.step(env.action_space.sample())
        return env

    original = stepped(7)
    saved = env_state(original)
    assert saved["exact"] and "tree" in saved["simulator"]
    save_checkpoint(tmp_path / "c.ckpt", {"format_version": 1, "env_state": saved})
    loaded = load_checkpoint(tmp_path / "c.ckpt")["env_state"]

    attributes = {key: value for key, value in vars(original.unwrapped).items() if key in ("state", "last_u")}
    plain = {key: value for key, value in attributes.items() if not isinstance(value, tuple)}
    legacy = {**loaded, "simulator": {
        "kind": "classic",
        "attributes": {key: np.asarray(value) if isinstance(value, (np.generic, tuple)) else value
                       for key, value in attributes.items()},
        "tuple_keys": [key for key, value in attributes.items() if isinstance(value, tuple)],
        "none_keys": [], "scalar_keys": [key for key, value in plain.items() if isinstance(value, np.generic)]}}
    for state in (loaded, legacy):
        restored = stepped(0)
        restore_env_state(restored, state)
        for key, value in attributes.items():
            back = vars(restored.unwrapped)[key]
            assert type(back) is type(value), (key, type(back), type(value))
            if isinstance(value, tuple):
                assert [type(item) for item in back] == [type(item) for item in value]
            assert np.array_equal(np.asarray(back), np.asarray(value))
        action = original.action_space.sample()
        original_copy = stepped(7)
        expected = original_copy.step(action)[:3]
        got = restored.step(action)[:3]
        assert np.array_equal(expected[0], got[0]) and expected[1:] == got[1:]
