"""The documentation site (mkdocs.yml): it builds with --strict, every page of docs/ is in the
navigation, the API reference is rendered from the docstrings, and a broken link fails the build.
Skipped when the docs extra (mkdocs, mkdocs-material, mkdocstrings) is not installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("mkdocs")
pytest.importorskip("material")
pytest.importorskip("mkdocstrings_handlers.python")


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def _config_for(docs: Path, tmp_path: Path) -> Path:
    """mkdocs.yml with its docs_dir (and the API's source path) pointing elsewhere."""
    text = (ROOT / "mkdocs.yml").read_text()
    text = re.sub(r"(?m)^docs_dir: .*$", f"docs_dir: {docs}", text)
    text = text.replace("paths: [.]", f"paths: [{ROOT}]")
    config = tmp_path / "mkdocs.yml"
    config.write_text(text)
    return config


def test_the_site_builds_strict_with_every_page_and_the_api_reference(tmp_path):
    site = tmp_path / "site"
    result = _build(ROOT / "mkdocs.yml", site)
    assert result.returncode == 0, result.stderr[-3000:]
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md"))
    assert [page for page in pages if f": {page}" not in nav] == []  # every page is reachable
    for page in pages:
        stem = page.removesuffix(".md")
        html = site / (stem.removesuffix("index") if Path(stem).name == "index" else stem + "/") / "index.html"
        assert html.is_file(), page
    agents = (site / "api" / "agents" / "index.html").read_text()
    for name in ("make_agent", "StreamQ", "StreamSARSA", "StreamAC", "StreamTD"):
        assert f'id="streamx.agents.{name}"' in agents
    optim = (site / "api" / "optim" / "index.html").read_text()
    assert 'id="streamx.optim.ObGD"' in optim and 'id="streamx.optim.AdaptiveObGD"' in optim
    run = (site / "api" / "run" / "index.html").read_text()
    assert 'id="streamx.run.train"' in run and 'id="streamx.run.resume"' in run
    assert 'id="streamx.config.Config"' in (site / "api" / "config" / "index.html").read_text()
    sweep_plot = (site / "api" / "sweep-plot" / "index.html").read_text()
    assert 'id="streamx.sweep.run_sweep"' in sweep_plot and 'id="streamx.plot.main"' in sweep_plot
    assert "probability_of_improvement" in (site / "api" / "analysis" / "index.html").read_text()
    # the docstring of ObGD is on the page, not just its name
    assert "overshooting" in re.sub(r"<[^>]+>", "", optim).lower()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    with open(docs / "getting-started.md", "a") as handle:
        handle.write("\nSee [the missing page](no-such-page.md) and [an anchor](configs.md#no-such-heading).\n")
    result = _build(_config_for(docs, tmp_path), tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr and "no-such-heading" in result.stderr
