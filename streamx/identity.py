"""A run's identity: the values of its config that decide its results.

A sweep names each run's directory by a hash of these values (:func:`streamx.sweep.config_hash`),
and a resume refuses a checkpoint made with other ones, so a run made under another default is
never skipped or continued as if it were today's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamx.config import AGENT_FIELDS, VALUES_BEFORE_FIELD
from streamx.envs import suite_of
from streamx.errors import ConfigError
from streamx.registry import BASELINES, algorithm_class

__all__ = ["NOT_DECISIVE", "decisive_values"]

# Fields that cannot change what a run computes (where it writes, how it reports, how often it
# checkpoints): left out of a run's identity.
NOT_DECISIVE = ("run_dir", "progress", "tensorboard", "checkpoint_interval", "keep_checkpoints", "log_interval",
                "threads", "wandb", "wandb_project", "wandb_entity", "wandb_group")
_STREAM_ONLY = (*sorted(AGENT_FIELDS), "obs_normalization", "reward_scaling", "time_feature")
# classic-control ids with a continuous action space (every MuJoCo and DM Control task has one)
_CONTINUOUS_CLASSIC = ("Pendulum-v1", "MountainCarContinuous-v0", "LunarLanderContinuous-v3")


def decisive_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a resolved config that decide a run's results: every field, the defaults
    included, except those that cannot change the results (:data:`NOT_DECISIVE`) and those the
    run's algorithm or environment never reads (e.g. ε for stream_ac, ``life_loss`` outside Atari).
    Missing fields take :data:`VALUES_BEFORE_FIELD`. A sweep names a run's directory by a hash of
    these values, so changing any default that a run uses gives it a new directory.
    """
    values = {**VALUES_BEFORE_FIELD, **config}
    algo, env = values.get("algo"), str(values.get("env"))
    try:
        suite = suite_of(env)
    except Exception:  # an env whose suite is not installed here: keep every field
        suite = None
    dropped: set[str] = set(NOT_DECISIVE)
    if algo in BASELINES:
        dropped.update(_STREAM_ONLY, ("life_loss", "ett_cumulant"))
    else:
        dropped.add("sb3_kwargs")
        used = _algorithm_fields(str(algo))
        if used is not None:  # an algorithm that cannot be loaded here keeps every field
            dropped.update(AGENT_FIELDS - used)
        if suite in ("mujoco", "dmc") or env in _CONTINUOUS_CLASSIC:
            dropped.add("policy_prob_clamp")
    if suite is not None and suite != "atari":
        dropped.add("life_loss")
    if suite is not None and suite != "ett":
        dropped.add("ett_cumulant")
    return {k: v for k, v in values.items() if k not in dropped}


def _algorithm_fields(algo: str) -> frozenset[str] | None:
    """The config fields the agent class of ``algo`` reads, or None when it cannot be loaded."""
    try:
        return frozenset(algorithm_class(algo).config_fields)
    except ConfigError:
        return None
