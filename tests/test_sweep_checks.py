"""A sweep's counts are checked before anything runs: seeds, --jobs."""

from __future__ import annotations

import textwrap

import pytest

from streamx.errors import ConfigError
from streamx.sweep import load_experiment, main, run_sweep


def _experiment(tmp_path, seeds) -> str:
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(f"""
        name: checks
        envs: [CartPole-v1]
        methods:
          q: {{algo: stream_q}}
        budgets:
          smoke: {{total_steps: 100, seeds: {seeds}}}
    """))
    return str(path)


@pytest.mark.parametrize("seeds", ["0", "-1", "[]", "[-2]", "true", "1.5"])
def test_seeds_must_give_at_least_one_run(tmp_path, seeds):
    with pytest.raises(ConfigError, match="budget 'smoke': seeds=.* must be a count of at least 1"):
        load_experiment(_experiment(tmp_path, seeds))


@pytest.mark.parametrize("jobs", [0, -3])
def test_jobs_must_be_positive(tmp_path, jobs):
    with pytest.raises(ConfigError, match=f"--jobs {jobs}: run at least one job"):
        main([_experiment(tmp_path, 1), "--out", str(tmp_path / "out"), "--jobs", str(jobs)])
    with pytest.raises(ConfigError, match="run at least one job"):
        run_sweep(_experiment(tmp_path, 1), out=tmp_path / "out", jobs=jobs, quiet=True)
    assert not (tmp_path / "out").exists()
