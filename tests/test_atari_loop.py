"""The training loop on a real Atari game: ``life_loss=continue`` (the paper's procedure) and
``life_loss=reset``, checked step by step against the emulator (PAPER §4, §9; docs/atari.md)."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("ale_py", reason="Atari tests need ale-py: pip install 'streamx-rl[atari]'")
pytest.importorskip("cv2", reason="Atari tests need opencv: pip install 'streamx-rl[atari]'")

from conftest import episode_rows

from streamx.checkpoint import load_checkpoint
from streamx.loop import StreamTraining
from streamx.run import checkpoint_paths, resolve_config, resume

GAME = "BreakoutNoFrameskip-v4"
FIRE = 1


@dataclass
class Step:
    obs: np.ndarray
    action: int
    next_obs: np.ndarray
    env_terminated: bool
    env_truncated: bool
    game_over: bool  # "episode" in info
    episode: dict[str, Any] | None
    lives: int
    frame: int  # ALE's episode frame number after the step
    learner_terminated: bool | None = None
    learner_truncated: bool | None = None


@dataclass
class Recording:
    steps: list[Step] = field(default_factory=list)
    resets: list[int] = field(default_factory=list)  # index of the step before each reset (-1: the first)


def recorded_run(tmp_path, life_loss: str | None, steps: int, stop_at: int | None = None,
                 **overrides: Any) -> tuple[Recording, Any]:
    """Train Stream Q on Breakout (ε ≈ 1 this early, so the play is random) and record, per step,
    what the env returned and what the learner was given; ``stop_at``: send SIGTERM to the run
    at that step."""
    values = {"total_steps": steps, "run_dir": str(tmp_path / (life_loss or "default")), "progress": False,
              "seed": 3, **overrides}
    if life_loss is not None:
        values["life_loss"] = life_loss
    training = StreamTraining(resolve_config("stream_q", GAME, overrides=values), None)
    env, agent, record = training.env, training.agent, Recording()
    ale = env.unwrapped.ale
    real_step, real_reset, real_update = env.step, env.reset, agent._update  # what the loop calls

    def step(action):
        next_obs, reward, terminated, truncated, info = real_step(action)
        record.steps.append(Step(None, int(action), next_obs, bool(terminated), bool(truncated), "episode" in info,
                                 info.get("episode"), ale.lives(), ale.getEpisodeFrameNumber()))
        if len(record.steps) == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)  # the loop checkpoints after this step and stops
        return next_obs, reward, terminated, truncated, info

    def reset(**kwargs):
        record.resets.append(len(record.steps) - 1)
        return real_reset(**kwargs)

    def update(obs, action, reward, next_obs, terminated, truncated):
        last = record.steps[-1]
        assert next_obs is last.next_obs
        last.obs, last.learner_terminated, last.learner_truncated = obs, bool(terminated), bool(truncated)
        return real_update(obs, action, reward, next_obs, terminated, truncated)

    env.step, env.reset, agent._update = step, reset, update
    result = training.run()
    return record, result


def life_losses(record: Recording) -> list[int]:
    return [i for i, s in enumerate(record.steps) if s.env_terminated and not s.game_over]


def test_continue_a_lost_life_is_terminal_for_the_learner_and_the_same_game_goes_on(tmp_path):
    record, result = recorded_run(tmp_path, None, 1200)  # life_loss=continue is the default
    steps = record.steps
    losses = life_losses(record)
    games = [i for i, s in enumerate(steps) if s.game_over]
    assert len(losses) >= 4 and games, "the seeded game should lose lives and end within 1,200 steps"
    # the env is reset only at the start and when a game is over, never after a lost life
    assert record.resets == [-1, *games]
    for i in losses:
        assert steps[i].learner_terminated is True and steps[i].lives < steps[i - 1].lives
        after = steps[i + 1]
        assert after.obs is steps[i].next_obs  # the next action is chosen on the continuing frame
        np.testing.assert_array_equal(after.next_obs[:3], steps[i].next_obs[1:])  # the stack just shifts
        assert after.frame == steps[i].frame + 4  # no frames outside the agent's own steps
        assert after.lives == steps[i].lives
    # between a life loss and the next point, the ball is served only by the agent's own FIRE
    for i in losses:
        following = [s.action for s in steps[i + 1:i + 200]]
        assert FIRE in following
    # the learner never sees truncation; every game-over step is terminal
    assert not any(s.learner_truncated for s in steps)
    assert all(s.learner_terminated == s.env_terminated for s in steps)
    # one episodes.csv row per game: the whole game's raw return and frame count
    rows = episode_rows(result.run_dir)
    assert [(int(r["step"]), float(r["return"]), int(r["length"])) for r in rows] == [
        (i + 1, steps[i].episode["r"], steps[i].episode["l"]) for i in games]
    for i in games:
        assert steps[i].episode["l"] == steps[i].frame  # the whole game, every life
    assert all(s.lives == 5 for s in steps[:3])


def test_reset_every_lost_life_resets_the_env_and_fire_is_pressed_for_the_agent(tmp_path):
    record, result = recorded_run(tmp_path, "reset", 600)
    steps = record.steps
    losses = life_losses(record)
    games = [i for i, s in enumerate(steps) if s.game_over]
    assert len(losses) >= 2
    assert record.resets == sorted([-1, *losses, *games])
    for i in losses:
        after = steps[i + 1]
        assert after.obs is not steps[i].next_obs
        assert after.lives == steps[i].lives  # the reset after a lost life continues the same game ...
        assert after.frame == steps[i].frame + 12 + 4  # ... after NOOP, FIRE and action 2 (4 frames each)
    assert len(episode_rows(result.run_dir)) == len(games)


@pytest.mark.parametrize("life_loss", ["continue", "reset"])
def test_truncation_reaches_the_learner_only_with_reset(tmp_path, life_loss):
    record, _ = recorded_run(tmp_path, life_loss, 300, max_episode_steps=60)
    truncations = [s for s in record.steps if s.env_truncated]
    assert truncations and all(s.game_over for s in truncations)
    assert all(s.learner_truncated is (life_loss == "reset") for s in truncations)
    assert not any(s.learner_truncated for s in record.steps if not s.env_truncated)


def test_a_config_saved_without_life_loss_resumes_with_reset(tmp_path):
    """Runs made before the setting existed keep their behaviour when resumed."""
    config = resolve_config("stream_q", GAME, overrides={
        "total_steps": 300, "run_dir": str(tmp_path / "old"), "progress": False, "life_loss": "reset",
        "checkpoint_interval": 100})
    StreamTraining(config, None).run()
    path = tmp_path / "old" / "config.json"
    saved = json.loads(path.read_text())
    del saved["life_loss"]
    path.write_text(json.dumps(saved))
    from streamx.rundir import load_run_config

    assert load_run_config(tmp_path / "old").life_loss == "reset"


@pytest.mark.parametrize("life_loss", ["continue", "reset"])
def test_a_mid_game_stop_resumes_the_same_game_and_equals_the_uninterrupted_run(tmp_path, life_loss):
    """The checkpoint holds the emulator and the frames: a run stopped mid-game (SIGTERM) continues
    that game, and its games, returns and final weights are the uninterrupted run's."""
    full, _ = recorded_run(tmp_path / "full", life_loss, 1400)
    first, stopped = recorded_run(tmp_path, life_loss, 1400, stop_at=500)
    run_dir = tmp_path / life_loss
    assert stopped.status == "interrupted" and not first.steps[-1].game_over  # stopped mid-game
    checkpoint = load_checkpoint(checkpoint_paths(run_dir)[-1])
    assert checkpoint["env_state"]["exact"] and checkpoint["env_state"]["simulator"]["kind"] == "ale"
    resume(run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["resumes"] == [{"step": 500, "mid_episode": True}]
    assert episode_rows(run_dir) == episode_rows(tmp_path / "full" / life_loss)
    assert len(episode_rows(run_dir)) >= 3 and any(s.game_over for s in full.steps[500:])
    final = load_checkpoint(checkpoint_paths(run_dir)[-1])["agent"]["networks"]
    reference = load_checkpoint(checkpoint_paths(tmp_path / "full" / life_loss)[-1])["agent"]["networks"]
    assert all(torch.equal(reference[n][k], final[n][k]) for n in reference for k in reference[n])


def test_a_checkpoint_without_the_emulator_resumes_at_a_new_game_and_merges_no_returns(tmp_path, monkeypatch):
    """A checkpoint that holds no emulator state (written by a streamx that did not save it):
    the resumed run starts a fresh game, and the abandoned game gets no row."""
    from streamx import checkpoint as checkpoint_module

    monkeypatch.setattr(checkpoint_module, "_simulator_state", lambda unwrapped: None)
    first, stopped = recorded_run(tmp_path, "continue", 1400, stop_at=500)
    run_dir = tmp_path / "continue"
    assert stopped.status == "interrupted" and len(first.steps) == 500
    games_before = [s for s in first.steps if s.game_over]
    assert not first.steps[-1].game_over  # stopped mid-game
    checkpoint = load_checkpoint(checkpoint_paths(run_dir)[-1])
    assert checkpoint["loop"]["mid_episode"] is True and not checkpoint["env_state"]["exact"]
    result = resume(run_dir)
    rows = episode_rows(run_dir)
    assert len(rows) == len(result.episode_returns) and len(rows) > len(games_before)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumes"] == [{"step": 500, "mid_episode": False}]
    # the first game after the resume starts from ALE frame 0: its length is one game's frames
    # (no-op and FIRE frames included), not the abandoned game's plus the new one's
    first_new = rows[len(games_before)]
    steps_in_new_game = int(first_new["step"]) - 500
    assert int(first_new["length"]) <= 4 * steps_in_new_game + 30 + 8


@pytest.mark.skipif(__import__("importlib").util.find_spec("numba") is None,
                    reason="the fast Atari pipeline needs numba")
def test_a_game_saved_with_one_pipeline_resumed_with_the_other_starts_a_new_game(tmp_path):
    """The two pipelines keep different frame state: a mid-game checkpoint of a reference-pipeline
    run resumed with the fast pipeline cannot continue its game, so it starts a new one (keeping
    the learning statistics)."""
    from streamx.rundir import load_run_config

    config = resolve_config("stream_q", GAME, overrides={
        "total_steps": 600, "run_dir": str(tmp_path / "run"), "progress": False, "checkpoint_interval": 0,
        "env_kwargs": {"pipeline": "reference"}})
    StreamTraining(config, None).run()
    payload = load_checkpoint(checkpoint_paths(tmp_path / "run")[-1])
    assert payload["env_state"]["exact"] and payload["loop"]["mid_episode"]
    resumed_config = load_run_config(tmp_path / "run").replace(total_steps=700, env_kwargs={"pipeline": "fast"})
    training = StreamTraining(resumed_config, None, payload)
    assert training.run().steps == 700
    assert training.resumes[-1] == {"step": 600, "mid_episode": False}


def test_at_the_frame_cap_sarsa_draws_the_next_games_first_action_from_its_reset_frame(tmp_path):
    """Under life_loss=continue the learner never sees the frame cap (PAPER §9): its episode, and
    its traces, go on; but the a' Stream SARSA drew from the old game's last frame is dropped
    before the reset, so the new game's first action comes from the new game's first frame."""
    config = resolve_config("stream_sarsa", GAME, overrides={
        "total_steps": 300, "run_dir": str(tmp_path / "sarsa"), "progress": False, "seed": 3,
        "max_episode_steps": 60})
    training = StreamTraining(config, None)
    env, agent = training.env, training.agent
    real_step, real_reset, real_restarted = env.step, env.reset, agent.env_restarted
    capped, pending_at_reset, pending_before_restart = [], [], []

    def step(action):
        next_obs, reward, terminated, truncated, info = real_step(action)
        if "episode" in info and not terminated:
            capped.append(truncated)
        return next_obs, reward, terminated, truncated, info

    def reset(**kwargs):
        pending_at_reset.append(agent._next_action)
        return real_reset(**kwargs)

    def restarted():
        pending_before_restart.append(agent._next_action)
        real_restarted()

    env.step, env.reset, agent.env_restarted = step, reset, restarted
    training.run()
    assert len(capped) >= 3 and all(capped), "every game of 60 agent steps should end at the frame cap"
    assert len(pending_before_restart) == len(capped)
    assert all(action is not None for action in pending_before_restart)  # SARSA had drawn a' from the last frame
    assert pending_at_reset[0] is None and all(action is None for action in pending_at_reset[1:])


def test_a_game_that_ends_inside_the_reset_after_a_lost_life_is_written_to_episodes_csv(tmp_path):
    """With life_loss=reset the loop resets after every lost life; if the frame cap falls on that
    reset's FIRE, the game ends inside it. The game is still a row of episodes.csv, at the step
    of the lost life, with the emulator's whole-game return and length."""
    free, _ = recorded_run(tmp_path / "free", "reset", 300)
    first = life_losses(free)[0]
    cap = free.steps[first].frame + 8  # the continuing NOOP, then FIRE: the game ends on FIRE
    record, result = recorded_run(tmp_path / "capped", "reset", 300,
                                  env_kwargs={"max_num_frames_per_episode": cap})
    assert [s.action for s in record.steps[:first + 1]] == [s.action for s in free.steps[:first + 1]]
    assert record.steps[first].env_terminated and not record.steps[first].game_over
    assert record.steps[first + 1].lives == 5 and record.steps[first + 1].frame < 50  # a new game
    rows = episode_rows(result.run_dir)
    assert int(rows[0]["step"]) == first + 1 and int(rows[0]["length"]) == cap
    # every game is one row: those that ended on a step, and those that ended inside a reset
    # (the next step is then a new game's: its frame number starts again)
    in_reset = [i for i in life_losses(record) if record.steps[i + 1].frame < record.steps[i].frame]
    on_step = [i for i, s in enumerate(record.steps) if s.game_over]
    assert [int(row["step"]) for row in rows] == sorted(i + 1 for i in in_reset + on_step)
    assert all(int(row["length"]) == cap for row in rows if int(row["step"]) - 1 in in_reset)
