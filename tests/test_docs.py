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
