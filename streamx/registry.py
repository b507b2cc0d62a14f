"""The registry of stream algorithms: the one place that says which algorithms streamx can run.

Everything else asks it — the command line's choices, :class:`~streamx.config.Config`'s
validation and run identity, :func:`~streamx.agents.make_agent`, the fast path, ``streamx eval``
and ``streamx export`` — and reads what the agent class itself declares
(:class:`~streamx.agents.base.StreamAgent`: ``algo``, ``acting_network``, ``action_spaces``,
``config_fields``, ``config_defaults``; the fast path's ``fast_agents`` / ``fast_mixins``).

Three sources, in this order:

* the built-in algorithms (:data:`BUILTIN`), named by import path so that listing the names
  imports no torch (``streamx --help`` stays quick);
* installed packages, through the ``streamx.algorithms`` entry-point group, so that a separate
  package adds an algorithm without editing streamx::

      # the plugin's pyproject.toml
      [project.entry-points."streamx.algorithms"]
      stream_expected_sarsa = "my_package.expected_sarsa:ExpectedSARSA"

* :func:`register`, for a class defined in a running program (a notebook, a test).

A name is the value of the class's ``algo`` attribute; a plugin cannot take a built-in name.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import warnings
from typing import TYPE_CHECKING, Any

from streamx.errors import ConfigError, unknown_choice

if TYPE_CHECKING:
    from streamx.agents.base import StreamAgent

__all__ = ["BASELINES", "BUILTIN", "ENTRY_POINT_GROUP", "algorithm_class", "algorithm_names", "register",
           "unregister"]

ENTRY_POINT_GROUP = "streamx.algorithms"
"""The entry-point group through which installed packages add algorithms."""

BUILTIN: dict[str, str] = {
    "stream_td": "streamx.agents.td:StreamTD",
    "stream_q": "streamx.agents.q:StreamQ",
    "stream_sarsa": "streamx.agents.sarsa:StreamSARSA",
    "stream_ac": "streamx.agents.ac:StreamAC",
    "avg": "streamx.agents.avg:AVG",
}
"""The algorithms that come with streamx: name → ``module:Class``."""

BASELINES = ("ppo", "sac", "dqn", "ppo1", "sac1", "dqn1")
"""The batch baselines, run through Stable-Baselines3 (:mod:`streamx.baselines`; the ``sb3`` extra)
by their own runner rather than as agent classes."""

_registered: dict[str, type[StreamAgent]] = {}
_loaded: dict[str, type[StreamAgent]] = {}


@functools.cache
def _entry_points() -> dict[str, str]:
    """name → ``module:Class`` of the installed plugins (built-in names are refused)."""
    found: dict[str, str] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTIN:
            warnings.warn(f"the installed package entry point '{entry.name} = {entry.value}' "
                          f"({ENTRY_POINT_GROUP}) is ignored: '{entry.name}' is a built-in algorithm; "
                          "give the plugin's algorithm another name", stacklevel=2)
            continue
        found.setdefault(entry.name, entry.value)
    return found


def algorithm_names() -> tuple[str, ...]:
    """Every algorithm streamx can run here: built-in, installed plugins, then registered ones."""
    names = [*BUILTIN, *_entry_points(), *_registered]
    return tuple(dict.fromkeys(names))


def algorithm_class(name: str) -> type[StreamAgent]:
    """The agent class of algorithm ``name`` (imported on first use).

    Raises :class:`~streamx.errors.ConfigError` for an unknown name, a plugin that cannot be
    imported, or a class that is no :class:`~streamx.agents.base.StreamAgent` of that name."""
    if name in _registered:
        return _registered[name]
    if name in _loaded:
        return _loaded[name]
    target = BUILTIN.get(name) or _entry_points().get(name)
    if target is None:
        if name in BASELINES:
            raise ConfigError(f"'{name}' is a batch baseline run through Stable-Baselines3, not a stream "
                              "algorithm; train it with `streamx train`, it has no agent class")
        raise ConfigError(unknown_choice("algorithm", name, algorithm_names()))
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except Exception as exc:  # any failure of a plugin's import is reported the same way
        raise ConfigError(f"algorithm '{name}' is provided by '{target}', which cannot be loaded "
                          f"({type(exc).__name__}: {exc}); reinstall or fix the package that provides it") from None
    _check_class(name, cls, target)
    _loaded[name] = cls
    return cls


def register(cls: type[StreamAgent], name: str | None = None) -> type[StreamAgent]:
    """Add an algorithm defined in this program under ``name`` (default: its ``algo``).

    Usable as a class decorator. Registering the same class again is allowed; another class
    under a taken name is refused (built-in names cannot be taken)."""
    algo: str = name if name else getattr(cls, "algo", "")
    _check_class(algo, cls, cls.__qualname__)
    if algo in BUILTIN or algo in _entry_points():
        raise ConfigError(f"algorithm name '{algo}' is taken by {BUILTIN.get(algo) or _entry_points()[algo]}; "
                          "give the class another algo name")
    if _registered.get(algo, cls) is not cls:
        raise ConfigError(f"algorithm name '{algo}' is already registered for {_registered[algo].__qualname__}; "
                          "unregister it first or choose another algo name")
    _registered[algo] = cls
    return cls


def unregister(name: str) -> None:
    """Remove an algorithm added with :func:`register` (no effect on other names)."""
    _registered.pop(name, None)


_BASE_CLASS = "streamx.agents.base.StreamAgent"


def _check_class(name: str, cls: Any, where: str) -> None:
    # a subclass test by the base class's full name: the registry imports no agent (nor torch)
    if not (isinstance(cls, type) and any(f"{k.__module__}.{k.__qualname__}" == _BASE_CLASS for k in cls.__mro__)):
        raise ConfigError(f"algorithm '{name}' ({where}) is not a StreamAgent subclass; "
                          "an algorithm is a class derived from streamx.agents.base.StreamAgent")
    declared = getattr(cls, "algo", None)
    if not name or declared != name:
        raise ConfigError(f"algorithm '{name}' ({where}) declares algo = {declared!r}; "
                          "the class's algo attribute must equal its registered name")
