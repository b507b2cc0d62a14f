"""Typed run configuration: every hyperparameter and stabilizer switch, with its help text.

One flat dataclass keeps overrides short (``lr=0.5``, ``--layer-norm false``). Values are
resolved in this order, later winning: dataclass defaults (the paper's §5 values) → the
environment suite's defaults (network size, time limit, budget; see ``streamx.envs``), with the
algorithm's own ``config_defaults`` between the suite's general values and its values for that
algorithm → a YAML preset (``--config``) → command-line overrides. Every run saves the resolved
config.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamx.errors import ConfigError, unknown_choice
from streamx.registry import BASELINES, algorithm_names

__all__ = ["AGENT_FIELDS", "AVG_FIELDS", "BASELINES", "EXPLORATION_FIELDS", "OPTIMIZERS", "STREAM_X_FIELDS",
           "VALUES_BEFORE_FIELD", "Config", "algorithm_choices", "field_help", "load_yaml", "parse_value"]

OPTIMIZERS = ("obgd", "adaptive_obgd", "sgd")
LIFE_LOSS = ("continue", "reset")
ETT_CUMULANTS = ("paper", "same_row")


def _f(default: Any, help: str) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    """A complete, resolved description of one training run."""

    # --- what to run -----------------------------------------------------------------
    algo: str = _f("stream_ac", "Algorithm: stream_td | stream_q | stream_sarsa | stream_ac | avg, an installed "
                   "plugin's (docs/algorithms.md), or a batch baseline through Stable-Baselines3: "
                   "ppo | sac | dqn | ppo1 | sac1 | dqn1 (docs/baselines.md).")
    env: str = _f("CartPole-v1", "gymnasium environment id, e.g. CartPole-v1 or Hopper-v5.")
    seed: int = _f(0, "Seed of every random number generator (python, numpy, torch, env).")
    total_steps: int = _f(500_000, "Agent steps to train for.")
    label: str | None = _f(
        None, "Name of this run's method in sweeps and plots, e.g. classic_ac; None = the algorithm name.")

    # --- the stream-x hyperparameters (PAPER §5: one set for everything) -------------------
    lr: float = _f(1.0, "Step size α of the optimizer (ObGD bounds the effective step below it).")
    gamma: float = _f(0.99, "Discount factor γ.")
    lamda: float = _f(0.8, "Trace-decay λ of the eligibility traces, in [0, 1].")
    kappa_value: float = _f(2.0, "ObGD bounding factor κ of value / action-value networks.")
    kappa_policy: float = _f(3.0, "ObGD bounding factor κ of the policy network (stream_ac).")
    entropy_coef: float = _f(0.01, "Entropy coefficient τ of the actor (stream_ac).")
    epsilon_start: float = _f(1.0, "Initial ε of ε-greedy exploration (stream_q, stream_sarsa).")
    epsilon_end: float = _f(0.01, "Final ε of ε-greedy exploration.")
    exploration_fraction: float = _f(
        0.05, "Fraction of the budget over which ε decays linearly (used when exploration_steps is None).")
    exploration_steps: int | None = _f(
        None, "Steps over which ε decays linearly; None = exploration_fraction × total_steps. The suite "
        "presets set the paper's horizon (fraction × the paper's budget), so a shorter run follows the "
        "start of the paper's schedule instead of annealing faster.")
    hidden_sizes: list[int] = _f([128, 128], "Hidden layer widths of every MLP (classic control: 32 32).")

    # --- stabilizers: each a switch, so classic baselines and ablations are configs -----
    optimizer: str = _f("obgd", "Optimizer: obgd | adaptive_obgd | sgd (sgd = classic traced SGD, no bound).")
    beta2: float = _f(0.999, "Second-moment decay β₂ of adaptive_obgd.")
    adaptive_eps: float = _f(1e-8, "ε added to the second moment in adaptive_obgd.")
    sparse_init: bool = _f(True, "Sparse initialization (PAPER §1.3); false = PyTorch default init.")
    sparsity: float = _f(0.9, "Fraction of each unit's incoming weights zeroed by sparse init.")
    layer_norm: bool = _f(True, "Parameter-free LayerNorm before every hidden activation (§1.4).")
    obs_normalization: bool = _f(True, "Welford observation normalization (§1.5).")
    reward_scaling: bool = _f(True, "Reward scaling by the std of a discounted return trace (§1.6).")
    time_feature: bool = _f(True, "Append t/T − 0.5 to observations (§1.7).")
    bootstrap_on_truncation: bool = _f(
        False,
        "Bootstrap at time-limit truncation. Default false treats truncation as termination, "
        "as the paper does (the time feature makes the limit part of the state).",
    )

    policy_prob_clamp: bool = _f(
        True, "Discrete stream_ac: clamp action probabilities to [eps, 1 − eps] (float32 eps) before the log, "
        "as the paper's categorical does (a saturated action then has zero log-probability gradient); "
        "false = an unclamped log-softmax.")

    # --- AVG (algo avg; docs/avg.md): its own optimizer and stabilizers ------------------------
    avg_actor_lr: float = _f(0.0063, "avg: Adam step size of the actor.")
    avg_critic_lr: float = _f(0.0087, "avg: Adam step size of the critic.")
    avg_entropy_coef: float = _f(0.07, "avg: entropy coefficient α (fixed), in the TD target and the actor objective.")
    avg_beta1: float = _f(0.0, "avg: Adam's first-moment decay β₁ (0: no momentum).")
    avg_beta2: float = _f(0.999, "avg: Adam's second-moment decay β₂.")
    avg_penultimate_norm: bool = _f(
        True, "avg: divide the last hidden activation of actor and critic by its Euclidean norm.")
    avg_td_error_scaling: bool = _f(
        True, "avg: divide the critic's TD error by σ_δ, from running statistics of rewards, discounts and returns.")

    # --- environment ---------------------------------------------------------------------
    max_episode_steps: int | None = _f(
        None, "Episode time limit; None = gymnasium's registered limit (classic control defaults to 10000).")
    env_kwargs: dict[str, Any] = _f({}, "Extra keyword arguments for gymnasium.make.")
    life_loss: str = _f(
        "continue", "Atari: what a lost life does. continue (the paper's procedure): terminal for the learner "
        "(no bootstrap, traces cut) while the same game goes on from the next frame (the agent presses FIRE "
        "itself), the env resets only at game over, and the learner never sees truncation; reset: every lost "
        "life also resets the env and truncation ends the learner's episode (what SB3/CleanRL users expect).")
    ett_cumulant: str = _f(
        "paper", "ETT prediction task: which row's oil temperature a step returns. paper: the step into "
        "observation t returns the target of row t + 1 (the authors' pairing); same_row: the target of row t.")

    # --- batch baselines (algo ppo | sac | dqn | ppo1 | sac1 | dqn1) -----------------------
    sb3_kwargs: dict[str, Any] = _f(
        {}, "Stable-Baselines3 hyperparameters of a baseline run, over the zoo's for the env, e.g. "
        "'{learning_rate: 0.001, n_epochs: 1}'; config.json holds the resolved set. Ignored by stream algorithms "
        "(which in turn ignore the stream-x fields above).")

    # --- logging and execution -------------------------------------------------------------
    run_dir: str | None = _f(None, "Run directory; default runs/<label or algo>__<env>__<seed>__<timestamp>.")
    log_interval: int = _f(10_000, "Steps between rows of metrics.csv.")
    threads: int = _f(1, "torch threads per run (batch-1 work is fastest with 1).")
    fast_path: str = _f(
        "auto", "Fused kernels for the standard networks (MLP, MinAtar and Atari nets): "
        "auto (used when supported and numba is installed) | "
        "on (error when not supported) | off (generic autograd path). "
        "Same arithmetic; agrees with autograd to about 1e-5.")
    progress: bool = _f(True, "Show a live progress bar with steps/s and recent return.")
    tensorboard: bool = _f(False, "Also write TensorBoard event files (needs the tensorboard extra).")
    checkpoint_interval: int = _f(
        100_000, "Steps between checkpoints (0: only at the end and on SIGINT/SIGTERM/faults).")
    keep_checkpoints: int = _f(3, "How many of the newest checkpoints to keep.")
    wandb: bool = _f(False, "Also log metrics and episode returns to Weights & Biases (needs the wandb extra).")
    wandb_project: str = _f("streamx", "Weights & Biases project of the run (with wandb=true).")
    wandb_entity: str | None = _f(None, "Weights & Biases entity (user or team); None = your default.")
    wandb_group: str | None = _f(None, "Weights & Biases group, e.g. a sweep's name; None = no group.")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid value and how to fix it."""
        if self.algo not in BASELINES and self.algo not in algorithm_choices():
            raise ConfigError(unknown_choice("algorithm", self.algo, algorithm_choices()))
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(unknown_choice("optimizer", self.optimizer, OPTIMIZERS))
        if self.life_loss not in LIFE_LOSS:
            raise ConfigError(unknown_choice("life_loss setting", self.life_loss, LIFE_LOSS))
        if self.ett_cumulant not in ETT_CUMULANTS:
            raise ConfigError(unknown_choice("ett_cumulant setting", self.ett_cumulant, ETT_CUMULANTS))
        if self.fast_path not in ("auto", "on", "off"):
            raise ConfigError(unknown_choice("fast_path setting", self.fast_path, ("auto", "on", "off")))
        checks: list[tuple[bool, str]] = [
            (self.lr >= 0, f"lr={self.lr} must be >= 0 (the paper uses 1.0)"),
            (0 <= self.gamma <= 1, f"gamma={self.gamma} must lie in [0, 1] (the paper uses 0.99)"),
            (0 <= self.lamda <= 1, f"lamda={self.lamda} must lie in [0, 1] (the paper uses 0.8)"),
            (self.kappa_value > 0, f"kappa_value={self.kappa_value} must be > 0 (the paper uses 2.0)"),
            (self.kappa_policy > 0, f"kappa_policy={self.kappa_policy} must be > 0 (the paper uses 3.0)"),
            (self.entropy_coef >= 0, f"entropy_coef={self.entropy_coef} must be >= 0 (the paper uses 0.01)"),
            (0 <= self.epsilon_end <= 1 and 0 <= self.epsilon_start <= 1,
             f"epsilon_start={self.epsilon_start} and epsilon_end={self.epsilon_end} must lie in [0, 1]"),
            (0 < self.exploration_fraction <= 1,
             f"exploration_fraction={self.exploration_fraction} must lie in (0, 1]"),
            (self.exploration_steps is None or self.exploration_steps > 0,
             f"exploration_steps={self.exploration_steps} must be a positive number of steps or None"),
            (len(self.hidden_sizes) > 0 and all(isinstance(h, int) and h > 0 for h in self.hidden_sizes),
             f"hidden_sizes={self.hidden_sizes} must be a non-empty list of positive ints, e.g. 32,32"),
            (0 <= self.beta2 < 1, f"beta2={self.beta2} must lie in [0, 1)"),
            (self.adaptive_eps > 0, f"adaptive_eps={self.adaptive_eps} must be > 0"),
            (0 <= self.sparsity < 1, f"sparsity={self.sparsity} must lie in [0, 1) (the paper uses 0.9)"),
            (self.total_steps > 0, f"total_steps={self.total_steps} must be a positive number of steps"),
            (self.max_episode_steps is None or self.max_episode_steps > 0,
             f"max_episode_steps={self.max_episode_steps} must be positive or None"),
            (self.log_interval > 0, f"log_interval={self.log_interval} must be positive"),
            (self.threads > 0, f"threads={self.threads} must be positive"),
            (self.checkpoint_interval >= 0, f"checkpoint_interval={self.checkpoint_interval} must be >= 0"),
            (self.keep_checkpoints >= 1, f"keep_checkpoints={self.keep_checkpoints} must be >= 1"),
            (self.avg_actor_lr >= 0 and self.avg_critic_lr >= 0,
             f"avg_actor_lr={self.avg_actor_lr} and avg_critic_lr={self.avg_critic_lr} must be >= 0"),
            (self.avg_entropy_coef >= 0, f"avg_entropy_coef={self.avg_entropy_coef} must be >= 0"),
            (0 <= self.avg_beta1 < 1 and 0 <= self.avg_beta2 < 1,
             f"avg_beta1={self.avg_beta1} and avg_beta2={self.avg_beta2} must lie in [0, 1)"),
            (0 <= self.seed <= MAX_SEED, f"seed={self.seed} must lie in [0, {MAX_SEED}] (NumPy's seed range)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        for item in dataclasses.fields(self):  # inf passes the range checks above (lr=inf) but is no setting
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{item.name}={value} must be a finite number")

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> Config:
        """Build from a mapping, checking key names and value types (values may be strings,
        as from the command line)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in fields:
                close = difflib.get_close_matches(name, list(fields), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"unknown key '{key}' in {source}{hint}; `streamx train --help` lists every key")
            kwargs[name] = _coerce(name, value, _field_types()[name], source)
        return cls(**kwargs)

    @classmethod
    def from_saved(cls, values: Mapping[str, Any], source: str = "config") -> Config:
        """Build from a run's saved config.json. A field the file lacks was added to streamx after
        the run was made: it takes the value that reproduces what the run computed then
        (:data:`VALUES_BEFORE_FIELD`), not today's default, so a resumed run keeps its behaviour."""
        missing = {k: v for k, v in VALUES_BEFORE_FIELD.items() if k not in values}
        return cls.from_dict({**values, **missing}, source=source)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Config:
        return Config.from_dict({**self.to_dict(), **changes})


MAX_SEED = 2**32 - 1
"""The largest seed every generator a run seeds accepts (``np.random.seed`` takes 32 bits)."""


# Fields added after runs had been made, each with the value that reproduces what streamx computed
# before the field existed (a saved config without the field means that value).
VALUES_BEFORE_FIELD: dict[str, Any] = {
    "exploration_steps": None,
    "policy_prob_clamp": False,
    "life_loss": "reset",
    "ett_cumulant": "same_row",
}

EXPLORATION_FIELDS = ("epsilon_start", "epsilon_end", "exploration_fraction", "exploration_steps")
"""The ε-greedy schedule's fields (read by the action-value agents)."""
STREAM_X_FIELDS = ("lr", "gamma", "lamda", "kappa_value", "hidden_sizes", "optimizer", "beta2", "adaptive_eps",
                   "sparse_init", "sparsity", "layer_norm", "bootstrap_on_truncation", "fast_path")
"""The fields every stream-x agent reads (its network, initialization and optimizer)."""
AVG_FIELDS = ("avg_actor_lr", "avg_critic_lr", "avg_entropy_coef", "avg_beta1", "avg_beta2",
              "avg_penultimate_norm", "avg_td_error_scaling")
AGENT_FIELDS = frozenset((*STREAM_X_FIELDS, *EXPLORATION_FIELDS, "kappa_policy", "entropy_coef", "policy_prob_clamp",
                          *AVG_FIELDS))
"""The fields only an agent reads. Each algorithm's class lists those it uses (``config_fields``);
the others are not part of its runs' identity (:func:`streamx.identity.decisive_values`)."""
def field_help() -> list[tuple[str, str, Any]]:
    """(name, help, default) for every config field, in declaration order."""
    out = []
    for f in dataclasses.fields(Config):
        if f.default is not dataclasses.MISSING:
            default = f.default
        else:
            assert f.default_factory is not dataclasses.MISSING  # _f gives every field a default
            default = f.default_factory()
        out.append((f.name, f.metadata["help"], default))
    return out


def load_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML preset: a flat mapping of config keys (checked later by from_dict).

    ``base: other.yaml`` (relative to this file) inherits that preset's keys; this file's keys
    win. Presets may set ``env`` and ``algo`` too.
    """
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"config file {path} inherits from itself through 'base'; break the cycle")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}; check the path") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML ({first_line}); fix its syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of config keys, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"'base' in config file {path} must be a file name, got {base!r}")
    return {**load_yaml(path.parent / base, (*_seen, path.resolve())), **data}


def parse_value(text: str) -> Any:
    """Parse a command-line value with YAML rules (``0.5``, ``true``, ``[32, 32]``, ``none``);
    a bare comma list ``32,32`` is a list."""
    if "," in text and not text.strip().startswith(("[", "{")):
        return [parse_value(part) for part in text.split(",") if part.strip()]
    if text.strip().lower() in ("none", "null"):
        return None
    if not text.strip():
        return text  # an empty value is not None: it fails the type check with a clear message
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 leaves 1e-3 as a string
        except ValueError:
            return value
    return value


# --- helpers -----------------------------------------------------------------------------

def algorithm_choices() -> tuple[str, ...]:
    """Every algorithm name ``algo`` accepts: the registry's stream algorithms, then the baselines."""
    return algorithm_names() + BASELINES


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Config)


def _short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters (a whole object passed
    where a field's value belongs would otherwise fill the screen)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 1]}… ({type(value).__name__})"


def _coerce(name: str, value: Any, annotation: Any, source: str) -> Any:
    if isinstance(value, str) and annotation is not str:
        value = parse_value(value)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (annotation,) = [a for a in args if a is not type(None)]
        return _coerce(name, value, annotation, source)
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                list: "a list such as 32,32", dict: "a mapping"}
    bad = ConfigError(
        f"{name}={_short_repr(value)} in {source} has the wrong type: expected "
        f"{expected.get(origin or annotation, str(annotation))}"
    )
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or int(value) != value:
            raise bad
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin is list:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(name, v, args[0], source) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    raise bad  # pragma: no cover - every field type is handled above
