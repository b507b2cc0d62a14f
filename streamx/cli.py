"""Command line: ``streamx train <algo> --env <id> [options] [key=value ...]`` and ``streamx envs``.

Any config field can be overridden as ``key=value`` or ``--key value`` (dashes or
underscores); ``streamx train --help`` lists every field with its meaning and default.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Callable, Sequence
from typing import Any

from streamx.config import algorithm_choices, field_help
from streamx.errors import ConfigError, StreamxError

__all__ = ["main"]

_FIXED = {"env", "seed", "total_steps", "run_dir", "algo"}


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one ``streamx: error:`` line, no abbreviations."""

    def __init__(self, **kwargs: Any):
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see `{self.prog} --help`)")


def _train_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<24} {help_text} [default: {default}]" for name, help_text, default in field_help()
             if name not in _FIXED]
    parser = _Parser(
        prog="streamx train",
        description="Train one stream-x agent and write its run directory.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=("config overrides (key=value or --key value; a true/false one also as --key or --no-key, "
                "e.g. --no-progress):\n") + "\n".join(lines),
    )
    parser.add_argument("algo", nargs="?", help=f"one of: {', '.join(algorithm_choices())} (not with --resume)")
    parser.add_argument("--env", default=None,
                        help="environment id, e.g. CartPole-v1, Hopper-v5 (optional when the --config preset sets env)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    parser.add_argument("--steps", type=int, default=None, help="total agent steps (default: the suite's budget)")
    parser.add_argument("--run-dir", default=None,
                        help="output directory (default runs/<label or algo>__<env>__<seed>__<time>)")
    parser.add_argument("--config", default=None, help="YAML preset, e.g. configs/mujoco.yaml")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR",
                        help="continue an interrupted run from its newest checkpoint (no other options)")
    return parser


def _parse_overrides(tokens: Sequence[str]) -> dict[str, Any]:
    """``--key value``, ``--key=value`` and ``key=value`` tokens as {field: value}; a true/false
    field also as a flag: ``--tensorboard`` (true), ``--no-progress`` (false)."""
    import dataclasses

    from streamx.config import Config

    switches = {f.name for f in dataclasses.fields(Config) if f.type in (bool, "bool")}
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            key = token[2:]
            name = key.replace("-", "_")
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            if "=" in key:
                key, value = key.split("=", 1)
            elif name in switches and (following is None or following.startswith("--") or "=" in following):
                value = "true"
            elif name.startswith("no_") and name[3:] in switches:
                key, value = name[3:], "false"
            elif i + 1 < len(tokens):
                i += 1
                value = tokens[i]
            else:
                if name not in {f.name for f in dataclasses.fields(Config)}:
                    Config.from_dict({key: ""}, source="the overrides")  # an unknown key: its own message
                raise ConfigError(f"option {token} needs a value, e.g. {token} 0.5")
        elif "=" in token:
            key, value = token.split("=", 1)
        else:
            raise ConfigError(f"unexpected argument '{token}'; write overrides as key=value (see --help)")
        overrides[key.replace("-", "_")] = value
        i += 1
    return overrides


def _train(argv: Sequence[str]) -> int:
    from streamx.run import resolve_config, resume, train

    parser = _train_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = _parse_overrides(rest)
    if args.resume is not None:
        if args.algo or args.env or args.config or args.seed is not None or args.steps is not None or overrides:
            raise ConfigError("--resume continues a run exactly as configured; pass only --resume <run-dir>")
        result = resume(args.resume)
    else:
        if args.algo is None:
            raise ConfigError(f"name an algorithm ({', '.join(algorithm_choices())}) or pass --resume <run-dir>")
        for key, value in (("seed", args.seed), ("total_steps", args.steps), ("run_dir", args.run_dir)):
            if value is not None:
                overrides[key] = value
        config = resolve_config(args.algo, args.env, args.config, overrides)
        result = train(config)
    if result.status == "interrupted":
        print(f"stopped by signal {result.signal} at step {result.steps}; checkpoint written. "
              f"Continue with: streamx train --resume {result.run_dir}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(0)  # every file is written and closed; skip the slow interpreter teardown
    mean = sum(result.episode_returns[-10:]) / max(1, len(result.episode_returns[-10:]))
    print(f"finished {result.steps} steps, {len(result.episode_returns)} episodes; "
          f"mean return of the last 10 episodes: {mean:.1f}; results in {result.run_dir}")
    return 0


def _envs(argv: Sequence[str]) -> int:
    from streamx.envs import SUITES

    _Parser(prog="streamx envs", description="List environment suites.").parse_args(argv)
    for suite in SUITES.values():
        ids = ", ".join(suite.example_ids) or "any registered gymnasium id"
        if suite.extra is None:
            status = "installed"
        elif suite.installed:
            status = f"installed (extra '{suite.extra}')"
        else:
            status = f"not installed: pip install 'streamx-rl[{suite.extra}]'"
        print(f"{suite.name:<8} {status}\n         {suite.description}\n         e.g. {ids}")
    return 0


def _algorithms(argv: Sequence[str]) -> int:
    from streamx.agents.base import space_names
    from streamx.fast import fast_agent_class, numba_available
    from streamx.registry import BUILTIN, algorithm_class, algorithm_names

    _Parser(prog="streamx algorithms", description="List the stream algorithms: built-in, from installed "
            "plugins (entry points 'streamx.algorithms') and their properties.").parse_args(argv)
    for name in algorithm_names():
        try:
            cls = algorithm_class(name)
        except ConfigError as exc:  # a plugin that cannot be imported: say so and go on
            print(f"{name:<22} cannot be loaded: {exc}")
            continue
        source = "built-in" if name in BUILTIN else f"plugin {cls.__module__}.{cls.__qualname__}"
        if numba_available():
            path = "fast path" if fast_agent_class(cls, "mlp")[0] is not None else "autograd path"
        else:
            path = "autograd path (numba is not installed)"
        role = f"acts with {cls.acting_network}" if cls.acting_network else "predicts (no policy)"
        spaces = "any" if set(cls.action_spaces) >= {"discrete", "box", "none", "other"} else \
            space_names(cls.action_spaces)
        print(f"{name:<22} {source}; {spaces} actions; {role}; {path}")
    return 0


def _eval(argv: Sequence[str]) -> int:
    from streamx.evaluate import evaluate

    parser = _Parser(prog="streamx eval", description="Run the deterministic (or, with --epsilon, ε-greedy) "
                     "policy of a run's checkpoint with frozen normalizer statistics; writes eval.json into the run "
                     "directory.")
    parser.add_argument("run_dir")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--checkpoint", default=None, help="a checkpoint file (default: the newest)")
    parser.add_argument("--video", action="store_true", help="record videos into <run-dir>/videos (needs moviepy)")
    parser.add_argument("--epsilon", type=float, default=0.0,
                        help="take a uniformly random action with this probability (discrete actions; default 0: "
                             "the deterministic policy). Atari evaluations often use 0.05 or 0.001, so a greedy "
                             "policy that never presses FIRE after a lost life does not stall the game.")
    args = parser.parse_args(argv)
    result = evaluate(args.run_dir, args.episodes, args.checkpoint, args.video, epsilon=args.epsilon)
    print(f"{result['episodes']} episodes at step {result['checkpoint_step']}: mean return "
          f"{result['mean_return']:.1f} ± {result['std_return']:.1f}; written to {args.run_dir}/eval.json")
    return 0


def _export(argv: Sequence[str]) -> int:
    from streamx.evaluate import export_policy

    parser = _Parser(prog="streamx export", description="Export a run's policy (weights and normalizer "
                     "statistics) for use without the training machinery: streamx.evaluate.Policy.load(file).")
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=None, help="output file (default <run-dir>/policy.pt)")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint file (default: the newest)")
    args = parser.parse_args(argv)
    print(f"policy written to {export_policy(args.run_dir, args.out, args.checkpoint)}")
    return 0


def _delegate(module: str) -> Callable[[Sequence[str]], int]:
    """A command whose parser lives in its own module (``streamx.<module>.main(argv)``)."""

    def command(argv: Sequence[str]) -> int:
        import importlib

        return int(importlib.import_module(f"streamx.{module}").main(list(argv)))

    return command


COMMANDS = {"train": _train, "envs": _envs, "algorithms": _algorithms, "eval": _eval, "export": _export,
            "bench": _delegate("bench"), "sweep": _delegate("sweep"), "plot": _delegate("plot")}


def _stdout_closed() -> bool:
    """Whether nothing reads standard output any more (a pipe whose reader exited)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() on this platform, or no real stdout
        return False


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: streamx {train,eval,export,envs,algorithms,bench,sweep,plot} ...\n\n"
              "  train   train a stream-x agent:  streamx train stream_ac --env Hopper-v5\n"
              "          continue a stopped run:  streamx train --resume <run-dir>\n"
              "  eval    evaluate a run's policy: streamx eval <run-dir> --episodes 10\n"
              "  export  export a run's policy:   streamx export <run-dir> --out policy.pt\n"
              "  envs    list environment suites and example ids\n"
              "  algorithms  list the stream algorithms (built-in and installed plugins)\n"
              "  bench   measure agent steps/s: fast path, autograd, naive baseline, env alone\n"
              "  sweep   run an experiment's grid of runs:  streamx sweep experiments/ablations --budget smoke\n"
              "  plot    learning curves and the stream-barrier figure of finished runs\n", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        status = COMMANDS[argv[0]](argv[1:])
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, rather than at exit
        return status
    except StreamxError as exc:
        print(f"streamx: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # during start-up (a running loop checkpoints and stops instead)
        print("streamx: interrupted; nothing written is lost — a run stopped before its first checkpoint starts "
              "again with `streamx train --resume <run-dir>`", file=sys.stderr)
        return 130
    except OSError as exc:  # a file the command had to read or write (permissions, a full disk, …)
        if isinstance(exc, BrokenPipeError) and _stdout_closed():
            # the reader of stdout went away (`streamx sweep … --dry-run | head`): stop quietly, as `ls | head` does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
            return 141  # what a shell reports for a process ended by SIGPIPE
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"streamx: error: {exc.strerror or exc}{where}; check the path and its permissions", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
