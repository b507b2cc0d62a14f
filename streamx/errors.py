"""Exceptions with messages meant for people: each names the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["CheckpointError", "ConfigError", "EnvironmentFault", "InputError", "NonFiniteError", "RunLockedError",
           "StreamxError", "unknown_choice"]


class StreamxError(Exception):
    """Base class of every error streamx raises on purpose; the CLI prints it as one line."""


class ConfigError(StreamxError, ValueError):
    """A hyperparameter, config file, override, algorithm or environment choice is invalid."""


class EnvironmentFault(StreamxError, RuntimeError):
    """The environment produced something learning cannot use (NaN/inf observation or reward)."""


class CheckpointError(StreamxError, ValueError):
    """A checkpoint is missing, truncated, corrupted, unsafe, or belongs to another run."""


class NonFiniteError(StreamxError, FloatingPointError):
    """Learning produced a NaN/inf (TD error); the update was refused before it touched the weights."""


class InputError(StreamxError, ValueError):
    """Data handed to an agent or policy (observation, action, reward, episode flag) has the
    wrong shape, type or range, or holds NaN/inf; the call was refused before it changed anything.

    ``argument`` names the offending argument (``obs``, ``next_obs``, ``action``, ``reward``,
    ``terminated``, ``truncated``), so a caller can tell whose data it was."""

    def __init__(self, message: str, argument: str = ""):
        super().__init__(message)
        self.argument = argument


class RunLockedError(StreamxError, RuntimeError):
    """Another live process is writing the run directory (training or resuming it)."""


def unknown_choice(what: str, value: str, choices: Iterable[str]) -> str:
    """The one-line message for a name that is not among ``choices`` (with the closest one)."""
    choices = list(choices)
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {what} '{value}'{hint}; choose one of: {', '.join(choices)}"
