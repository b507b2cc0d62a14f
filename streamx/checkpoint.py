"""Checkpoints: a safe, checksummed file format and the capture/restore of environment state.

File format (version 1)::

    STREAMX-CHECKPOINT <format version> <sha256 of payload> <payload length>\\n
    <payload: torch.save of plain tensors, numbers, strings, lists and dicts>

Loading verifies the header, the length and the checksum, then reads the payload with
``torch.load(weights_only=True)``: a checkpoint can hold data only, never code. NumPy arrays
become tensors and NumPy RNG states become strings on the way in (:func:`to_plain`).

Environment state: wrapper statistics (every wrapper with ``state_dict``), the time-limit
counter, the episode-statistics accumulators, the environment's and the action space's RNGs,
and the simulator state where it can be read and written exactly — MuJoCo (the full
integration state: time, qpos, qvel, activations, warm start, controls), DM Control (the same
for the task's physics, dm_control's step counter and the task's episode attributes, for tasks
that leave their model as built), MinAtar (the game's attributes, sticky-action memory and RNG),
ALE (the emulator's serialized state, RNG included), classic control (the ``state`` vector
and bookkeeping attributes) and any environment with ``simulator_state()`` /
``load_simulator_state()`` (the ETT stream). Anything else is restored at an episode boundary instead;
:func:`env_state` reports which.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import tempfile
import weakref
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from numpy.typing import NDArray

from streamx.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "continues_mid_episode",
    "env_state",
    "global_rng_state",
    "learner_state_faults",
    "load_checkpoint",
    "remember_dm_control_model",
    "restore_env_state",
    "restore_global_rng_state",
    "rng_from_plain",
    "rng_to_plain",
    "save_checkpoint",
    "to_plain",
]

FORMAT_VERSION = 1
MAGIC = "STREAMX-CHECKPOINT"
STATISTICS_WRAPPERS = ("NormalizeObservation", "ScaleReward", "RecordEpisodeStatistics")
"""Wrappers whose state outlives an episode; the others are restored only mid-episode."""


# --- file format ----------------------------------------------------------------------------

def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(to_plain(payload), buffer)
    data = buffer.getvalue()
    header = f"{MAGIC} {FORMAT_VERSION} {hashlib.sha256(data).hexdigest()} {len(data)}\n".encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(header)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint; any problem is one CheckpointError naming it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    newline = raw.find(b"\n", 0, 256)
    fields = raw[:newline].decode("ascii", errors="replace").split(" ") if newline > 0 else []
    if len(fields) != 4 or fields[0] != MAGIC:
        raise CheckpointError(f"{path} is not a streamx checkpoint (bad header); "
                              "pass a file from <run-dir>/checkpoints")
    if fields[1] != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path} has checkpoint format version {fields[1]}, this streamx reads version {FORMAT_VERSION}; "
            "resume it with the streamx version that wrote it"
        )
    data = raw[newline + 1:]
    if not fields[3].isdigit() or len(data) != int(fields[3]):
        raise CheckpointError(f"{path} is truncated ({len(data)} of {fields[3]} payload bytes); "
                              "use an earlier checkpoint of the run")
    if hashlib.sha256(data).hexdigest() != fields[2]:
        raise CheckpointError(f"{path} is corrupted (checksum mismatch); use an earlier checkpoint of the run")
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path} holds data that is not plain tensors and containers "
                              f"({unsafe_load_reason(exc)}); refusing to load it — use a checkpoint "
                              "that streamx wrote") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} does not hold a streamx checkpoint payload; "
                              "use a file from <run-dir>/checkpoints")
    return payload


def unsafe_load_reason(exc: BaseException) -> str:
    """What ``torch.load(weights_only=True)`` objected to, without torch's advice to load the
    file with ``weights_only=False`` (which would run whatever code the file holds)."""
    text = str(exc)
    for marker in ("Unsupported global:", "Unsupported operand", "Unsupported class"):
        at = text.find(marker)
        if at >= 0:
            found = text[at:].splitlines()[0]
            return found.split(". ")[0].rstrip(".")[:160]
    first = text.splitlines()[0] if text else type(exc).__name__
    if "weights_only" in first or "Weights only load failed" in first:
        return "it needs code to load"
    return first[:160]


def learner_state_faults(payload: dict[str, Any], limit: int = 3) -> list[str]:
    """Where a checkpoint payload's learner state is not finite: the agent's parameters and
    optimizer state (eligibility traces, second moments) and the environment wrappers'
    statistics (observation normalizer, reward scaler). Empty for a good checkpoint. At most
    ``limit`` places are named."""
    faults: list[str] = []

    def visit(obj: Any, where: str) -> None:
        if len(faults) >= limit:
            return
        if isinstance(obj, torch.Tensor):
            if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
                faults.append(where)
        elif isinstance(obj, np.ndarray):
            if obj.dtype.kind == "f" and not bool(np.isfinite(obj).all()):
                faults.append(where)
        elif isinstance(obj, float | np.floating):
            if not np.isfinite(obj):
                faults.append(where)
        elif isinstance(obj, dict):
            for key, value in obj.items():
                visit(value, f"{where}.{key}")
        elif isinstance(obj, list | tuple):
            for index, value in enumerate(obj):
                visit(value, f"{where}[{index}]")

    visit(payload.get("agent", {}), "agent")
    visit((payload.get("env_state") or {}).get("wrappers", {}), "env_state.wrappers")
    return faults


def to_plain(obj: Any) -> Any:
    """Convert NumPy arrays/scalars to tensors/Python numbers, recursively, so that the result
    loads with ``torch.load(weights_only=True)``."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj, copy=True))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {key: to_plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(value) for value in obj)
    return obj


def _to_numpy(value: Any) -> Any:
    return value.numpy() if isinstance(value, torch.Tensor) else value


# --- RNG states -----------------------------------------------------------------------------

_LegacyState = tuple[str, NDArray[np.uint32], int, int, float]
"""A RandomState's state as ``RandomState.get_state(legacy=True)`` returns it for MT19937."""


def _legacy_tuple(state: dict[str, Any] | _LegacyState) -> _LegacyState:
    if isinstance(state, dict):  # numpy's form for a RandomState on another bit generator
        raise CheckpointError(f"cannot save the state of a RandomState on {state.get('bit_generator')}; "
                              "only MT19937 RandomStates are supported")
    return state


def rng_to_plain(generator: np.random.Generator | np.random.RandomState) -> dict[str, Any]:
    """A numpy Generator's (or legacy RandomState's) state, with big integers as strings."""
    if isinstance(generator, np.random.RandomState):  # e.g. DM Control through shimmy
        name, keys, pos, has_gauss, cached = _legacy_tuple(generator.get_state(legacy=True))
        return {"legacy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                           "has_gauss": int(has_gauss), "cached": float(cached)}}
    state = generator.bit_generator.state

    def encode(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, int) and not isinstance(value, bool):
            return {"int": str(value)}
        return value

    return encode(state)


def rng_from_plain(generator: np.random.Generator | np.random.RandomState, plain: dict[str, Any]) -> None:
    """Set ``generator`` to the state :func:`rng_to_plain` captured from a generator of the same kind."""
    if ("legacy" in plain) != isinstance(generator, np.random.RandomState):
        saved = "a legacy RandomState" if "legacy" in plain else "a Generator"
        raise CheckpointError(f"the checkpoint holds the state of {saved}, which cannot be restored into "
                              f"a {type(generator).__name__}; restore into an environment of the same kind")
    if isinstance(generator, np.random.RandomState):
        legacy = plain["legacy"]
        generator.set_state((legacy["name"], _to_numpy(legacy["keys"]).astype(np.uint32), legacy["pos"],
                             legacy["has_gauss"], legacy["cached"]))
        return

    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"int"}:
                return int(value["int"])
            return {k: decode(v) for k, v in value.items()}
        return _to_numpy(value)

    generator.bit_generator.state = decode(plain)


def global_rng_state() -> dict[str, Any]:
    version, mt_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = _legacy_tuple(np.random.get_state(legacy=True))
    return {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }


def restore_global_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])


# --- environment state ----------------------------------------------------------------------

def _wrapper_chain(env: gym.Env) -> list[Any]:
    chain = []
    current: Any = env
    while isinstance(current, gym.Wrapper):
        chain.append(current)
        current = current.env
    return chain


def _simulator_state(unwrapped: Any) -> dict[str, Any] | None:
    if hasattr(unwrapped, "simulator_state") and hasattr(unwrapped, "load_simulator_state"):
        return {"kind": "protocol", "state": unwrapped.simulator_state()}  # e.g. the ETT stream
    if hasattr(unwrapped, "model") and hasattr(unwrapped, "data") and type(unwrapped).__module__.startswith(
            "gymnasium.envs.mujoco"):
        return {"kind": "mujoco", "state": _integration_state(unwrapped.model, unwrapped.data)}
    if type(unwrapped).__module__.startswith("gymnasium.envs.classic_control"):
        public = [key for key in vars(unwrapped)
                  if not key.startswith("_") and key not in ("screen", "clock", "render_mode")]
        return {"kind": "classic", **_plain_attributes(unwrapped, public)}
    if type(unwrapped).__module__.startswith("ale_py") and hasattr(unwrapped, "ale"):
        try:
            emulator = unwrapped.ale.cloneState(include_rng=True).serialize()  # RAM, CPU, TIA, frame counters, RNG
        except (TypeError, AttributeError):  # an ale-py without these: restore at an episode boundary
            return None
        return {"kind": "ale", "state": np.frombuffer(emulator, dtype=np.uint8).copy()}
    if type(unwrapped).__module__.startswith("minatar.") and hasattr(unwrapped, "game"):
        return _minatar_state(unwrapped.game)
    physics = _dm_control_physics(unwrapped)
    if physics is not None and _DM_CONTROL_MODELS.get(unwrapped) == _model_digest(physics.model):
        control = unwrapped._env
        task_keys = [key for key in vars(control.task) if key != "_random"]  # the RNG is saved as np_random
        return {"kind": "dm_control", "state": _integration_state(physics.model.ptr, physics.data.ptr),
                "step_count": int(control._step_count), "reset_next_step": bool(control._reset_next_step),
                "task": _plain_attributes(control.task, task_keys)}
    return None


def _minatar_state(outer: Any) -> dict[str, Any] | None:
    """A MinAtar game: its attributes (positions, timers, entity lists, maps), the sticky-action
    memory and the RNG that the game and its sticky actions draw from."""
    game = outer.env
    shared = game.random is outer.random
    try:
        attributes = _encode_tree({key: value for key, value in vars(game).items() if key != "random"})
    except TypeError:  # a game holding something other than plain data: restore at an episode boundary
        return None
    return {"kind": "minatar", "game": attributes, "last_action": _encode_tree(outer.last_action),
            "rng": rng_to_plain(outer.random), "game_rng": None if shared else rng_to_plain(game.random)}


def _restore_minatar(outer: Any, saved: dict[str, Any]) -> None:
    game = outer.env
    for key, value in _decode_tree(saved["game"]).items():
        setattr(game, key, value)
    outer.last_action = _decode_tree(saved["last_action"])
    rng_from_plain(outer.random, saved["rng"])
    if saved["game_rng"] is None:
        game.random = outer.random
    else:
        rng_from_plain(game.random, saved["game_rng"])


def _encode_tree(value: Any) -> Any:
    """Plain data — numbers, strings, None, arrays, and lists, tuples and string-keyed dicts of
    them — in a form a checkpoint holds and :func:`_decode_tree` turns back into the same values
    of the same types (NumPy scalars and tuples included). TypeError for anything else."""
    if isinstance(value, np.generic):
        return {"numpy_scalar": np.asarray(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return value
    if isinstance(value, list):
        return [_encode_tree(item) for item in value]
    if isinstance(value, tuple):
        return {"tuple": [_encode_tree(item) for item in value]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"dict": {key: _encode_tree(item) for key, item in value.items()}}
    raise TypeError(f"cannot save a {type(value).__name__} in a checkpoint")


def _decode_tree(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list):
        return [_decode_tree(item) for item in value]
    if isinstance(value, dict):
        (tag, content), = value.items()
        if tag == "numpy_scalar":
            return _to_numpy(content)[()]
        if tag == "tuple":
            return tuple(_decode_tree(item) for item in content)
        return {key: _decode_tree(item) for key, item in content.items()}
    return value


def _integration_state(model: Any, data: Any) -> NDArray[np.float64]:
    """MuJoCo's full integration state: time, qpos, qvel, activations, warm start, controls, applied forces."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(model, spec), dtype=np.float64)
    mujoco.mj_getState(model, data, state, spec)
    return state


def _set_integration_state(model: Any, data: Any, saved: Any) -> None:
    import mujoco

    state = np.ascontiguousarray(_to_numpy(saved), dtype=np.float64)
    mujoco.mj_setState(model, data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(model, data)  # the derived quantities the next step reads


def _plain_attributes(obj: Any, keys: list[str]) -> dict[str, Any]:
    """Those of ``obj``'s attributes ``keys`` that are plain data (:func:`_encode_tree`: numbers,
    strings, None, arrays, and lists, tuples and dicts of them), encoded with their exact types.
    Anything else (spaces, specs, renderers) is not part of the simulation and is left out."""
    values = vars(obj)
    tree = {}
    for key in keys:
        try:
            tree[key] = _encode_tree(values[key])
        except TypeError:
            continue
    return {"tree": tree}


def _set_plain_attributes(obj: Any, saved: dict[str, Any]) -> None:
    if "tree" in saved:
        for key, value in saved["tree"].items():
            setattr(obj, key, _decode_tree(value))
        return
    # the earlier layout: numbers, arrays and tuples under "attributes", with the keys whose
    # values were tuples, None or NumPy scalars listed beside them
    for key, value in saved["attributes"].items():
        value = _to_numpy(value)
        if key in saved["tuple_keys"]:
            value = tuple(value)
        elif key in saved.get("scalar_keys", ()):
            value = value[()]
        setattr(obj, key, None if key in saved["none_keys"] else value)


# DM Control: the digest of each environment's MuJoCo model as it was built. A task that edits its
# model at reset (finger, fish, manipulator, reacher, swimmer, ...) cannot be continued from the
# integration state alone, so its checkpoints fall back to an episode boundary.
_DM_CONTROL_MODELS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _dm_control_physics(unwrapped: Any) -> Any:
    """The physics of a dm_control suite environment under shimmy's wrapper (None for anything else)."""
    if not type(unwrapped).__module__.startswith("shimmy.dm_control"):
        return None
    env_type = getattr(unwrapped, "env_type", None)
    return unwrapped._env.physics if getattr(env_type, "name", None) == "RL_CONTROL" else None


def _model_digest(model: Any) -> str:
    """A digest of a MuJoCo model's binary form (every size, array and option; dog's 73 MB in
    ≈ 0.2 s). ``model`` is dm_control's model wrapper or a ``mujoco.MjModel``."""
    import mujoco

    model = getattr(model, "ptr", model)
    binary = np.empty(mujoco.mj_sizeModel(model), dtype=np.uint8)
    mujoco.mj_saveModel(model, None, binary)
    return hashlib.sha256(binary.tobytes()).hexdigest()


def remember_dm_control_model(env: gym.Env) -> None:
    """Record a freshly built DM Control environment's model, so that its checkpoints can hold
    the simulator state while episodes leave the model as it was built (a no-op for other envs)."""
    physics = _dm_control_physics(env.unwrapped)
    if physics is not None:
        _DM_CONTROL_MODELS[env.unwrapped] = _model_digest(physics.model)


def _restore_simulator(unwrapped: Any, saved: dict[str, Any]) -> None:
    if saved["kind"] == "protocol":
        unwrapped.load_simulator_state(_numpy_tree(saved["state"]))
    elif saved["kind"] == "mujoco":
        _set_integration_state(unwrapped.model, unwrapped.data, saved["state"])
    elif saved["kind"] == "ale":
        import ale_py

        try:
            unwrapped.ale.restoreState(ale_py.ALEState(_to_numpy(saved["state"]).astype(np.uint8).tobytes()))
        except (RuntimeError, SystemError, ValueError, TypeError) as exc:
            raise CheckpointError(f"the checkpoint's emulator state cannot be restored ({exc}); "
                                  "use an earlier checkpoint of the run") from None
    elif saved["kind"] == "minatar":
        _restore_minatar(unwrapped.game, saved)
    elif saved["kind"] == "dm_control":
        physics = _dm_control_physics(unwrapped)
        if physics is None:
            raise CheckpointError("the checkpoint holds a DM Control simulator state, but the environment is "
                                  f"{type(unwrapped).__name__}; resume it into the environment it was saved from")
        _set_integration_state(physics.model.ptr, physics.data.ptr, saved["state"])
        control = unwrapped._env
        control._step_count = int(saved["step_count"])
        control._reset_next_step = bool(saved["reset_next_step"])
        _set_plain_attributes(control.task, saved["task"])
    else:
        _set_plain_attributes(unwrapped, saved)


def env_state(env: gym.Env) -> dict[str, Any]:
    """Everything needed to continue ``env`` exactly, or at an episode boundary.

    ``exact`` is True when the simulator state itself was captured (MuJoCo, DM Control, MinAtar,
    Atari, classic control, an environment with ``simulator_state()`` such as the ETT stream).
    """
    wrappers: dict[str, Any] = {}
    for index, wrapper in enumerate(_wrapper_chain(env)):
        key = f"{index}:{type(wrapper).__name__}"
        if hasattr(wrapper, "state_dict"):
            wrappers[key] = wrapper.state_dict()
        elif isinstance(wrapper, gym.wrappers.TimeLimit):
            wrappers[key] = {"elapsed_steps": wrapper._elapsed_steps}
        elif isinstance(wrapper, gym.wrappers.FrameStackObservation):
            wrappers[key] = {"frames": np.stack(list(wrapper.obs_queue))}
        elif isinstance(wrapper, gym.wrappers.RecordEpisodeStatistics):
            wrappers[key] = {"episode_returns": float(wrapper.episode_returns),
                             "episode_lengths": int(wrapper.episode_lengths),
                             "episode_count": int(wrapper.episode_count)}
    unwrapped = env.unwrapped
    simulator = _simulator_state(unwrapped)
    return {
        "wrappers": wrappers,
        "np_random": rng_to_plain(unwrapped.np_random),
        "action_space_rng": rng_to_plain(env.action_space.np_random),
        "simulator": simulator,
        "exact": simulator is not None,
    }


def continues_mid_episode(env: gym.Env, state: dict[str, Any]) -> bool:
    """Whether a checkpoint's environment state (:func:`env_state`) can continue its episode in
    ``env``: the simulator state was saved, and ``env`` has the same simulator and the same chain
    of wrappers (an Atari run saved with one pipeline and resumed with the other cannot continue
    its game, only its statistics)."""
    if not state.get("exact") or state.get("simulator") is None:
        return False
    current = env_state(env)
    return (bool(current["exact"]) and current["simulator"]["kind"] == state["simulator"]["kind"]
            and set(current["wrappers"]) == set(state["wrappers"]))


def restore_env_state(env: gym.Env, state: dict[str, Any], mid_episode: bool = True) -> None:
    """Restore what :func:`env_state` captured into a freshly built ``env`` of the same kind.

    With ``mid_episode`` the simulator state is written back too (the caller continues from
    the saved observation); otherwise only statistics and RNGs are restored and the caller
    starts a new episode.
    """
    chain = _wrapper_chain(env)
    for index, wrapper in enumerate(chain):
        saved = state["wrappers"].get(f"{index}:{type(wrapper).__name__}")
        if not mid_episode and type(wrapper).__name__ not in STATISTICS_WRAPPERS:
            saved = None  # episode bookkeeping (lives, time, partial returns) starts afresh
        if isinstance(wrapper, gym.wrappers.common.OrderEnforcing):
            wrapper._has_reset = True  # the restored episode is under way: step() is allowed
        if isinstance(wrapper, gym.wrappers.common.PassiveEnvChecker):
            # its one-time checks ran in the original session; they compare with a reset we skip
            wrapper.checked_reset = wrapper.checked_step = wrapper.checked_data_reuse = True
        if saved is None:
            continue
        if hasattr(wrapper, "load_state_dict"):
            try:
                wrapper.load_state_dict(_numpy_tree(saved))
            except (ValueError, TypeError, KeyError) as exc:
                raise CheckpointError(f"the checkpoint's state of {type(wrapper).__name__} does not fit this "
                                      f"environment ({exc}); resume the run with the settings it was saved "
                                      "with") from None
        elif isinstance(wrapper, gym.wrappers.TimeLimit):
            # gymnasium infers TimeLimit._elapsed_steps as None from its `= None` in __init__ (it is int | None)
            wrapper._elapsed_steps = saved["elapsed_steps"] if mid_episode else 0  # type: ignore[assignment]
        elif isinstance(wrapper, gym.wrappers.FrameStackObservation):
            frames = _to_numpy(saved["frames"])
            wrapper.obs_queue = deque((frame.copy() for frame in frames), maxlen=wrapper.stack_size)
        elif isinstance(wrapper, gym.wrappers.RecordEpisodeStatistics):
            wrapper.episode_returns = saved["episode_returns"] if mid_episode else 0.0
            wrapper.episode_lengths = saved["episode_lengths"] if mid_episode else 0
            wrapper.episode_count = saved["episode_count"]
    unwrapped = env.unwrapped
    rng_from_plain(unwrapped.np_random, state["np_random"])
    rng_from_plain(env.action_space.np_random, state["action_space_rng"])
    if mid_episode and state["simulator"] is not None:
        _restore_simulator(unwrapped, state["simulator"])


def _numpy_tree(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {key: _numpy_tree(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_numpy_tree(value) for value in obj]
    return obj
