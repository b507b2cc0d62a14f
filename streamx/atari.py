"""The paper's Atari preprocessing as gymnasium 1.x wrappers (PAPER §1.5, §1.6, §4).

The stack, innermost first (``make_atari``/``wrap_atari`` build it in this order)::

    ALE env (frameskip=1, repeat_action_probability=0, minimal action set)
    → RecordGameStatistics   whole-game raw return in info["episode"], only when the game is over
    → NoopReset(30)          1..30 NOOP frames after every real reset
    → MaxAndSkip(4)          repeat the action 4 frames, sum rewards, max of the last two frames
    → EpisodicLife           life loss = terminated for the learner; the game itself continues
    → FireReset              press FIRE (then action 2) after every reset, if the game has FIRE
    → WarpFrame              resize to 84×84 (INTER_AREA), then grayscale → uint8 (84, 84)
    → NormalizeObservation   per-pixel Welford statistics, before stacking → float32 (84, 84)
    → FrameStackObservation  4 frames, channels first → float32 (4, 84, 84)
    → ScaleReward(γ)         no reward clipping

Why the statistics wrapper sits innermost: everything outside it drops or splits rewards from
the learner's view (no-op and FIRE frames, lives), so only the raw emulator stream gives the
whole game's score. See docs/atari.md for how episodic life interacts with ``reset`` and why
gymnasium's ``AtariPreprocessing(terminal_on_life_loss=True)`` is not the same.

Two implementations of that stack give the same observations, rewards, flags and ``info``
(``pipeline=``): ``reference``, the chain of small wrappers above, and ``fast``, where
:class:`AtariFrames` does wrappers 1–6 in one (reading the screen as palette indices and
resizing with numba kernels that reproduce OpenCV's numbers bit for bit, streamx.atari_kernels)
and :class:`StackFrames` stacks. ``auto`` (the default) picks ``fast`` where it can run.
"""

from __future__ import annotations

import difflib
import re
import time
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from streamx.errors import ConfigError
from streamx.wrappers import NormalizeObservation, ScaleReward

__all__ = [
    "PIPELINES",
    "AtariFrames",
    "EpisodicLife",
    "FireReset",
    "MaxAndSkip",
    "NoopReset",
    "RecordGameStatistics",
    "ScalePixels",
    "StackFrames",
    "WarpFrame",
    "atari_game_ids",
    "fast_pipeline_unavailable",
    "is_atari_game_name",
    "is_atari_id",
    "make_atari",
    "resolve_atari_id",
    "wrap_atari",
]

_INSTALL_HINT = "install it with: pip install 'streamx-rl[atari]'"
_ALE_ENTRY_POINT = "ale_py.env:AtariEnv"
# Ids that look like ALE ids even when ale-py is missing (so the factory can route them here
# and make_atari can say what to install): ALE/<Game>-v5, <Game>NoFrameskip-v4, <Game>-v0/v4.
_ALE_ID_PATTERN = re.compile(r"^(ALE/[A-Za-z0-9]+-v\d+|[A-Z][A-Za-z0-9]*NoFrameskip-v[04])$")

StepResult = tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]

PIPELINES = ("auto", "fast", "reference")
"""``wrap_atari(pipeline=…)``: ``reference`` is the chain of wrappers; ``fast`` does the same with
:class:`AtariFrames` and :class:`StackFrames`; ``auto`` picks ``fast`` unless it cannot run."""


def _ale(env: gym.Env) -> Any:
    """The ``ale_py.ALEInterface`` under ``env`` (gymnasium 1.x wrappers no longer forward it)."""
    return env.unwrapped.ale  # type: ignore[attr-defined]


def _action_meanings(env: gym.Env) -> list[str]:
    return list(env.unwrapped.get_action_meanings())  # type: ignore[attr-defined]


def _with_game(info: dict[str, Any], episode: dict[str, Any] | None) -> dict[str, Any]:
    """``info`` of a reset that started a new game because the last one ended inside the reset
    sequence (a no-op, the NOOP that continues after a lost life, FIRE or action 2): carry that
    game's statistics, so the game is still reported (as ``info["episode"]`` of the reset)."""
    if episode is None or "episode" in info:
        return info
    return {**info, "episode": episode}


class RecordGameStatistics(gym.Wrapper):
    """Put the WHOLE game's statistics in ``info["episode"]`` when the game is really over.

    Place it directly on the raw ALE env (innermost): it sees every emulator frame, including
    no-op and FIRE frames, and every raw, unclipped, unscaled reward. ``info["episode"]`` has
    gymnasium's ``RecordEpisodeStatistics`` format (scalars):

    - ``"r"``: the sum of the raw rewards of the game (all lives);
    - ``"l"``: the game's length in **emulator frames** (≈ 4 × agent steps with frame skip 4;
      equal to ALE's ``info["episode_frame_number"]`` at the end of the game);
    - ``"t"``: wall-clock seconds since the game's reset (across a checkpoint and resume: the
      seconds played before it, then those after).

    It appears only on the step where the raw env reports ``terminated`` (game over) or
    ``truncated`` (ALE's frame limit), never on a life loss. A loop that records an episode
    whenever ``"episode" in info`` therefore logs whole games.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.game_return = 0.0
        self.game_length = 0
        self._game_start = time.perf_counter()

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        self.game_return = 0.0
        self.game_length = 0
        self._game_start = time.perf_counter()
        return observation, info

    def step(self, action: Any) -> StepResult:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.game_return += float(reward)
        self.game_length += 1
        if terminated or truncated:
            info = dict(info)
            info["episode"] = {
                "r": self.game_return,
                "l": self.game_length,
                "t": round(time.perf_counter() - self._game_start, 6),
            }
        return observation, reward, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        """The running game's counters. They describe the emulator's current game, so they are
        meaningful only restored together with that game; a ``reset`` zeroes them."""
        return {"game_return": self.game_return, "game_length": self.game_length,
                "game_seconds": time.perf_counter() - self._game_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.game_return = float(state["game_return"])
        self.game_length = int(state["game_length"])
        self._game_start = time.perf_counter() - float(state.get("game_seconds", 0.0))


class NoopReset(gym.Wrapper):
    """After every reset, take ``k ~ U{1, …, noop_max}`` NOOP actions (action 0).

    ``k`` is drawn from the raw env's ``np_random``, so ``reset(seed=…)`` makes it reproducible.
    Put it inside the frame skip: each NOOP is one emulator frame. In the full stack this reset
    runs only on a real (game-over) reset, because EpisodicLife continues the game otherwise.
    """

    def __init__(self, env: gym.Env, noop_max: int = 30) -> None:
        super().__init__(env)
        if noop_max < 1:
            raise ValueError(f"noop_max must be at least 1, got {noop_max}")
        meanings = _action_meanings(env)
        if meanings[0] != "NOOP":
            raise ValueError(f"action 0 must be NOOP for no-op resets, but the actions are {meanings}")
        self.noop_max = noop_max
        self.noop_action = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        num_noops = int(self.unwrapped.np_random.integers(1, self.noop_max + 1))
        ended = None
        for _ in range(num_noops):
            observation, _, terminated, truncated, info = self.env.step(self.noop_action)
            if terminated or truncated:  # not seen in practice; start over, without reseeding
                ended = info.get("episode", ended)
                observation, info = self.env.reset()
        return observation, _with_game(info, ended)


class MaxAndSkip(gym.Wrapper):
    """Repeat the action for ``skip`` frames, sum the rewards, and return the elementwise
    maximum of the last two raw frames of this agent step (Atari sprites flicker between frames).

    Stops early on ``terminated``/``truncated``; if that happens on the step's first frame, the
    single frame is returned as is (no frame from the previous agent step is mixed in). With
    ``skip=1`` it returns the frame unchanged. Holds no state between steps.
    """

    def __init__(self, env: gym.Env, skip: int = 4) -> None:
        super().__init__(env)
        if skip < 1:
            raise ValueError(f"skip must be at least 1, got {skip}")
        self.skip = skip

    def step(self, action: Any) -> StepResult:
        total_reward = 0.0
        previous_frame = None
        frame: Any = None  # an observation of the inner env (its type is not known here)
        terminated, truncated = False, False
        info: dict[str, Any] = {}
        for _ in range(self.skip):
            previous_frame = frame
            frame, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            if terminated or truncated:
                break
        pooled = frame if previous_frame is None else np.maximum(previous_frame, frame)
        return pooled, total_reward, terminated, truncated, info


class EpisodicLife(gym.Wrapper):
    """A lost life ends the learner's episode (``terminated=True``) but not the game.

    - ``step``: when the lives counter drops and lives remain, report ``terminated=True``; the
      emulator keeps running. The step where the game is really over keeps its own flags.
    - ``reset``: if the game is not over, do NOT restart it — take one NOOP step (the game
      continues from where the life was lost) and return its observation. A real reset of the
      inner env happens only when ``game_over`` is set (game over or ALE truncation) or a
      ``seed`` is given (so seeding always starts a fresh, reproducible game).

    ``game_over`` tells the loop (and tests) whether the last end was the whole game's; the
    whole game's return is in ``info["episode"]`` from RecordGameStatistics on that step.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True  # nothing played yet: the first reset is a real one
        self.noop_action = 0

    def step(self, action: Any) -> StepResult:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = bool(terminated or truncated)
        lives = _ale(self).lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return observation, reward, terminated, truncated, info

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        if self.game_over or kwargs.get("seed") is not None:
            observation, info = self.env.reset(**kwargs)
        else:
            observation, _, terminated, truncated, info = self.env.step(self.noop_action)
            if terminated or truncated:  # the game ended on the continuing NOOP: start a new one
                ended = info.get("episode")
                observation, info = self.env.reset(**kwargs)
                info = _with_game(info, ended)
        self.game_over = False
        self.lives = _ale(self).lives()
        return observation, info

    def state_dict(self) -> dict[str, Any]:
        """Lives and game-over flag of the emulator's current game: meaningful only restored
        together with that game; ``reset(seed=…)`` starts a fresh game regardless."""
        return {"lives": self.lives, "game_over": self.game_over}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lives = int(state["lives"])
        self.game_over = bool(state["game_over"])


class FireReset(gym.Wrapper):
    """After every reset (real or life-loss), press FIRE and then action 2, the usual
    "start the game" sequence; games such as Breakout wait for FIRE to serve the ball.

    Use it only for games whose action meanings include FIRE (``has_fire``); the constructor
    raises otherwise. Put it outside EpisodicLife so it also fires after a life-loss reset.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = _action_meanings(env)
        if not self.has_fire(env):
            raise ValueError(f"the game has no FIRE action (actions: {meanings})")
        self.fire_action = meanings.index("FIRE")
        self.start_actions = [self.fire_action] + ([2] if len(meanings) > 2 else [])

    @staticmethod
    def has_fire(env: gym.Env) -> bool:
        return "FIRE" in _action_meanings(env)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        ended, pressed = info.get("episode"), 0  # a game that ended inside the inner reset
        while pressed < len(self.start_actions):
            observation, _, terminated, truncated, info = self.env.step(self.start_actions[pressed])
            pressed += 1
            if terminated or truncated:  # a life or the game was lost: reset again (no reseeding), start over
                ended = info.get("episode", ended)
                observation, info = self.env.reset()
                ended = info.get("episode", ended)
                pressed = 0
        return observation, _with_game(info, ended)


class WarpFrame(gym.ObservationWrapper):
    """RGB frame → uint8 (84, 84): first resize with ``cv2.INTER_AREA``, then grayscale.

    The order follows PAPER §4 (resize → grayscale). gymnasium's AtariPreprocessing and the
    common DQN wrappers grayscale first; the outputs differ by rounding (at most a few levels).
    A frame that is already grayscale (H, W) is only resized.
    """

    def __init__(self, env: gym.Env, width: int = 84, height: int = 84) -> None:
        super().__init__(env)
        self._cv2 = _import_cv2()
        self.width = width
        self.height = height
        self.observation_space = gym.spaces.Box(0, 255, shape=(height, width), dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        resized = self._cv2.resize(observation, (self.width, self.height), interpolation=self._cv2.INTER_AREA)
        if resized.ndim == 3:
            resized = self._cv2.cvtColor(resized, self._cv2.COLOR_RGB2GRAY)
        return np.asarray(resized, dtype=np.uint8)


# -- the fast pipeline -----------------------------------------------------------------------------

_PLAIN_MAKE_WRAPPERS = ("OrderEnforcing", "PassiveEnvChecker")
_probe_results: dict[tuple[int, int, int, int], bool] = {}


def fast_pipeline_unavailable(env: gym.Env) -> str | None:
    """Why :class:`AtariFrames` cannot stand in for wrappers 1–6 on ``env``, or None if it can.

    It drives the emulator directly, so ``env`` must be a raw ALE env as ``gym.make`` returns it
    (RGB frames, ``frameskip=1``, discrete actions, no wrapper of one's own in between, which it
    would bypass), numba must be installed, and the installed OpenCV's area resize must give the
    numbers streamx's kernels reproduce (checked once per process on a random frame).
    """
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numba is not installed (pip install 'streamx-rl[fast]')"
    unwrapped = env.unwrapped
    if type(unwrapped).__module__ != "ale_py.env" or not hasattr(unwrapped, "ale"):
        return f"the innermost env is {type(unwrapped).__name__}, not ale-py's AtariEnv"
    current: Any = env
    while isinstance(current, gym.Wrapper):
        if type(current).__name__ not in _PLAIN_MAKE_WRAPPERS:
            return f"the raw env is wrapped in {type(current).__name__}, which the fast pipeline would bypass"
        current = current.env
    if getattr(unwrapped, "_obs_type", None) != "rgb" or getattr(unwrapped, "sound_obs", False):
        return "the ALE env does not return plain RGB frames"
    if getattr(unwrapped, "_frameskip", None) != 1 or getattr(unwrapped, "continuous", False):
        return "the ALE env skips frames itself or takes continuous actions"
    ale = unwrapped.ale
    if ale.getBool("color_averaging"):
        return "ALE's colour averaging is on (a frame's colours are then not its palette's)"
    height, width = ale.getScreenDims()
    key = (height, width, 84, 84)
    if key not in _probe_results:
        try:
            _probe_results[key] = _kernels_match_opencv(height, width, 84, 84)
        except ValueError:  # a screen the area tables do not cover (not an Atari 2600 one)
            _probe_results[key] = False
    if not _probe_results[key]:
        return "the installed OpenCV resizes differently from streamx's copy of its INTER_AREA"
    return None


def _kernels_match_opencv(height: int, width: int, out_height: int, out_width: int) -> bool:
    """Whether the kernels' resize of random max-pooled frames equals OpenCV's, bit for bit,
    computed whole and after a local change."""
    cv2 = _import_cv2()
    resizer = _FrameResizer(height, width, out_height, out_width)
    rng = np.random.default_rng(12345)
    resizer.palette[:] = rng.integers(0, 256, resizer.palette.shape, dtype=np.uint8)
    resizer.known[:] = True
    screens = np.empty((2, height, width), np.uint8)
    screens[0] = rng.integers(0, 256, (height, width), dtype=np.uint8)
    screens[1] = screens[0]
    changed = rng.random((height, width)) < 0.3
    screens[1][changed] = rng.integers(0, 256, int(changed.sum()), dtype=np.uint8)
    matches = True
    for _ in range(2):
        resizer.update(screens, 0, 1)
        expected = cv2.resize(np.maximum(resizer.palette[screens[0]], resizer.palette[screens[1]]),
                              (out_width, out_height), interpolation=cv2.INTER_AREA)
        matches = matches and np.array_equal(resizer.small, expected)
        screens[1, 30:50, 20:60] = 7  # a local change: only the pixels it reaches are recomputed
    return matches


class _FrameResizer:
    """Pairs of palette-index frames → the resized RGB max-pool, kept up to date incrementally
    (streamx.atari_kernels.update_frame) in ``small`` (uint8, ``(out_height, out_width, 3)``)."""

    def __init__(self, height: int, width: int, out_height: int, out_width: int) -> None:
        from streamx import atari_kernels

        self.kernels = atari_kernels
        self.palette = np.zeros((256, 3), np.uint8)
        self.known = np.zeros(256, np.bool_)
        self.small = np.zeros((out_height, out_width, 3), np.uint8)
        self._seen = np.zeros((2, height, width), np.uint8)
        self._tables = atari_kernels.resize_tables(height, width, out_height, out_width)
        self._dirty = np.zeros((out_height, out_width), np.uint8)
        self._marks = np.zeros(out_height * out_width + 1, np.int32)
        self._row = np.zeros((4, 3, max(width, out_width)), np.float32)
        self._pair = np.zeros(2, np.int64)
        # Recomputing one output pixel costs about 1/3 of its share of a whole pass (no row sharing).
        self._most = out_height * out_width // 3
        self._valid = False

    def update(self, screens: np.ndarray, first: int, last: int, everything: bool = False) -> int:
        """Max-pool ``screens[first]`` and ``screens[last]`` (``(2, H, W)`` palette indices) into ``small``."""
        everything = everything or not self._valid
        self._valid = True
        self._pair[0], self._pair[1] = first, last
        return int(self.kernels.update_frame(screens, self._pair, self._seen, self.palette, self.small, *self._tables,
                                             self._dirty, self._marks, self._row, everything, self._most))


class AtariFrames(gym.Wrapper):
    """Wrappers 1–6 of the stack in one, with the same results: ``RecordGameStatistics →
    NoopReset(noop_max) → MaxAndSkip(skip) → EpisodicLife → FireReset → WarpFrame``.

    Each emulator frame is read as palette indices (``getScreen``: a copy of 33.6 kB, no colour
    conversion); the colours are learned from the emulator as they first appear; the 84×84
    frame is OpenCV's area resize of the RGB max-pool of the step's last two frames, computed by
    numba kernels that reproduce OpenCV's arithmetic, for the output pixels whose source pixels
    changed; grayscale is OpenCV's ``cvtColor`` on that. ``game_over``, ``lives``, the game's
    return and length, ``info`` and the reset rules are those of the wrappers it replaces (see
    their docstrings). It steers the emulator directly, so it must sit on the raw ALE env
    (:func:`fast_pipeline_unavailable` says when it cannot).
    """

    def __init__(self, env: gym.Env, noop_max: int = 30, skip: int = 4, width: int = 84, height: int = 84) -> None:
        super().__init__(env)
        reason = fast_pipeline_unavailable(env)
        if reason is not None:
            raise ValueError(f"AtariFrames cannot run here: {reason}")
        if noop_max < 0 or skip < 1:
            raise ValueError(f"noop_max must be non-negative and skip at least 1, got {noop_max} and {skip}")
        self._cv2 = _import_cv2()
        self._ale = _ale(env)
        self._action_set = list(env.unwrapped._action_set)  # type: ignore[attr-defined]
        meanings = _action_meanings(env)
        if noop_max > 0 and meanings[0] != "NOOP":
            raise ValueError(f"action 0 must be NOOP for no-op resets, but the actions are {meanings}")
        self.noop_max = noop_max
        self.skip = skip
        self.start_actions = ([meanings.index("FIRE")] + ([2] if len(meanings) > 2 else [])
                              if "FIRE" in meanings else [])
        self.observation_space = gym.spaces.Box(0, 255, shape=(height, width), dtype=np.uint8)
        screen_height, screen_width = self._ale.getScreenDims()
        self._screens = np.zeros((2, screen_height, screen_width), np.uint8)
        self._flat = [screen.reshape(-1) for screen in self._screens]
        self._words = [flat.view(np.uint64) for flat in self._flat]
        self._current = 0  # self._screens[self._current] holds the newest frame
        self._pair = (0, 0)  # the frames to max-pool: indices into self._screens
        self._base_known = False  # whether the other screen is a frame whose colours are all known
        self._rgb = np.zeros((screen_height, screen_width, 3), np.uint8)
        self._resizer = _FrameResizer(screen_height, screen_width, height, width)
        self._gray = np.zeros((height, width), np.uint8)
        self.game_return = 0.0
        self.game_length = 0
        self._game_start = time.perf_counter()
        self.lives = 0
        self.game_over = True  # nothing played yet: the first reset is a real one

    # -- the emulator, frame by frame (RecordGameStatistics) ----------------------------------------
    def _read_screen(self) -> None:
        """Read the emulator's screen into the older buffer and make it the newest; learn any
        colour not seen before (read once in RGB while the frame is on screen)."""
        new = 1 - self._current
        self._ale.getScreen(self._screens[new])
        flat, resizer = self._flat[new], self._resizer
        if not resizer.kernels.frame_colours_known(flat, self._words[new], self._words[self._current], resizer.known,
                                                   not self._base_known):
            self._ale.getScreenRGB(self._rgb)
            resizer.kernels.learn_colours(flat, self._rgb.reshape(-1, 3), resizer.palette, resizer.known)
        self._base_known = True
        self._current = new

    def _frame(self, ale_action: Any) -> tuple[float, bool, bool]:
        reward = float(self._ale.act(ale_action))
        self._read_screen()
        self.game_return += reward
        self.game_length += 1
        return reward, self._ale.game_over(with_truncation=False), self._ale.game_truncated()

    def _info(self, over: bool) -> dict[str, Any]:
        ale = self._ale
        info: dict[str, Any] = {"lives": ale.lives(), "episode_frame_number": ale.getEpisodeFrameNumber(),
                                "frame_number": ale.getFrameNumber()}
        if over:
            info["episode"] = {"r": self.game_return, "l": self.game_length,
                               "t": round(time.perf_counter() - self._game_start, 6)}
        return info

    def _raw_reset(self, **kwargs: Any) -> dict[str, Any]:
        _, info = self.env.reset(**kwargs)
        self.game_return = 0.0
        self.game_length = 0
        self._game_start = time.perf_counter()
        self._read_screen()
        self._pair = (self._current, self._current)
        return info

    # -- NoopReset ----------------------------------------------------------------------------------
    def _noop_reset(self, **kwargs: Any) -> dict[str, Any]:
        info = self._raw_reset(**kwargs)
        if self.noop_max == 0:
            return info
        ended = None
        for _ in range(int(self.unwrapped.np_random.integers(1, self.noop_max + 1))):
            _, terminated, truncated = self._frame(self._action_set[0])
            self._pair = (self._current, self._current)
            info = self._info(terminated or truncated)
            if terminated or truncated:  # not seen in practice; start over, without reseeding
                ended = info["episode"]
                info = self._raw_reset()
        return _with_game(info, ended)

    # -- MaxAndSkip ---------------------------------------------------------------------------------
    def _skip(self, action: Any) -> tuple[float, bool, bool, dict[str, Any]]:
        ale_action = self._action_set[action]
        total, terminated, truncated, frames = 0.0, False, False, 0
        while frames < self.skip:
            reward, terminated, truncated = self._frame(ale_action)
            total += reward
            frames += 1
            if terminated or truncated:
                break
        self._pair = (self._current, self._current) if frames == 1 else (1 - self._current, self._current)
        return total, terminated, truncated, self._info(terminated or truncated)

    # -- EpisodicLife -------------------------------------------------------------------------------
    def _life_step(self, action: Any) -> tuple[float, bool, bool, dict[str, Any]]:
        reward, terminated, truncated, info = self._skip(action)
        self.game_over = bool(terminated or truncated)
        lives = self._ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return reward, terminated, truncated, info

    def _life_reset(self, **kwargs: Any) -> dict[str, Any]:
        if self.game_over or kwargs.get("seed") is not None:
            info = self._noop_reset(**kwargs)
        else:
            _, terminated, truncated, info = self._skip(0)
            if terminated or truncated:  # the game ended on the continuing NOOP: start a new one
                info = _with_game(self._noop_reset(**kwargs), info["episode"])
        self.game_over = False
        self.lives = self._ale.lives()
        return info

    # -- FireReset, WarpFrame -----------------------------------------------------------------------
    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        info = self._life_reset(**kwargs)
        ended, pressed = info.get("episode"), 0  # a game that ended inside the inner reset
        while pressed < len(self.start_actions):
            _, terminated, truncated, info = self._life_step(self.start_actions[pressed])
            pressed += 1
            if terminated or truncated:  # a life or the game was lost: reset again (no reseeding), start over
                ended = info.get("episode", ended)
                info = self._life_reset()
                ended = info.get("episode", ended)
                pressed = 0
        return self._observation(), _with_game(info, ended)

    def step(self, action: Any) -> StepResult:
        reward, terminated, truncated, info = self._life_step(action)
        return self._observation(), reward, terminated, truncated, info

    def _observation(self) -> np.ndarray:
        self._resizer.update(self._screens, *self._pair)
        self._cv2.cvtColor(self._resizer.small, self._cv2.COLOR_RGB2GRAY, dst=self._gray)
        return self._gray.copy()

    def state_dict(self) -> dict[str, Any]:
        """The running game's counters, lives and game-over flag, and the frames the next
        observation is made from (the last two screens, the colours learned, the resized frame
        and what it was made from): meaningful only restored together with that game's emulator
        state (as RecordGameStatistics' and EpisodicLife's)."""
        resizer = self._resizer
        return {"game_return": self.game_return, "game_length": self.game_length,
                "game_seconds": time.perf_counter() - self._game_start, "lives": self.lives,
                "game_over": self.game_over, "screens": self._screens.copy(), "current": self._current,
                "pair": list(self._pair), "base_known": self._base_known, "palette": resizer.palette.copy(),
                "known": resizer.known.copy(), "small": resizer.small.copy(), "seen": resizer._seen.copy(),
                "valid": resizer._valid}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.game_return = float(state["game_return"])
        self.game_length = int(state["game_length"])
        self._game_start = time.perf_counter() - float(state.get("game_seconds", 0.0))
        self.lives = int(state["lives"])
        self.game_over = bool(state["game_over"])
        if "screens" not in state:  # saved without the frames: the next reset starts a new game anyway
            return
        resizer = self._resizer
        for name, target, value in (("screens", self._screens, state["screens"]), ("palette", resizer.palette,
                                    state["palette"]), ("known", resizer.known, state["known"]),
                                    ("small", resizer.small, state["small"]), ("seen", resizer._seen, state["seen"])):
            value = np.asarray(value)
            if value.shape != target.shape or value.dtype != target.dtype:
                raise ValueError(f"saved {name} has shape {value.shape} and dtype {value.dtype}, "
                                 f"expected {target.shape} and {target.dtype}")
            target[...] = value
        current, pair = int(state["current"]), tuple(int(index) for index in state["pair"])
        if current not in (0, 1) or len(pair) != 2 or not set(pair) <= {0, 1}:
            raise ValueError(f"saved frame indices {current} and {pair} are not 0 or 1")
        self._current, self._pair = current, (pair[0], pair[1])
        self._base_known = bool(state["base_known"])
        resizer._valid = bool(state["valid"])


class StackFrames(gym.Wrapper):
    """The last ``size`` observations, oldest first, as one array ``(size, *shape)`` (gymnasium's
    ``FrameStackObservation`` with its default padding: after a reset, ``size`` copies of the
    reset observation). Each call returns a new array."""

    def __init__(self, env: gym.Env, size: int) -> None:
        super().__init__(env)
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box):
            raise TypeError(f"StackFrames needs a Box observation space, got {space}")
        self.size = size
        self.observation_space = gym.spaces.Box(np.repeat(space.low[None], size, axis=0),
                                                np.repeat(space.high[None], size, axis=0), dtype=space.dtype)
        self._ring = np.zeros(self.observation_space.shape, dtype=space.dtype)  # frames; the oldest at _oldest
        self._oldest = 0

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        self._ring[:] = observation
        self._oldest = 0
        return self._ring.copy(), info

    def state_dict(self) -> dict[str, Any]:
        """The stacked frames: meaningful only restored together with the game they came from."""
        return {"ring": self._ring.copy(), "oldest": self._oldest}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ring, oldest = np.asarray(state["ring"]), int(state["oldest"])
        if ring.shape != self._ring.shape or ring.dtype != self._ring.dtype or not 0 <= oldest < self.size:
            raise ValueError(f"saved frames have shape {ring.shape}, dtype {ring.dtype} and oldest index {oldest}; "
                             f"expected {self._ring.shape}, {self._ring.dtype} and an index below {self.size}")
        self._ring[...] = ring
        self._oldest = oldest

    def step(self, action: Any) -> StepResult:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._ring[self._oldest] = observation
        self._oldest = (self._oldest + 1) % self.size
        stack = np.concatenate((self._ring[self._oldest:], self._ring[:self._oldest]))
        return stack, reward, terminated, truncated, info


def _import_ale() -> Any:
    try:
        import ale_py
    except ImportError:
        raise ConfigError(f"Atari environments need ale-py, which is not installed; {_INSTALL_HINT}") from None
    gym.register_envs(ale_py)
    return ale_py


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise ConfigError(
            f"Atari frame resizing needs opencv (cv2), which is not installed; {_INSTALL_HINT}"
        ) from None
    return cv2


def _normalized_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def atari_game_ids() -> dict[str, str]:
    """Bare game name (lower case, letters and digits only) → its ``ALE/<Game>-v5`` id."""
    _import_ale()
    games: dict[str, str] = {}
    for env_id in gym.registry:
        match = re.fullmatch(r"ALE/([A-Za-z0-9]+)-v5", env_id)
        if match:
            games[_normalized_name(match.group(1))] = env_id
    return games


def _is_registered_ale(env_id: str) -> bool:
    spec = gym.registry.get(env_id)
    return spec is not None and str(spec.entry_point) == _ALE_ENTRY_POINT


def is_atari_game_name(name: str) -> bool:
    """Whether ``name`` is a bare ALE game name (``Breakout``, ``pong``, ``ms_pacman``), not an
    id. False when ale-py is not installed (its game list is needed)."""
    if "/" in name or "-v" in name:
        return False
    try:
        _import_ale()
    except ConfigError:
        return False
    return _normalized_name(name) in atari_game_ids()


def is_atari_id(env_id: str) -> bool:
    """Whether ``env_id`` names an Atari game: an ALE id (``ALE/Breakout-v5``,
    ``BreakoutNoFrameskip-v4``, ``Breakout-v4``) or a bare game name (``Breakout``, ``pong``).

    Without ale-py only the unmistakable id forms (``ALE/…``, ``…NoFrameskip-v4``) are
    recognized, so that ``make_atari`` can then tell the user what to install.
    """
    try:
        import ale_py
    except ImportError:
        return bool(_ALE_ID_PATTERN.match(env_id))
    gym.register_envs(ale_py)
    return _is_registered_ale(env_id) or env_id.startswith("ALE/") or is_atari_game_name(env_id)


def resolve_atari_id(game: str) -> str:
    """The registered ALE id for ``game`` (an id is returned as is; a bare name maps to
    ``ALE/<Game>-v5``). Raises ConfigError, with close matches, for anything else."""
    _import_ale()
    if "/" in game or "-v" in game:
        if _is_registered_ale(game):
            return game
        candidates = [env_id for env_id in gym.registry if _is_registered_ale(env_id)]
        close = difflib.get_close_matches(game, candidates, n=3)
    else:
        games = atari_game_ids()
        key = _normalized_name(game)
        if key in games:
            return games[key]
        close = [games[name] for name in difflib.get_close_matches(key, list(games), n=3)]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown Atari game '{game}'.{hint} Use a game name like Breakout or an id like ALE/Breakout-v5")


class ScalePixels(gym.ObservationWrapper):
    """Frames as float32 in [0, 1]: the raw 0–255 values divided by 255, the usual input scaling
    of DQN-style agents. For agents run without observation normalization (``scale_pixels``);
    the paper's preprocessing leaves such frames at 0–255 (docs/atari.md)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=env.observation_space.shape, dtype=np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        return np.asarray(observation, dtype=np.float32) / np.float32(255.0)


def _check_frame_cap(env: gym.Env, noop_max: int, skip: int) -> None:
    """A game's reset sequence (up to ``noop_max`` no-op frames, then FIRE and action 2 for
    ``skip`` frames each) must fit under ALE's frame cap with room for one agent step; otherwise a
    new game could end before the learner sees it, and reset again without end."""
    cap = int(_ale(env).getInt("max_num_frames_per_episode"))
    least = noop_max + 3 * skip
    if 0 < cap < least:
        raise ConfigError(
            f"the Atari frame cap of {cap} frames is shorter than a game's start (up to {noop_max} no-op frames, "
            f"then FIRE and action 2 for {skip} frames each) and one agent step: set max_episode_steps to at "
            f"least {-(-least // skip)} (or env_kwargs.max_num_frames_per_episode to at least {least}), "
            "or lower noop_max")


def wrap_atari(
    env: gym.Env,
    gamma: float = 0.99,
    noop_max: int = 30,
    frame_stack: int = 4,
    obs_normalization: bool = True,
    reward_scaling: bool = True,
    skip: int = 4,
    pipeline: str = "auto",
    scale_pixels: bool = False,
) -> gym.Env:
    """Wrap a raw ALE env (``frameskip=1``, RGB frames) in the paper's preprocessing stack.

    Order (PAPER §4): record game stats → no-op reset → max-and-skip → episodic life → fire
    reset → resize 84×84 → grayscale → per-pixel obs normalization → stack → reward scaling.
    ``noop_max=0`` skips the no-op reset. Without ``obs_normalization`` frames are cast to
    float32 (values 0–255, not rescaled) so the network input dtype does not change.

    ``pipeline``: ``reference`` builds the chain of wrappers; ``fast`` replaces wrappers 1–6
    with :class:`AtariFrames` and the stacking with :class:`StackFrames` (same results, about
    2.5× less time per step besides the emulator's own); ``auto`` picks ``fast`` unless
    :func:`fast_pipeline_unavailable` names a reason (then ``fast`` is an error). Both keep
    ScaleReward and NormalizeObservation at the same places, so checkpoints move between them.
    ``scale_pixels`` (only without ``obs_normalization``): frames divided by 255, in [0, 1].
    """
    if frame_stack < 1:
        raise ConfigError(f"frame_stack must be at least 1, got {frame_stack}")
    if noop_max < 0:
        raise ConfigError(f"noop_max must be non-negative, got {noop_max}")
    if scale_pixels and obs_normalization:
        raise ConfigError("scale_pixels applies only without observation normalization (whose per-pixel "
                          "statistics make the scale irrelevant): set obs_normalization=false or remove scale_pixels")
    if pipeline not in PIPELINES:
        raise ConfigError(f"unknown Atari pipeline '{pipeline}'; choose one of {', '.join(PIPELINES)}")
    _check_frame_cap(env, noop_max, skip)
    reason = fast_pipeline_unavailable(env) if pipeline != "reference" else None
    if pipeline == "fast" and reason is not None:
        raise ConfigError(f"the fast Atari pipeline cannot run: {reason}; use pipeline='reference'")
    fast = pipeline != "reference" and reason is None
    if fast:
        env = AtariFrames(env, noop_max=noop_max, skip=skip)
    else:
        env = RecordGameStatistics(env)
        if noop_max > 0:
            env = NoopReset(env, noop_max=noop_max)
        env = MaxAndSkip(env, skip=skip)
        env = EpisodicLife(env)
        if FireReset.has_fire(env):
            env = FireReset(env)
        env = WarpFrame(env)
    # Per pixel: the normalizer's statistics have shape (84, 84), one update per frame.
    if obs_normalization:
        env = NormalizeObservation(env)
    else:
        env = ScalePixels(env) if scale_pixels else gym.wrappers.DtypeObservation(env, np.float32)
    # Stacking needs the float space NormalizeObservation/DtypeObservation declare (its buffer
    # takes the inner space's dtype); the result is channels first: (frame_stack, 84, 84).
    env = StackFrames(env, frame_stack) if fast else gym.wrappers.FrameStackObservation(env, frame_stack)
    if reward_scaling:
        env = ScaleReward(env, gamma=gamma)
    return env


def make_atari(
    game: str,
    gamma: float = 0.99,
    noop_max: int = 30,
    frame_stack: int = 4,
    obs_normalization: bool = True,
    reward_scaling: bool = True,
    max_episode_steps: int | None = None,
    pipeline: str = "auto",
    scale_pixels: bool = False,
    **make_kwargs: Any,
) -> gym.Env:
    """Make an Atari game with the paper's preprocessing (see ``wrap_atari``).

    ``game`` is an ALE id (``ALE/Breakout-v5``, ``BreakoutNoFrameskip-v4``) or a bare name
    (``Breakout``, ``pong``, ``ms_pacman``). Whatever the id, the raw env runs the paper's
    ``NoFrameskip-v4`` semantics: ``frameskip=1``, ``repeat_action_probability=0.0`` (no sticky
    actions), minimal action set; ``make_kwargs`` may override the last two, not the frame skip.
    ``max_episode_steps`` caps a whole GAME (not a life) at that many agent steps, through
    ALE's ``max_num_frames_per_episode`` (= 4 × steps, no-op and FIRE frames included); None
    keeps ALE's 108,000 frames (27,000 agent steps). ``pipeline`` and ``scale_pixels`` as in
    ``wrap_atari``.
    """
    env_id = resolve_atari_id(game)
    kwargs: dict[str, Any] = {"repeat_action_probability": 0.0, "full_action_space": False, **make_kwargs}
    if kwargs.setdefault("frameskip", 1) != 1:
        raise ConfigError(
            f"Atari frame skipping is done by the MaxAndSkip wrapper; remove frameskip={kwargs['frameskip']} "
            "from env_kwargs"
        )
    if kwargs.get("obs_type", "rgb") != "rgb":
        raise ConfigError(f"Atari preprocessing needs RGB frames; remove obs_type={kwargs['obs_type']!r}")
    skip = 4
    if max_episode_steps is not None:
        if "max_num_frames_per_episode" in kwargs:
            raise ConfigError("set either max_episode_steps or env_kwargs.max_num_frames_per_episode, not both")
        if max_episode_steps < 1:
            raise ConfigError(f"max_episode_steps must be positive, got {max_episode_steps}")
        kwargs["max_num_frames_per_episode"] = max_episode_steps * skip
    try:
        raw = gym.make(env_id, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"Atari environment '{env_id}' rejected env_kwargs {make_kwargs}: {exc}") from None
    return wrap_atari(raw, gamma=gamma, noop_max=noop_max, frame_stack=frame_stack,
                      obs_normalization=obs_normalization, reward_scaling=reward_scaling, skip=skip,
                      pipeline=pipeline, scale_pixels=scale_pixels)
