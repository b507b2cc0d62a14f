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
    "EpisodicLife",
    "FireReset",
    "MaxAndSkip",
    "NoopReset",
    "RecordGameStatistics",
    "WarpFrame",
    "atari_game_ids",
    "is_atari_game_name",
    "is_atari_id",
    "make_atari",
    "resolve_atari_id",
    "wrap_atari",
]

_INSTALL_HINT = "install it with: pip install 'streamx[atari]'"
_ALE_ENTRY_POINT = "ale_py.env:AtariEnv"
# Ids that look like ALE ids even when ale-py is missing (so the factory can route them here
# and make_atari can say what to install): ALE/<Game>-v5, <Game>NoFrameskip-v4, <Game>-v0/v4.
_ALE_ID_PATTERN = re.compile(r"^(ALE/[A-Za-z0-9]+-v\d+|[A-Z][A-Za-z0-9]*NoFrameskip-v[04])$")

StepResult = tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]


def _ale(env: gym.Env) -> Any:
    """The ``ale_py.ALEInterface`` under ``env`` (gymnasium 1.x wrappers no longer forward it)."""
    return env.unwrapped.ale  # type: ignore[attr-defined]


def _action_meanings(env: gym.Env) -> list[str]:
    return list(env.unwrapped.get_action_meanings())  # type: ignore[attr-defined]


class RecordGameStatistics(gym.Wrapper):
    """Put the WHOLE game's statistics in ``info["episode"]`` when the game is really over.

    Place it directly on the raw ALE env (innermost): it sees every emulator frame, including
    no-op and FIRE frames, and every raw, unclipped, unscaled reward. ``info["episode"]`` has
    gymnasium's ``RecordEpisodeStatistics`` format (scalars):

    - ``"r"``: the sum of the raw rewards of the game (all lives);
    - ``"l"``: the game's length in **emulator frames** (≈ 4 × agent steps with frame skip 4;
      equal to ALE's ``info["episode_frame_number"]`` at the end of the game);
    - ``"t"``: wall-clock seconds since the game's reset.

    It appears only on the step where the raw env reports ``terminated`` (game over) or
    ``truncated`` (ALE's frame limit), never on a life loss. A loop that records an episode
    whenever ``"episode" in info`` therefore logs whole games.
    """

    def __init__(self, env: gym.Env):
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
        return {"game_return": self.game_return, "game_length": self.game_length}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.game_return = float(state["game_return"])
        self.game_length = int(state["game_length"])


class NoopReset(gym.Wrapper):
    """After every reset, take ``k ~ U{1, …, noop_max}`` NOOP actions (action 0).

    ``k`` is drawn from the raw env's ``np_random``, so ``reset(seed=…)`` makes it reproducible.
    Put it inside the frame skip: each NOOP is one emulator frame. In the full stack this reset
    runs only on a real (game-over) reset, because EpisodicLife continues the game otherwise.
    """

    def __init__(self, env: gym.Env, noop_max: int = 30):
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
        for _ in range(num_noops):
            observation, _, terminated, truncated, info = self.env.step(self.noop_action)
            if terminated or truncated:  # not seen in practice; start over, without reseeding
                observation, info = self.env.reset()
        return observation, info


class MaxAndSkip(gym.Wrapper):
    """Repeat the action for ``skip`` frames, sum the rewards, and return the elementwise
    maximum of the last two raw frames of this agent step (Atari sprites flicker between frames).

    Stops early on ``terminated``/``truncated``; if that happens on the step's first frame, the
    single frame is returned as is (no frame from the previous agent step is mixed in). With
    ``skip=1`` it returns the frame unchanged. Holds no state between steps.
    """

    def __init__(self, env: gym.Env, skip: int = 4):
        super().__init__(env)
        if skip < 1:
            raise ValueError(f"skip must be at least 1, got {skip}")
        self.skip = skip

    def step(self, action: Any) -> StepResult:
        total_reward = 0.0
        previous_frame = None
        frame, terminated, truncated, info = None, False, False, {}
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

    def __init__(self, env: gym.Env):
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
                observation, info = self.env.reset(**kwargs)
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

    def __init__(self, env: gym.Env):
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
        for action in self.start_actions:
            observation, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:  # not seen in practice; continue without reseeding
                observation, info = self.env.reset()
        return observation, info


class WarpFrame(gym.ObservationWrapper):
    """RGB frame → uint8 (84, 84): first resize with ``cv2.INTER_AREA``, then grayscale.

    The order follows PAPER §4 (resize → grayscale). gymnasium's AtariPreprocessing and the
    common DQN wrappers grayscale first; the outputs differ by rounding (at most a few levels).
    A frame that is already grayscale (H, W) is only resized.
    """

    def __init__(self, env: gym.Env, width: int = 84, height: int = 84):
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


def wrap_atari(
    env: gym.Env,
    gamma: float = 0.99,
    noop_max: int = 30,
    frame_stack: int = 4,
    obs_normalization: bool = True,
    reward_scaling: bool = True,
    skip: int = 4,
) -> gym.Env:
    """Wrap a raw ALE env (``frameskip=1``, RGB frames) in the paper's preprocessing stack.

    Order (PAPER §4): record game stats → no-op reset → max-and-skip → episodic life → fire
    reset → resize 84×84 → grayscale → per-pixel obs normalization → stack → reward scaling.
    ``noop_max=0`` skips the no-op reset. Without ``obs_normalization`` frames are cast to
    float32 (values 0–255, not rescaled) so the network input dtype does not change.
    """
    if frame_stack < 1:
        raise ConfigError(f"frame_stack must be at least 1, got {frame_stack}")
    if noop_max < 0:
        raise ConfigError(f"noop_max must be non-negative, got {noop_max}")
    env = RecordGameStatistics(env)
    if noop_max > 0:
        env = NoopReset(env, noop_max=noop_max)
    env = MaxAndSkip(env, skip=skip)
    env = EpisodicLife(env)
    if FireReset.has_fire(env):
        env = FireReset(env)
    env = WarpFrame(env)
    # Per pixel: the normalizer's statistics have shape (84, 84), one update per frame.
    env = NormalizeObservation(env) if obs_normalization else gym.wrappers.DtypeObservation(env, np.float32)
    # Stacking needs the float space NormalizeObservation/DtypeObservation declare (its buffer
    # takes the inner space's dtype); the result is channels first: (frame_stack, 84, 84).
    env = gym.wrappers.FrameStackObservation(env, frame_stack)
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
    **make_kwargs: Any,
) -> gym.Env:
    """Make an Atari game with the paper's preprocessing (see ``wrap_atari``).

    ``game`` is an ALE id (``ALE/Breakout-v5``, ``BreakoutNoFrameskip-v4``) or a bare name
    (``Breakout``, ``pong``, ``ms_pacman``). Whatever the id, the raw env runs the paper's
    ``NoFrameskip-v4`` semantics: ``frameskip=1``, ``repeat_action_probability=0.0`` (no sticky
    actions), minimal action set; ``make_kwargs`` may override the last two, not the frame skip.
    ``max_episode_steps`` caps a whole GAME (not a life) at that many agent steps, through
    ALE's ``max_num_frames_per_episode`` (= 4 × steps, no-op and FIRE frames included); None
    keeps ALE's 108,000 frames (27,000 agent steps).
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
                      obs_normalization=obs_normalization, reward_scaling=reward_scaling, skip=skip)
