"""``streamx sweep``: expand an experiment file into runs and execute them, resumably.

An experiment file (``experiments/<name>.yaml``) declares methods × environments × seeds and
named budgets::

    name: stream_barrier_mujoco
    envs: [Hopper-v5, Walker2d-v5]
    methods:
      stream_ac:  {algo: stream_ac, config: configs/mujoco.yaml}
      classic_ac: {algo: stream_ac, config: configs/classic/classic_ac.yaml}
      sac1:       {algo: sac1}
    budgets:
      smoke:  {total_steps: 2000, seeds: 2, window: 500, envs: [Hopper-v5]}
      laptop: {total_steps: 300000, seeds: 3}
      full:   {total_steps: 2000000, seeds: 10}

Each run's config is resolved exactly as ``streamx train`` would (suite defaults → the method's
preset → experiment, method and budget overrides → seed, steps and ``label`` = the method name)
and runs in ``<out>/<hash>``, where the hash is taken over that resolved config. A run whose
``summary.json`` says it finished (or diverged) is skipped, an interrupted run (stream-x or SB3
baseline) continues from its newest checkpoint, and anything else starts afresh — so a killed
sweep resumes where it stopped when run again. A run made with other decisive settings, or on a
task defined by other package versions (its ``versions.json``, :mod:`streamx.provenance`), is
neither skipped nor continued: it is reported, and left as it is. ``<out>/sweep.json`` lists every run with its
method, env and seed for ``streamx plot``.

Backends: ``local`` (a process pool, one torch thread per run; needs nothing), ``slurm``
(job arrays through submitit, several runs packed per array task) and ``ray`` (tasks on a Ray
cluster). All three call the same :func:`execute_run` on each run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from streamx.errors import ConfigError, RunLockedError, StreamxError
from streamx.outputs import atomic_write_text
from streamx.provenance import VERSIONS_FILE, task_mismatch
from streamx.rundir import StopSignals, usable_cpus
from streamx.runlock import holder

__all__ = ["Experiment", "RunSpec", "execute_run", "expand", "load_experiment", "main", "run_sweep"]

BACKENDS = ("local", "slurm", "ray")
_EXPERIMENT_KEYS = {"name", "description", "envs", "methods", "budgets", "overrides", "window"}
_METHOD_KEYS = {"algo", "config", "overrides", "envs"}
_BUDGET_KEYS = {"total_steps", "seeds", "window", "envs", "methods", "overrides", "method_overrides"}


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    data: dict[str, Any]

    @property
    def budgets(self) -> list[str]:
        return list(self.data["budgets"])

    def default_out(self, budget: str) -> Path:
        return Path("runs") / "sweeps" / self.name / budget


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its resolved config (a plain dict) and its directory."""

    method: str
    env: str
    seed: int
    config: dict[str, Any]
    run_dir: str

    @property
    def key(self) -> str:
        return Path(self.run_dir).name


def _find_experiment(ref: str | Path) -> Path:
    path = Path(ref)
    candidates = [path, path.with_suffix(".yaml"), Path("experiments") / path.with_suffix(".yaml").name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"experiment '{ref}' not found (tried {', '.join(map(str, candidates))}); "
                      "pass a file like experiments/stream_barrier_mujoco.yaml")


def load_experiment(ref: str | Path) -> Experiment:
    """Read and check an experiment file (a path, with or without .yaml, or a name in ./experiments)."""
    path = _find_experiment(ref)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"experiment file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"experiment file {path} must be a mapping with envs, methods and budgets")
    _check_keys(data, _EXPERIMENT_KEYS, f"experiment file {path}")
    for required in ("envs", "methods", "budgets"):
        if not data.get(required):
            raise ConfigError(f"experiment file {path} needs a non-empty '{required}'")
    if not isinstance(data["methods"], dict) or not isinstance(data["budgets"], dict):
        raise ConfigError(f"experiment file {path}: 'methods' and 'budgets' must be mappings of name → settings")
    for name, method in data["methods"].items():
        if not isinstance(method, dict) or "algo" not in method:
            raise ConfigError(f"experiment file {path}: method '{name}' needs an 'algo', e.g. {{algo: stream_ac}}")
        _check_keys(method, _METHOD_KEYS, f"experiment file {path}, method '{name}'")
    for name, budget in data["budgets"].items():
        if not isinstance(budget, dict):
            raise ConfigError(f"experiment file {path}: budget '{name}' must be a mapping, e.g. {{total_steps: 1000}}")
        _check_keys(budget, _BUDGET_KEYS, f"experiment file {path}, budget '{name}'")
        try:
            _seeds(budget.get("seeds", 1))
        except ConfigError as exc:
            raise ConfigError(f"experiment file {path}, budget '{name}': {exc}") from None
        for key in ("envs", "methods"):
            unknown = set(budget.get(key) or ()) - set(data[key])
            if unknown:
                raise ConfigError(f"experiment file {path}: budget '{name}' lists {key} {sorted(unknown)} "
                                  f"that the experiment does not define")
    return Experiment(str(data.get("name") or path.stem), path, data)


def _check_keys(mapping: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(mapping) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _seeds(value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    if (isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                   for v in value)):
        return value
    raise ConfigError(f"seeds={value!r} must be a count of at least 1 (3 → seeds 0, 1, 2) or a non-empty list "
                      "of seeds >= 0")


def _preset_path(experiment: Experiment, preset: str) -> Path:
    """Presets are relative to the experiment file's folder or its parent (the repository root)."""
    path = Path(preset)
    if path.is_absolute():
        return path
    for base in (experiment.path.parent, experiment.path.parent.parent, Path.cwd()):
        if (base / path).is_file():
            return base / path
    raise ConfigError(f"experiment {experiment.path}: preset '{preset}' not found next to the experiment "
                      "file or in the repository root")


def config_hash(config: Mapping[str, Any]) -> str:
    """A short, stable hash of the values that decide a run's results
    (:func:`streamx.identity.decisive_values`: every field the run uses, defaults included).

    A run made under an earlier default therefore never answers for a run of today's default: it
    has another directory. Fields that cannot change the results (run_dir, logging, checkpoint
    interval, threads) are left out, so toggling them never turns a finished run into a new one.
    """
    from streamx.identity import decisive_values
    from streamx.registry import BASELINES

    if config.get("algo") in BASELINES:  # the zoo's hyperparameters decide a baseline's results too
        from streamx.baselines import baseline_hyperparameters, numeric_values

        zoo = baseline_hyperparameters(config["algo"], config["env"])
        config = {**config, "sb3_kwargs": {**zoo, **numeric_values(dict(config.get("sb3_kwargs") or {}))}}
    kept = decisive_values(config)
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def expand(experiment: Experiment, budget: str, out: str | Path | None = None,
           only_methods: Sequence[str] | None = None, only_envs: Sequence[str] | None = None,
           only_seeds: Sequence[int] | None = None) -> list[RunSpec]:
    """Every run of ``experiment`` at ``budget``, each with its resolved config and directory
    (optionally only those of some methods / environments / seeds)."""
    from streamx.run import resolve_config

    if budget not in experiment.data["budgets"]:
        raise ConfigError(f"experiment {experiment.name} has no budget '{budget}'; "
                          f"choose one of: {', '.join(experiment.budgets)}")
    spec = experiment.data["budgets"][budget]
    out = Path(out) if out is not None else experiment.default_out(budget)
    envs = spec.get("envs") or experiment.data["envs"]
    methods = spec.get("methods") or list(experiment.data["methods"])
    seeds = _seeds(spec.get("seeds", 1))
    runs = []
    for method_name in methods:
        method = experiment.data["methods"][method_name]
        preset = _preset_path(experiment, method["config"]) if method.get("config") else None
        for env in envs:
            if method.get("envs") and env not in method["envs"]:
                continue
            for seed in seeds:
                overrides = {
                    **(experiment.data.get("overrides") or {}),
                    **(method.get("overrides") or {}),
                    **(spec.get("overrides") or {}),
                    **((spec.get("method_overrides") or {}).get(method_name) or {}),
                    "seed": seed, "label": method_name, "progress": False,
                }
                if "total_steps" in spec:
                    overrides["total_steps"] = spec["total_steps"]
                try:
                    config = resolve_config(method["algo"], env, preset, overrides).to_dict()
                except StreamxError as exc:
                    raise ConfigError(f"experiment {experiment.name}, method {method_name}, env {env}: {exc}") from None
                run_dir = out / config_hash(config)
                config["run_dir"] = str(run_dir)
                runs.append(RunSpec(method_name, env, seed, config, str(run_dir)))
    return _select(experiment, budget, runs, only_methods, only_envs, only_seeds)


def _select(experiment: Experiment, budget: str, runs: list[RunSpec], only_methods: Sequence[str] | None,
            only_envs: Sequence[str] | None, only_seeds: Sequence[int] | None = None) -> list[RunSpec]:
    """The runs of the given methods / environments / seeds (all when None); a name or seed the
    budget does not have is an error."""
    choices: tuple[tuple[Sequence[str | int] | None, list[str | int], str], ...] = (
        (only_methods, [r.method for r in runs], "methods"), (only_envs, [r.env for r in runs], "envs"),
        (only_seeds, [r.seed for r in runs], "seeds"))
    for chosen, available, what in choices:
        unknown = [c for c in dict.fromkeys(chosen or ()) if c not in available]
        if unknown:
            raise ConfigError(f"experiment {experiment.name} [{budget}] has no {what} {unknown}; "
                              f"it has: {', '.join(str(a) for a in dict.fromkeys(available))}")
    return [r for r in runs if (not only_methods or r.method in only_methods)
            and (not only_envs or r.env in only_envs) and (not only_seeds or r.seed in only_seeds)]


def _window(experiment: Experiment, budget: str, runs: Sequence[RunSpec]) -> int:
    spec = experiment.data["budgets"][budget]
    if "window" in spec:
        return int(spec["window"])
    if "window" in experiment.data:
        return int(experiment.data["window"])
    steps = max((r.config["total_steps"] for r in runs), default=0)
    return min(50_000, max(1, steps // 10))


def _last_metrics_row(run_dir: Path) -> dict[str, str] | None:
    """The header and last row of a run's ``metrics.csv`` as a dict (read from the file's end);
    None without a data row."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(run_dir / "metrics.csv", "rb") as handle:
            header = handle.readline().decode("utf-8", "replace").strip().split(",")
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4096))
            last = handle.read().decode("utf-8", "replace").rstrip("\n").rsplit("\n", 1)[-1].split(",")
        if len(last) == len(header) and last != header:
            return dict(zip(header, last))
    return None


def _summary(run_dir: Path) -> dict[str, Any]:
    """A run's ``summary.json`` (written when it stops); {} without a readable one."""
    with contextlib.suppress(OSError, ValueError):
        record = json.loads((run_dir / "summary.json").read_text())
        if isinstance(record, dict):
            return record
    return {}


def run_status(run_dir: str | Path) -> str:
    """finished | diverged | interrupted | incomplete | new, read from the run directory."""
    run_dir = Path(run_dir)
    status = _summary(run_dir).get("status")
    if status in ("finished", "stopped_early"):
        return "finished"
    if status == "diverged":  # a deterministic outcome (the learner's weights blew up): final
        return "diverged"
    if status == "interrupted":
        return "interrupted"
    return "incomplete" if run_dir.exists() else "new"


def run_progress(run_dir: str | Path) -> int | None:
    """The agent step a run has reached: the newer of its ``summary.json`` (written when it
    stopped) and the last row of its ``metrics.csv`` (written while it runs); None before either."""
    run_dir = Path(run_dir)
    reached: list[int] = []
    with contextlib.suppress(ValueError, TypeError):
        reached.append(int(_summary(run_dir).get("steps")))  # type: ignore[arg-type]
    row = _last_metrics_row(run_dir)
    with contextlib.suppress(ValueError, TypeError, KeyError):
        reached.append(int(row["step"]))  # type: ignore[index]
    return max(reached) if reached else None


def run_rate(run_dir: str | Path, running: bool) -> float | None:
    """Agent steps/s to expect of a run that goes on: while it runs, its last logged interval's
    (``metrics.csv``); once stopped, its whole run's (``summary.json``); None when unknown."""
    run_dir = Path(run_dir)
    rate: Any = None
    if running:
        rate = (_last_metrics_row(run_dir) or {}).get("steps_per_second")
    if rate is None:
        rate = _summary(run_dir).get("steps_per_second")
    with contextlib.suppress(ValueError, TypeError):
        value = float(rate)
        if math.isfinite(value) and value > 0:
            return value
    return None


def _time_text(seconds: float) -> str:
    """45 s, 83 min, 4.4 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _listing_line(spec: RunSpec, widths: tuple[int, int] = (16, 28)) -> tuple[str, str]:
    """One ``--dry-run`` row, and the status it counts under (``running`` when a live process
    holds the run's lock). An unfinished run shows the step it reached and, where its rate is
    known (:func:`run_rate`), that rate and the time its remaining steps take at it. ``widths``:
    the method and env columns' (the listing's longest names, so its columns line up)."""
    status = "running" if holder(spec.run_dir) is not None else run_status(spec.run_dir)
    total = int(spec.config["total_steps"])
    reached = run_progress(spec.run_dir) if status != "new" else None
    if reached is None or status == "finished":
        steps = f"{total:,} steps"
    else:
        steps = f"{reached:,} of {total:,} steps"
        rate = run_rate(spec.run_dir, status == "running") if status != "diverged" else None
        if rate is not None and reached < total:
            shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"
            steps += f" ({shown} steps/s: ≈ {_time_text((total - reached) / rate)} to go)"
    method, env = widths
    return (f"{spec.key}  {status:<11} {spec.method:<{method}} {spec.env:<{env}} seed {spec.seed}  {steps}", status)


def _settings_mismatch(run_dir: Path, config: Mapping[str, Any]) -> str | None:
    """Why the run already in ``run_dir`` cannot stand for ``config`` (None when it can): a run
    made with other decisive values, or on a task defined by other package versions
    (:mod:`streamx.provenance`), is never skipped or resumed as if it were this one."""
    versions = task_mismatch(run_dir)
    if versions is not None:
        return versions + " (sweep into another --out)"
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None  # nothing usable was written yet: the run starts afresh
    if not isinstance(saved, dict) or config_hash(saved) == config_hash(config):
        return None
    from streamx.identity import decisive_values

    ours, theirs = decisive_values(config), decisive_values(saved)
    differing = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k) and k != "sb3_kwargs")
    return (f"{run_dir} holds a run made with other settings ({', '.join(differing) or 'sb3_kwargs'} differ); "
            "it is neither skipped nor resumed: move it away, or sweep into another --out")


def execute_run(spec: RunSpec | Mapping[str, Any]) -> dict[str, Any]:
    """Run (or continue, or skip) one run; return {"run_dir", "status", "error"}.

    Executed by every backend in the worker process. Never raises for a failed run: the error
    is returned (and is in the run's summary.json), so one bad run does not stop the sweep.
    """
    from streamx.config import Config
    from streamx.run import checkpoint_paths, resume, train
    from streamx.runlock import run_lock

    if isinstance(spec, Mapping):
        spec = RunSpec(**spec)
    run_dir = Path(spec.run_dir)
    mismatch = _settings_mismatch(run_dir, spec.config)
    if mismatch is not None:
        return {"run_dir": str(run_dir), "status": "failed", "error": mismatch}
    if run_status(run_dir) in ("finished", "diverged"):
        return {"run_dir": str(run_dir), "status": "skipped", "error": None}
    try:
        # Held from the decision to the end of the run: a process still writing this directory
        # (an earlier sweep's worker, a --resume) makes this run "busy" instead of a second writer.
        with run_lock(run_dir):
            state = run_status(run_dir)
            if state in ("finished", "diverged"):
                return {"run_dir": str(run_dir), "status": "skipped", "error": None}
            if state in ("interrupted", "incomplete") and checkpoint_paths(run_dir):
                result = resume(run_dir)
            else:
                _clear_run_dir(run_dir)  # a run killed before its first checkpoint: start it again
                result = train(Config.from_dict(spec.config))
        status = getattr(result, "status", "finished")
        error = None
        if status in ("failed", "diverged"):
            summary = json.loads((run_dir / "summary.json").read_text())
            error = summary.get("error")
        return {"run_dir": str(run_dir), "status": status, "error": error}
    except RunLockedError as exc:
        return {"run_dir": str(run_dir), "status": "busy", "error": str(exc)}
    except Exception as exc:  # recorded per run (and in its summary.json); the sweep goes on
        status = run_status(run_dir)
        return {"run_dir": str(run_dir), "status": status if status == "diverged" else "failed",
                "error": f"{type(exc).__name__}: {exc}"}


def _clear_run_dir(run_dir: Path) -> None:
    """Empty a run directory for a fresh start, keeping the lock file the caller holds."""
    from streamx.runlock import LOCK_FILE

    for entry in list(run_dir.iterdir()) if run_dir.is_dir() else []:
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


_POOL_PARENT: int | None = None  # in a local-pool worker: the sweep process's PID


def _pool_execute(spec: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`execute_run` in a local-pool worker. When the sweep died meanwhile (the run was
    told to stop, and has checkpointed), the worker exits instead of waiting on the pool's
    queues, which nobody serves any more."""
    result = execute_run(spec)
    if _POOL_PARENT is not None and os.getppid() != _POOL_PARENT:
        os._exit(0)
    return result


def _die_with_parent(parent: int) -> None:
    """Pool-worker initializer: the worker gets SIGTERM when the sweep process dies, even by
    SIGKILL, so no worker outlives its sweep (it then checkpoints and stops, as on Ctrl-C). On
    Linux the kernel sends it (prctl PR_SET_PDEATHSIG); elsewhere a thread polls the parent."""
    import threading

    global _POOL_PARENT
    _POOL_PARENT = parent
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(1, int(signal.SIGTERM), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the sweep died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="streamx-parent-watch", daemon=True).start()


def _execute_chunk(specs: list[dict[str, Any]], workers: int = 1) -> list[dict[str, Any]]:
    """One slurm array task: its runs one after another (or in a local pool of ``workers``)."""
    if workers <= 1 or len(specs) <= 1:
        return [execute_run(spec) for spec in specs]
    return list(_local_pool(specs, workers, lambda result: None))


class _StopRequests(StopSignals):
    """SIGINT/SIGTERM to the sweep's own process stop the sweep: no new run starts, and running
    pool workers are sent SIGTERM, so each checkpoints and stops (a rerun continues them)."""

    def __init__(self, pool: ProcessPoolExecutor | None = None) -> None:
        super().__init__()
        self.pool = pool

    def _handle(self, signum: int, frame: Any) -> None:
        super()._handle(signum, frame)
        for process in list((getattr(self.pool, "_processes", None) or {}).values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)


def _local_pool(specs: Sequence[Mapping[str, Any]], jobs: int,
                on_result: Callable[[dict[str, Any]], None]) -> Iterable[dict[str, Any]]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited torch threads
    queue = list(specs)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool, _StopRequests(pool) as stop:
        running: set[Future[dict[str, Any]]] = set()
        while queue or running:
            # submit only as many runs as there are workers, so a stop request starts nothing new
            while queue and len(running) < jobs and stop.received is None:
                running.add(pool.submit(_pool_execute, dict(queue.pop(0))))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                on_result(result)
                yield result
                if result["status"] == "interrupted":
                    queue.clear()


def _spec_dict(spec: RunSpec) -> dict[str, Any]:
    return {"method": spec.method, "env": spec.env, "seed": spec.seed, "config": spec.config, "run_dir": spec.run_dir}


def _run_local(specs: Sequence[RunSpec], jobs: int, report: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    if jobs > 1:
        return list(_local_pool([_spec_dict(s) for s in specs], jobs, report))
    results: list[dict[str, Any]] = []
    with _StopRequests() as stop:  # (during a run, the training loop's own handler takes the signal)
        for spec in specs:
            results.append(execute_run(spec))
            report(results[-1])
            if stop.received is not None or results[-1]["status"] == "interrupted":
                break
    return results


def _run_slurm(specs: Sequence[RunSpec], out: Path, options: argparse.Namespace,
               report: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    try:
        import submitit
    except ImportError:
        raise ConfigError("the slurm backend needs submitit: pip install 'streamx-rl[slurm]'") from None
    per_task = max(1, options.runs_per_task)
    chunks = [[_spec_dict(s) for s in specs[i:i + per_task]] for i in range(0, len(specs), per_task)]
    executor = submitit.AutoExecutor(folder=out / "submitit" / "%j", cluster=options.submitit_cluster)
    parameters: dict[str, Any] = {"timeout_min": options.time_min, "cpus_per_task": per_task,
                                  "slurm_array_parallelism": options.array_parallelism}
    if options.partition:
        parameters["slurm_partition"] = options.partition  # slurm_* settings are ignored off slurm
    executor.update_parameters(name=f"streamx-sweep-{out.name}", **parameters)
    jobs = executor.map_array(_execute_chunk, chunks, [per_task] * len(chunks))
    print(f"submitted {len(chunks)} array tasks ({per_task} runs each) — job {jobs[0].job_id.split('_')[0]}; "
          f"logs in {out / 'submitit'}", file=sys.stderr, flush=True)
    if not options.wait:
        return []
    results = []
    for job in jobs:
        for result in job.result():
            report(result)
            results.append(result)
    return results


def _run_ray(specs: Sequence[RunSpec], options: argparse.Namespace,
             report: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray backend needs ray: pip install 'streamx-rl[ray]'") from None
    address = None if options.ray_address == "local" else options.ray_address
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(execute_run)
        pending = [remote.remote(_spec_dict(s)) for s in specs]
        results = []
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            result = ray.get(done[0])
            report(result)
            results.append(result)
        return results
    finally:
        if started:
            ray.shutdown()


def write_manifest(experiment: Experiment, budget: str, out: Path, runs: Sequence[RunSpec]) -> Path:
    manifest = {
        "experiment": experiment.name,
        "experiment_file": str(experiment.path),
        "budget": budget,
        "window": _window(experiment, budget, runs),
        "runs": [{"dir": r.key, "method": r.method, "env": r.env, "seed": r.seed,
                  "total_steps": r.config["total_steps"], "status": run_status(r.run_dir)} for r in runs],
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.json", json.dumps(manifest, indent=2) + "\n")
    return out / "sweep.json"


def run_sweep(experiment: Experiment | str | Path, budget: str = "smoke", out: str | Path | None = None,
              backend: str = "local", jobs: int | None = None, options: argparse.Namespace | None = None,
              quiet: bool = False, only_methods: Sequence[str] | None = None,
              only_envs: Sequence[str] | None = None, only_seeds: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Expand and execute a sweep; return one result dict per run that was not skipped.

    ``only_methods`` / ``only_envs`` / ``only_seeds`` run a part of it; sweep.json always lists
    every run."""
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ConfigError(f"--jobs {jobs}: run at least one job at a time (e.g. --jobs 2)")
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; choose one of: {', '.join(BACKENDS)}")
    out = Path(out) if out is not None else experiment.default_out(budget)
    runs = expand(experiment, budget, out)
    write_manifest(experiment, budget, out, runs)
    chosen = _select(experiment, budget, runs, only_methods, only_envs, only_seeds)
    # a finished run made on a task of other package versions is not done here: it goes to the
    # backend, which refuses it with the reason (execute_run)
    todo = [r for r in chosen
            if run_status(r.run_dir) not in ("finished", "diverged") or task_mismatch(r.run_dir) is not None]
    say = (lambda *a: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    part = "" if len(chosen) == len(runs) else f" ({len(chosen)} selected)"
    say(f"{experiment.name} [{budget}]: {len(runs)} runs{part}, {len(chosen) - len(todo)} already finished, "
        f"{len(todo)} to run with the {backend} backend → {out}")
    unrecorded = sum((Path(r.run_dir) / "config.json").is_file() and not (Path(r.run_dir) / VERSIONS_FILE).is_file()
                     for r in chosen)
    if unrecorded:
        say(f"  {unrecorded} of them hold no {VERSIONS_FILE} (made before streamx recorded package versions): "
            "taken as made with the versions installed here")
    done = [0]
    started = time.perf_counter()

    def report(result: dict[str, Any]) -> None:
        done[0] += 1
        note = f" ({result['error']})" if result.get("error") else ""
        say(f"  [{done[0]}/{len(todo)}] {Path(result['run_dir']).name}: {result['status']}{note} "
            f"({time.perf_counter() - started:.0f} s into the sweep)")

    options = options or _parser().parse_args([])
    if backend == "local":
        jobs = jobs or max(1, min(len(todo), usable_cpus()))
        results = _run_local(todo, jobs, report) if todo else []
    elif backend == "slurm":
        results = _run_slurm(todo, out, options, report) if todo else []
    else:
        results = _run_ray(todo, options, report) if todo else []
    write_manifest(experiment, budget, out, runs)
    return results


def _parser() -> argparse.ArgumentParser:
    from streamx.cli import _Parser

    parser = _Parser(prog="streamx sweep", description=__doc__.split("\n\n")[0],
                     epilog="Run it again to resume: finished runs are skipped, interrupted ones continue.")
    parser.add_argument("experiment", nargs="?", help="experiment file, e.g. experiments/stream_barrier_mujoco")
    parser.add_argument("--budget", default="smoke", help="a budget of the experiment file (default smoke)")
    parser.add_argument("--backend", default="local", choices=BACKENDS)
    parser.add_argument("--out", default=None, help="sweep directory (default runs/sweeps/<experiment>/<budget>)")
    parser.add_argument("--jobs", type=int, default=None, help="local: parallel runs (default: one per core)")
    parser.add_argument("--methods", default=None, help="run only these methods (comma-separated)")
    parser.add_argument("--envs", default=None, help="run only these environments (comma-separated)")
    parser.add_argument("--seeds", default=None, help="run only these seeds (comma-separated integers, e.g. 0,1)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their status; run nothing")
    slurm = parser.add_argument_group("slurm backend (submitit)")
    slurm.add_argument("--runs-per-task", type=int, default=4, help="runs packed into one array task (its CPUs)")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--time-min", type=int, default=24 * 60, help="time limit of one array task, minutes")
    slurm.add_argument("--array-parallelism", type=int, default=256)
    slurm.add_argument("--no-wait", dest="wait", action="store_false", help="submit and return")
    slurm.add_argument("--submitit-cluster", default="slurm", choices=("slurm", "local", "debug"),
                       help="'local' runs the same array packing on this machine (for testing)")
    ray_group = parser.add_argument_group("ray backend")
    ray_group.add_argument("--ray-address", default="auto",
                           help="address of a running Ray cluster (default auto); 'local' starts one here")
    return parser


def _seed_list(text: str) -> list[int]:
    """``--seeds 0,3`` → [0, 3]."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds {text}: give seeds as comma-separated integers, e.g. --seeds 0,1") from None


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: run at least one job at a time (e.g. --jobs 2)")
    if args.experiment is None:
        raise ConfigError("name an experiment file, e.g. "
                          "streamx sweep experiments/stream_barrier_mujoco --budget smoke")
    experiment = load_experiment(args.experiment)
    methods = args.methods.split(",") if args.methods else None
    envs = args.envs.split(",") if args.envs else None
    seeds = _seed_list(args.seeds) if args.seeds else None
    if args.dry_run:
        out = Path(args.out) if args.out else experiment.default_out(args.budget)
        runs = expand(experiment, args.budget, out, methods, envs, seeds)
        counts: dict[str, int] = {}
        widths = (max((len(s.method) for s in runs), default=0), max((len(s.env) for s in runs), default=0))
        for spec in runs:
            line, status = _listing_line(spec, widths)
            counts[status] = counts.get(status, 0) + 1
            print(line)
        print(f"{len(runs)} runs in {out} ({', '.join(f'{n} {status}' for status, n in counts.items())})")
        return 0
    results = run_sweep(experiment, args.budget, args.out, args.backend, args.jobs, args,
                        only_methods=methods, only_envs=envs, only_seeds=seeds)
    failed = [r for r in results if r["status"] == "failed"]
    interrupted = [r for r in results if r["status"] == "interrupted"]
    diverged = [r for r in results if r["status"] == "diverged"]
    if diverged:
        print(f"{len(diverged)} run(s) diverged (an outcome, kept and not rerun): "
              f"{', '.join(Path(r['run_dir']).name for r in diverged)}", file=sys.stderr)
    out = Path(args.out) if args.out else experiment.default_out(args.budget)
    if failed:
        print(f"{len(failed)} run(s) failed:", file=sys.stderr)
        for r in failed:
            print(f"  {r['run_dir']}: {r['error']}", file=sys.stderr)
    if interrupted:
        print(f"{len(interrupted)} run(s) interrupted; run the same command again to continue them", file=sys.stderr)
    busy = [r for r in results if r["status"] == "busy"]
    if busy:
        print(f"{len(busy)} run(s) left alone, still being written by other processes:", file=sys.stderr)
        for r in busy:
            print(f"  {r['error']}", file=sys.stderr)
    if args.backend != "slurm" or args.wait:
        print(f"sweep results in {out}; plot them with: streamx plot {out}")
    return 1 if failed or interrupted or busy else 0
