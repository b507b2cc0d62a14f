"""The paper's Atari preprocessing on real ALE games (PAPER §1.5, §4)."""

from __future__ import annotations

import sys
from itertools import pairwise
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ale_py", reason="Atari tests need ale-py: pip install 'streamx-rl[atari]'")
pytest.importorskip("cv2", reason="Atari tests need opencv: pip install 'streamx-rl[atari]'")

from streamx.atari import (
    AtariFrames,
    EpisodicLife,
    FireReset,
    MaxAndSkip,
    NoopReset,
    RecordGameStatistics,
    StackFrames,
    WarpFrame,
    fast_pipeline_unavailable,
    is_atari_game_name,
    is_atari_id,
    make_atari,
    resolve_atari_id,
    wrap_atari,
)
from streamx.errors import ConfigError
from streamx.wrappers import NormalizeObservation, ScaleReward, find_wrapper

NOOP, FIRE = 0, 1


class RawSpy(gym.Wrapper):
    """Sits on the raw ALE env and records every raw action, reward, reset (and frame)."""

    def __init__(self, env: gym.Env, record_frames: bool = False):
        super().__init__(env)
        self.record_frames = record_frames
        self.actions: list[int] = []
        self.rewards: list[float] = []
        self.frames: list[np.ndarray] = []
        self.resets = 0

    def reset(self, **kwargs: Any):
        observation, info = self.env.reset(**kwargs)
        self.resets += 1
        if self.record_frames:
            self.frames.append(observation.copy())
        return observation, info

    def step(self, action: Any):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.actions.append(int(action))
        self.rewards.append(float(reward))
        if self.record_frames:
            self.frames.append(observation.copy())
        return observation, reward, terminated, truncated, info


def raw_env(game: str) -> gym.Env:
    return gym.make(resolve_atari_id(game), frameskip=1, repeat_action_probability=0.0)


def spied(game: str, record_frames: bool = False, **wrap_kwargs: Any) -> tuple[gym.Env, RawSpy]:
    """The reference chain over a spy (the fast pipeline would bypass the spy)."""
    spy = RawSpy(raw_env(game), record_frames=record_frames)
    return wrap_atari(spy, pipeline="reference", **wrap_kwargs), spy


def game_over(env: gym.Env) -> bool:
    """Whether the last end was the whole game's, in either pipeline."""
    wrapper = find_wrapper(env, EpisodicLife) or find_wrapper(env, AtariFrames)
    return wrapper.game_over


needs_fast = pytest.mark.skipif(__import__("importlib").util.find_spec("numba") is None,
                                reason="the fast Atari pipeline needs numba")
PIPELINES = ["reference", pytest.param("fast", marks=needs_fast)]


def play_until_terminal(env: gym.Env, action: int, max_steps: int = 2000) -> tuple[bool, bool, dict]:
    for _ in range(max_steps):
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return terminated, truncated, info
    raise AssertionError(f"no episode end within {max_steps} steps")


def stack_types(env: gym.Env) -> list[str]:
    names = []
    while isinstance(env, gym.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return names


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_make_atari_builds_the_papers_stack_in_order(pipeline):
    env = make_atari("Breakout", pipeline=pipeline)
    if pipeline == "reference":
        assert stack_types(env)[:9] == [
            "ScaleReward", "FrameStackObservation", "NormalizeObservation", "WarpFrame", "FireReset",
            "EpisodicLife", "MaxAndSkip", "NoopReset", "RecordGameStatistics",
        ]
    else:  # wrappers 1–6 in one; the statistics wrappers at the same places (checkpoints name them so)
        assert stack_types(env)[:4] == ["ScaleReward", "StackFrames", "NormalizeObservation", "AtariFrames"]
    observation, _ = env.reset(seed=0)
    assert env.observation_space.shape == observation.shape == (4, 84, 84)
    assert observation.dtype == env.observation_space.dtype == np.float32
    env.close()


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_switches_drop_normalization_and_scaling_but_keep_float_frames(pipeline):
    env = make_atari("Breakout", obs_normalization=False, reward_scaling=False, frame_stack=2, pipeline=pipeline)
    assert find_wrapper(env, NormalizeObservation) is None and find_wrapper(env, ScaleReward) is None
    observation, _ = env.reset(seed=0)
    assert observation.shape == (2, 84, 84) and observation.dtype == np.float32
    assert observation.max() > 1.0  # raw 0–255 intensities, not rescaled
    env.close()


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_scale_pixels_divides_the_raw_frames_by_255(pipeline):
    raw = make_atari("Breakout", obs_normalization=False, pipeline=pipeline)
    scaled = make_atari("Breakout", obs_normalization=False, scale_pixels=True, pipeline=pipeline)
    assert scaled.observation_space == gym.spaces.Box(0.0, 1.0, (4, 84, 84), np.float32)
    pairs = [(raw.reset(seed=2)[0], scaled.reset(seed=2)[0])]
    for action in np.random.default_rng(2).integers(0, 4, 200):
        pairs.append((raw.step(int(action))[0], scaled.step(int(action))[0]))
    for frames, scaled_frames in pairs:
        assert scaled_frames.dtype == np.float32
        np.testing.assert_array_equal(scaled_frames, frames / np.float32(255))
    assert max(frames.max() for frames, _ in pairs) > 100  # the game's bright pixels were there to scale
    raw.close()
    scaled.close()
    with pytest.raises(ConfigError, match="scale_pixels applies only without observation normalization"):
        make_atari("Breakout", scale_pixels=True, pipeline=pipeline)


@pytest.mark.parametrize("game", ["Breakout", "pong", "ms_pacman", "ALE/Breakout-v5", "BreakoutNoFrameskip-v4",
                                  "Breakout-v4"])
def test_ids_and_bare_names_all_get_noframeskip_semantics(game):
    env = make_atari(game)
    assert env.unwrapped._frameskip == 1  # ALE/…-v5 defaults to 4 and Breakout-v4 to 2–4
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0  # v5 defaults to 0.25
    assert env.action_space.n == len(env.unwrapped.get_action_meanings())  # minimal action set
    assert is_atari_id(game)
    env.close()


def test_unknown_games_and_frame_skip_overrides_are_config_errors():
    with pytest.raises(ConfigError, match="Did you mean: ALE/Breakout-v5"):
        make_atari("Breakot")
    with pytest.raises(ConfigError, match="unknown Atari game 'CartPole-v1'"):
        make_atari("CartPole-v1")
    with pytest.raises(ConfigError, match="MaxAndSkip"):
        make_atari("Breakout", frameskip=4)
    assert not is_atari_id("CartPole-v1") and not is_atari_id("Hopper-v5")
    assert is_atari_game_name("Breakout") and is_atari_game_name("ms_pacman")
    assert not is_atari_game_name("BreakoutNoFrameskip-v4") and not is_atari_game_name("CartPoles-v1")


def test_missing_ale_py_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # makes `import ale_py` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install 'streamx-rl\[atari\]'") as caught:
        make_atari("Breakout")
    assert "\n" not in str(caught.value)
    assert is_atari_id("ALE/Breakout-v5") and is_atari_id("BreakoutNoFrameskip-v4")
    assert not is_atari_id("Breakout") and not is_atari_game_name("Breakout")  # needs ale-py's game list


def test_life_loss_is_terminal_for_the_learner_but_the_game_continues():
    env, spy = spied("Breakout")
    env.reset(seed=0)
    ale = env.unwrapped.ale
    episodic = find_wrapper(env, EpisodicLife)
    lives = ale.lives()
    assert lives == 5

    terminated, truncated, info = play_until_terminal(env, NOOP)  # served ball, still paddle: lost
    assert terminated and not truncated
    assert ale.lives() == lives - 1
    assert not ale.game_over() and not episodic.game_over
    assert "episode" not in info  # a life is not a game
    frames_before = ale.getEpisodeFrameNumber()

    env.reset()
    assert spy.resets == 1  # the emulator was not reset
    assert ale.lives() == lives - 1
    # one NOOP step continues the game, then FIRE and action 2: 3 agent steps of 4 frames
    assert ale.getEpisodeFrameNumber() == frames_before + 12

    env.reset(seed=0)  # a seed always starts a fresh game
    assert spy.resets == 2 and ale.lives() == lives
    env.close()


def test_fire_is_pressed_after_every_reset_in_breakout():
    env, spy = spied("Breakout")
    assert env.unwrapped.get_action_meanings()[:3] == ["NOOP", "FIRE", "RIGHT"]
    env.reset(seed=1)
    noops = len(spy.actions) - 8
    assert 1 <= noops <= 30
    assert spy.actions == [NOOP] * noops + [FIRE] * 4 + [2] * 4

    play_until_terminal(env, NOOP)
    env.reset()  # life-loss reset: a continuing NOOP step, then the same FIRE sequence
    assert spy.actions[-12:] == [NOOP] * 4 + [FIRE] * 4 + [2] * 4
    env.close()


def test_no_fire_wrapper_for_a_game_without_fire():
    env, spy = spied("Freeway")
    assert "FIRE" not in env.unwrapped.get_action_meanings()  # NOOP, UP, DOWN
    assert find_wrapper(env, FireReset) is None
    env.reset(seed=0)
    assert 1 <= len(spy.actions) <= 30 and set(spy.actions) == {NOOP}  # only the no-ops
    with pytest.raises(ValueError, match="no FIRE"):
        FireReset(raw_env("Freeway"))
    env.close()


def test_max_and_skip_pools_the_last_two_raw_frames_and_sums_rewards():
    spy = RawSpy(raw_env("Breakout"), record_frames=True)
    env = MaxAndSkip(spy, skip=4)
    env.reset(seed=0)
    frames_differed = False
    for action in [FIRE] + [2, 3] * 10:
        before = len(spy.frames)
        observation, reward, *_ = env.step(action)
        assert len(spy.frames) == before + 4
        np.testing.assert_array_equal(observation, np.maximum(spy.frames[-2], spy.frames[-1]))
        assert reward == sum(spy.rewards[-4:])
        frames_differed |= not np.array_equal(spy.frames[-2], spy.frames[-1])
    assert frames_differed  # the check above was not trivially true
    env.close()


def test_max_and_skip_stops_at_the_episode_end(scripted_env):
    observations = [[0.0, 9.0], [5.0, 1.0], [2.0, 7.0], [4.0, 4.0], [8.0, 0.0]]
    env = MaxAndSkip(scripted_env(observations, [1.0, 2.0, 4.0], [None, "term", "term"]))
    env.reset()
    observation, reward, terminated, _, _ = env.step(0)  # ends on its 2nd frame
    np.testing.assert_array_equal(observation, [5.0, 7.0])
    assert reward == 3.0 and terminated
    env.reset()
    observation, reward, terminated, _, _ = env.step(0)  # ends on its 1st frame: no pooling
    np.testing.assert_array_equal(observation, [8.0, 0.0])
    assert reward == 4.0 and terminated


def test_warp_frame_resizes_before_grayscaling():
    import cv2

    frame = np.random.default_rng(0).integers(0, 256, size=(210, 160, 3), dtype=np.uint8)
    warped = WarpFrame(raw_env("Breakout")).observation(frame)
    expected = cv2.cvtColor(cv2.resize(frame, (84, 84), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    assert warped.shape == (84, 84) and warped.dtype == np.uint8
    np.testing.assert_array_equal(warped, expected)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_normalization_is_per_pixel_and_before_stacking(pipeline):
    env = make_atari("Breakout", pipeline=pipeline)
    normalizer = find_wrapper(env, NormalizeObservation)
    previous, _ = env.reset(seed=0)
    observations_seen = 1
    rng = np.random.default_rng(0)
    for _ in range(60):
        observation, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
        observations_seen += 1
        # stacked frames keep the normalization of the step they were seen at: they are
        # normalized once, then shifted along (normalizing after stacking would redo them)
        np.testing.assert_array_equal(observation[:-1], previous[1:])
        previous = observation
        if terminated or truncated:
            previous, _ = env.reset()
            observations_seen += 1
    assert normalizer.stats.mean.shape == (84, 84)
    assert normalizer.stats.count == observations_seen  # one update per frame, not ×4
    env.close()


def test_reported_return_is_the_whole_games_raw_return():
    env, spy = spied("Breakout")
    env.reset(seed=5)  # with this seed random play scores in three of the five lives
    episodic = find_wrapper(env, EpisodicLife)
    rng = np.random.default_rng(5)
    life_ends = [0]  # raw-step index at each end the learner sees
    scaled_sum = 0.0
    for _ in range(5000):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
        scaled_sum += float(reward)
        if terminated or truncated:
            life_ends.append(len(spy.rewards))
            if "episode" in info:
                break
            assert not episodic.game_over
            env.reset()
    else:
        raise AssertionError("Breakout did not end within 5000 random steps")
    assert episodic.game_over and env.unwrapped.ale.game_over()
    assert len(life_ends) - 1 == 5  # four life losses, then the game over: one reported episode
    assert spy.resets == 1
    assert info["episode"]["r"] == sum(spy.rewards)  # every raw reward of every life
    per_life = [sum(spy.rewards[start:end]) for start, end in pairwise(life_ends)]
    assert info["episode"]["r"] > max(per_life)  # not one life's return
    assert info["episode"]["l"] == len(spy.rewards) == info["episode_frame_number"]  # frames
    assert scaled_sum != info["episode"]["r"]  # the learner saw scaled rewards
    env.close()


def _first_lost_life(env: gym.Env, actions: np.ndarray) -> tuple[int, int, float]:
    """Play ``actions`` from a seeded reset to the first lost life: (ALE's frame number then, the
    agent step, the game's raw return so far)."""
    env.reset(seed=1)
    statistics = find_wrapper(env, RecordGameStatistics) or find_wrapper(env, AtariFrames)
    for i, action in enumerate(actions):
        _, _, terminated, truncated, info = env.step(int(action))
        if terminated or truncated:
            assert terminated and not game_over(env), "the first end should be a lost life"
            return info["episode_frame_number"], i, statistics.game_return
    raise AssertionError("no life was lost")


def _reset_inside_the_sequence(pipeline: str, ends_on: int) -> tuple[np.ndarray, dict, int, float]:
    """Cap the game so that it ends on the ``ends_on``-th step of the reset after its first lost
    life; return that reset's observation and info, the cap and the game's raw return."""
    actions = np.random.default_rng(0).integers(0, 4, 2000)
    frame, step, raw_return = _first_lost_life(make_atari("Breakout", pipeline=pipeline), actions)
    cap = frame + 4 * ends_on
    env = make_atari("Breakout", pipeline=pipeline, max_num_frames_per_episode=cap)
    assert _first_lost_life(env, actions) == (frame, step, raw_return)
    observation, info = env.reset()
    assert not game_over(env)
    env.close()
    return observation, info, cap, raw_return


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("ends_on", [1, 2, 3], ids=["noop", "fire", "action2"])
def test_a_game_that_ends_inside_a_reset_is_reported_by_the_reset(pipeline, ends_on):
    """After a lost life, the reset continues the game with NOOP, FIRE and action 2 (the
    ``life_loss=reset`` procedure). When the frame cap falls on one of them, the game ends inside
    the reset: the reset reports it in ``info["episode"]`` and starts a new game."""
    observation, info, cap, raw_return = _reset_inside_the_sequence(pipeline, ends_on)
    assert info["episode"]["l"] == cap and info["episode"]["r"] == raw_return  # no points while serving
    assert info["lives"] == 5 and 4 * 2 < info["episode_frame_number"] <= 30 + 4 * 2  # a new game, started
    if pipeline == "fast":
        ref_observation, ref_info, _, _ = _reset_inside_the_sequence("reference", ends_on)
        np.testing.assert_array_equal(observation, ref_observation)
        assert {k: v for k, v in info.items() if k != "episode"} == {k: v for k, v in ref_info.items()
                                                                      if k != "episode"}
        assert {k: info["episode"][k] for k in "rl"} == {k: ref_info["episode"][k] for k in "rl"}


def test_a_new_game_started_inside_a_reset_gets_the_whole_start_sequence():
    actions = np.random.default_rng(0).integers(0, 4, 2000)
    frame, _, _ = _first_lost_life(make_atari("Breakout", pipeline="reference"), actions)
    spy = RawSpy(gym.make(resolve_atari_id("Breakout"), frameskip=1, repeat_action_probability=0.0,
                          max_num_frames_per_episode=frame + 8))
    env = wrap_atari(spy, pipeline="reference")
    _first_lost_life(env, actions)
    played = len(spy.actions)
    _, info = env.reset()
    assert spy.resets == 2 and "episode" in info  # the game ended on FIRE (frame + 8) and a new one began
    new_game = spy.actions[played + 8:]
    noops = len(new_game) - 8
    assert 1 <= noops <= 30
    assert new_game == [NOOP] * noops + [FIRE] * 4 + [2] * 4
    assert spy.actions[played:played + 8] == [NOOP] * 4 + [FIRE] * 4  # the old game's continuing NOOP and FIRE
    env.close()


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_a_frame_cap_shorter_than_a_games_start_is_a_config_error(pipeline):
    with pytest.raises(ConfigError, match="max_episode_steps to at least 11"):
        make_atari("Breakout", pipeline=pipeline, max_episode_steps=10)
    make_atari("Breakout", pipeline=pipeline, max_episode_steps=11).close()


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_max_episode_steps_caps_the_whole_game_in_agent_steps(pipeline):
    env = make_atari("Pong", max_episode_steps=50, pipeline=pipeline)
    env.reset(seed=0)
    terminated, truncated, info = play_until_terminal(env, NOOP, max_steps=60)
    assert truncated and not terminated
    assert info["episode"]["l"] == 200  # 50 × 4 frames, no-op and FIRE frames included
    assert game_over(env)
    env.close()


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_difference_from_gymnasium_atari_preprocessing_with_terminal_on_life_loss(pipeline):
    # gymnasium: a life loss ends the episode AND the next reset restarts the game, so the
    # agent never plays past its first life and the recorded return is one life's.
    theirs = gym.wrappers.RecordEpisodeStatistics(gym.wrappers.AtariPreprocessing(
        raw_env("Breakout"), noop_max=30, terminal_on_life_loss=True))
    theirs.reset(seed=0)
    ale = theirs.unwrapped.ale
    terminated, _, info = play_until_terminal(theirs, FIRE)  # serve, never move: lose a life
    assert terminated and ale.lives() == 4 and not ale.game_over()
    assert "episode" in info  # one life reported as an episode
    frames_before = ale.getEpisodeFrameNumber()
    theirs.reset()
    assert ale.lives() == 5  # the game restarted with all lives
    assert ale.getEpisodeFrameNumber() < frames_before
    theirs.close()

    ours = make_atari("Breakout", pipeline=pipeline)
    ours.reset(seed=0)
    ale = ours.unwrapped.ale
    terminated, _, info = play_until_terminal(ours, FIRE)
    assert terminated and ale.lives() == 4 and "episode" not in info
    frames_before = ale.getEpisodeFrameNumber()
    ours.reset()
    assert ale.lives() == 4  # the game continues with the remaining lives
    assert ale.getEpisodeFrameNumber() > frames_before
    ours.close()


def test_same_seed_same_observations():
    def rollout(seed: int) -> list[np.ndarray]:
        env = make_atari("Breakout")
        observations = [env.reset(seed=seed)[0]]
        for action in [2, 3, 2, 0, 3, 1] * 5:
            observation, _, terminated, truncated, _ = env.step(action)
            observations.append(observation)
            if terminated or truncated:
                observations.append(env.reset()[0])
        env.close()
        return observations

    first, second = rollout(7), rollout(7)
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_game_wrappers_state_dict_round_trip():
    env = make_atari("Breakout", pipeline="reference")
    env.reset(seed=0)
    play_until_terminal(env, NOOP)
    for wrapper_type in (EpisodicLife, RecordGameStatistics):
        source = find_wrapper(env, wrapper_type)
        target = wrapper_type(raw_env("Breakout"))
        saved = source.state_dict()
        target.load_state_dict(saved)
        restored = target.state_dict()
        # the game's seconds go on from where they were saved (wall-clock: not exactly equal)
        assert abs(saved.pop("game_seconds", 0.0) - restored.pop("game_seconds", 0.0)) < 1
        assert restored == saved
    assert find_wrapper(env, EpisodicLife).state_dict() == {"lives": 4, "game_over": False}
    resumed = RecordGameStatistics(raw_env("Breakout"))  # info["episode"]["t"] counts the seconds played before
    resumed.load_state_dict({"game_return": 0.0, "game_length": 0, "game_seconds": 100.0})
    assert 100.0 <= resumed.state_dict()["game_seconds"] < 101.0
    with pytest.raises(ValueError, match="noop_max"):
        NoopReset(raw_env("Breakout"), noop_max=0)
    env.close()


# -- the fast pipeline: the same numbers as the reference chain ---------------------------------------

def _transcript(env: gym.Env, actions: np.ndarray, reset_on_lost_life: int) -> list[tuple]:
    """Everything the env returns, stepping ``actions``; the env is reset after every lost life
    for the first ``reset_on_lost_life`` steps (life_loss=reset), then only when a game is over."""
    records: list[tuple] = [("reset", *env.reset(seed=11))]
    for t, action in enumerate(actions):
        observation, reward, terminated, truncated, info = env.step(int(action))
        records.append((observation, reward, terminated, truncated, info))
        if "episode" in info or (t < reset_on_lost_life and (terminated or truncated)):
            records.append(("reset", *env.reset()))
    return records


def _assert_same_transcripts(expected: list[tuple], got: list[tuple]) -> None:
    assert len(expected) == len(got)
    for index, (a, b) in enumerate(zip(expected, got, strict=True)):
        if isinstance(a[0], str):
            assert isinstance(b[0], str), index
            a, b = a[1:], b[1:]
        np.testing.assert_array_equal(b[0], a[0], err_msg=f"observation {index}")
        a_info, b_info = dict(a[-1]), dict(b[-1])
        for info in (a_info, b_info):
            if "episode" in info:
                info["episode"] = {k: v for k, v in info["episode"].items() if k != "t"}  # wall time
        assert (b[1:-1], b_info) == (a[1:-1], a_info), index


@needs_fast
def test_fast_pipeline_equals_the_reference_over_2000_steps_of_breakout():
    """Observations bit for bit (so the normalizer's statistics too), rewards, flags and info,
    through life losses with both reset rules, game overs and no-op/FIRE resets."""
    actions = np.random.default_rng(3).integers(0, 4, 2000)
    expected = _transcript(make_atari("Breakout", pipeline="reference"), actions, reset_on_lost_life=1000)
    got = _transcript(make_atari("Breakout", pipeline="fast"), actions, reset_on_lost_life=1000)
    resets = [record for record in expected if isinstance(record[0], str)]
    lost_lives = [r for r in expected if not isinstance(r[0], str) and r[2] and "episode" not in r[4]]
    assert len(resets) >= 8 and len(lost_lives) >= 20  # the transcript covers both kinds of end
    _assert_same_transcripts(expected, got)


@needs_fast
@pytest.mark.parametrize("game", ["Freeway", "SpaceInvaders"])
def test_fast_pipeline_equals_the_reference_on_other_games(game):
    """Freeway has no FIRE (the reset observation is a single raw frame); Space Invaders'
    screen changes in many places at once."""
    reference = make_atari(game, pipeline="reference", max_episode_steps=150)
    actions = np.random.default_rng(0).integers(0, reference.action_space.n, 400)
    expected = _transcript(reference, actions, reset_on_lost_life=400)
    got = _transcript(make_atari(game, pipeline="fast", max_episode_steps=150), actions, reset_on_lost_life=400)
    _assert_same_transcripts(expected, got)


@needs_fast
def test_resize_kernels_match_opencv_whole_and_after_local_changes():
    import cv2

    from streamx.atari import _FrameResizer

    rng = np.random.default_rng(0)
    resizer = _FrameResizer(210, 160, 84, 84)
    resizer.palette[:] = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    resizer.known[:] = True
    screens = rng.integers(0, 256, (2, 210, 160), dtype=np.uint8)
    recomputed = []
    for step in range(40):
        recomputed.append(resizer.update(screens, 0, 1) if step % 7 else resizer.update(screens, 1, 1))
        pooled = resizer.palette[screens[1]] if step % 7 == 0 else np.maximum(resizer.palette[screens[0]],
                                                                              resizer.palette[screens[1]])
        np.testing.assert_array_equal(resizer.small, cv2.resize(pooled, (84, 84), interpolation=cv2.INTER_AREA))
        y, x = rng.integers(0, 200), rng.integers(0, 150)  # a sprite moves in one frame
        screens[rng.integers(2), y:y + rng.integers(1, 10), x:x + rng.integers(1, 10)] = rng.integers(256)
    assert recomputed[0] == 84 * 84 and 0 < np.median(recomputed[1:]) < 84 * 84 // 10  # mostly local updates


@needs_fast
def test_fast_pipeline_states_why_it_cannot_run():
    assert fast_pipeline_unavailable(raw_env("Breakout")) is None
    assert "RawSpy" in fast_pipeline_unavailable(RawSpy(raw_env("Breakout")))
    assert "RGB" in fast_pipeline_unavailable(gym.make("ALE/Breakout-v5", frameskip=1, obs_type="grayscale"))
    with pytest.raises(ConfigError, match="fast Atari pipeline cannot run: the raw env is wrapped in RawSpy"):
        wrap_atari(RawSpy(raw_env("Breakout")), pipeline="fast")
    with pytest.raises(ConfigError, match="unknown Atari pipeline 'quick'"):
        make_atari("Breakout", pipeline="quick")
    assert "AtariFrames" not in stack_types(wrap_atari(RawSpy(raw_env("Breakout"))))  # auto: the reference


@needs_fast
def test_checkpointed_statistics_move_between_the_pipelines():
    from streamx.checkpoint import env_state, restore_env_state

    reference = make_atari("Breakout", pipeline="reference")
    reference.reset(seed=0)
    for action in [1, 2, 3] * 20:
        reference.step(action)
    fast = make_atari("Breakout", pipeline="fast")
    restore_env_state(fast, env_state(reference), mid_episode=False)
    assert find_wrapper(reference, NormalizeObservation).stats.count == 61  # the reset and 60 steps
    for wrapper_type in (NormalizeObservation, ScaleReward):
        saved, restored = find_wrapper(reference, wrapper_type), find_wrapper(fast, wrapper_type)
        assert restored.stats.count == saved.stats.count
        np.testing.assert_array_equal(restored.stats.mean, saved.stats.mean)


@needs_fast
def test_atari_frames_state_dict_round_trip_and_stack_frames():
    env = make_atari("Breakout", pipeline="fast")
    env.reset(seed=0)
    play_until_terminal(env, NOOP)
    frames = find_wrapper(env, AtariFrames)
    assert frames.state_dict()["lives"] == 4 and frames.state_dict()["game_over"] is False
    other = AtariFrames(raw_env("Breakout"))
    other.load_state_dict(frames.state_dict())
    saved, restored = frames.state_dict(), other.state_dict()
    assert saved.keys() == restored.keys() and {"screens", "palette", "small", "seen"} <= saved.keys()
    assert abs(saved.pop("game_seconds") - restored.pop("game_seconds")) < 1  # wall-clock, carried over
    for key, value in saved.items():
        assert np.array_equal(value, restored[key]), key
    with pytest.raises(ValueError, match="saved screens has shape"):
        other.load_state_dict({**saved, "screens": saved["screens"][:, :100]})
    stack = StackFrames(gym.wrappers.DtypeObservation(raw_env("Breakout"), np.float32), 3)
    first, _ = stack.reset(seed=0)
    assert first.shape == (3, 210, 160, 3) and all(np.array_equal(first[0], frame) for frame in first)
    second, *_ = stack.step(FIRE)
    np.testing.assert_array_equal(second[:2], first[1:])
    kept = second.copy()
    second[:] = -1  # the caller owns what it got: the stack's own frames are not touched
    third, *_ = stack.step(FIRE)
    np.testing.assert_array_equal(third[:2], kept[1:])
    twin = StackFrames(gym.wrappers.DtypeObservation(raw_env("Breakout"), np.float32), 3)
    twin.load_state_dict(stack.state_dict())
    assert twin._oldest == stack._oldest and np.array_equal(twin._ring, stack._ring)
    with pytest.raises(ValueError, match="oldest index 3"):
        twin.load_state_dict({**stack.state_dict(), "oldest": 3})


@pytest.mark.parametrize("name", ["gamma", "max_episode_steps", "obs_normalization", "reward_scaling"])
def test_env_kwargs_may_not_set_what_a_config_field_sets(name):
    from streamx.envs import make_env
    from streamx.run import resolve_config

    config = resolve_config("stream_q", "BreakoutNoFrameskip-v4", overrides={"env_kwargs": {name: 50}})
    with pytest.raises(ConfigError, match=f"env_kwargs sets {name}, which is a config field of its own"):
        make_env(config)
