"""The documentation states what the code does: docs/configs.md lists every config field as
``streamx.config.field_help()`` describes it."""

from __future__ import annotations

from pathlib import Path

from streamx.config import field_help

ROOT = Path(__file__).resolve().parents[1]


def test_configs_doc_lists_every_field_with_its_default_and_help():
    lines = (ROOT / "docs" / "configs.md").read_text().splitlines()
    start = lines.index("| field | type | default | meaning |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("| `"):
            break
        rows.append(line)
    documented = {row.split("`")[1]: row for row in rows}
    assert list(documented) == [name for name, _, _ in field_help()], "fields missing, extra or out of order"
    for name, help_text, default in field_help():
        cells = documented[name].split(" | ")
        assert cells[2] == f"`{default!r}`", f"{name}: documented default {cells[2]}, code has {default!r}"
        assert documented[name].endswith(f"| {help_text.replace('|', chr(92) + '|')} |"), f"{name}: help text differs"


def test_the_plugin_guide_shows_the_example_file_whole_with_its_line_count():
    source = (ROOT / "examples" / "expected_sarsa" / "expected_sarsa.py").read_text()
    guide = (ROOT / "docs" / "algorithms.md").read_text()
    assert f"```python\n{source}```" in guide, "docs/algorithms.md must show examples/expected_sarsa/expected_sarsa.py"
    lines = len(source.splitlines())
    assert lines <= 25 and f"The whole file ({lines} lines, docstring included)" in guide
    assert f"### A value-based variant: {lines} lines, nothing in streamx edited" in guide
