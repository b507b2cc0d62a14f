"""Every `streamx ...` command line shown in a fenced code block of README.md or docs/*.md
uses only options its subcommand has, and the subcommand runs: `--help` for most, `--dry-run`
(with the documented options) for sweeps. Documented flags cannot drift from the parsers.

A flag exists when it is in the subcommand's `--help` option list; `streamx train` also takes
every config field as `--field-name value` or `field_name=value`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import shlex
from functools import cache
from pathlib import Path

import pytest

from streamx import cli
from streamx.config import Config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
COMMAND = re.compile(r"^(?:\$\s+)?(?:[A-Z_]+=\S+\s+)*streamx\s+(.*)$")
PLACEHOLDER = re.compile(r"[<>\[\]]|\.\.\.")
CONFIG_FIELDS = {field.name for field in dataclasses.fields(Config)}


def documented_commands() -> list[tuple[str, list[str]]]:
    """(file:line, tokens after `streamx`) for each command line of every fenced block; a line
    ending in a backslash continues on the next."""
    commands = []
    for path in DOCS:
        text = path.read_text()
        for block in FENCE.finditer(text):
            first_line = text[:block.start(1)].count("\n") + 1
            lines = block.group(1).split("\n")
            i = 0
            while i < len(lines):
                start, line = i, lines[i]
                while line.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line.rstrip()[:-1] + " " + lines[i].strip()
                match = COMMAND.match(line.strip())
                if match:
                    commands.append((f"{path.relative_to(ROOT)}:{first_line + start}",
                                     shlex.split(match.group(1), comments=True)))
                i += 1
    return commands


COMMANDS = documented_commands()


def _run(argv: list[str]) -> tuple[int, str]:
    """``streamx ARGV`` in this process: (exit status, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse's --help
            code = int(exc.code or 0)
    return code, out.getvalue()


@cache
def help_text(subcommand: str) -> str:
    code, text = _run([subcommand, "--help"])
    assert code == 0 and text.startswith("usage: streamx"), f"streamx {subcommand} --help failed"
    return text


@cache
def options(subcommand: str) -> frozenset[str]:
    """The option strings the subcommand's --help lists (its option lines only, not the prose)."""
    section = help_text(subcommand).split("\noptions:\n", 1)[1]
    found = set()
    for line in section.splitlines():
        if line.lstrip().startswith("-"):
            found.update(re.findall(r"--[A-Za-z0-9][\w-]*", re.split(r"\s{2,}", line.strip())[0]))
    return frozenset(found)


def flags(tokens: list[str]) -> list[str]:
    return [token.split("=", 1)[0] for token in tokens if token.startswith("--")]


def unknown_flags(tokens: list[str]) -> list[str]:
    subcommand = tokens[0]
    missing = []
    for flag in flags(tokens[1:]):
        if flag in options(subcommand):
            continue
        if subcommand == "train" and flag[2:].replace("-", "_") in CONFIG_FIELDS:
            continue  # `--field-name value` sets a config field
        missing.append(flag)
    return missing


def test_the_docs_show_commands_of_every_subcommand():
    assert len(COMMANDS) > 50
    assert {tokens[0] for _, tokens in COMMANDS} == set(cli.COMMANDS)


def test_option_lists_come_from_the_parsers():
    assert {"--env", "--seed", "--steps", "--run-dir", "--config", "--resume", "--help"} <= options("train")
    assert options("eval") == {"--help", "--episodes", "--checkpoint", "--video", "--epsilon"}
    assert {"--paper", "--no-paper", "--out"} <= options("plot")
    assert {"--dry-run", "--no-wait", "--ray-address", "--runs-per-task"} <= options("sweep")
    assert "--not-an-option" not in options("sweep")
    assert unknown_flags(["eval", "run", "--episodes", "3", "--greedy"]) == ["--greedy"]
    assert unknown_flags(["train", "stream_q", "--hidden-sizes", "8", "--hiden-sizes", "8"]) == ["--hiden-sizes"]


@pytest.mark.parametrize("where, tokens", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_documented_command(where, tokens, tmp_path):
    subcommand = tokens[0]
    assert subcommand in cli.COMMANDS, f"{where}: no subcommand '{subcommand}'"
    assert not unknown_flags(tokens), f"{where}: streamx {subcommand} has no option {unknown_flags(tokens)}"
    if subcommand == "train" and "--help" not in tokens and not any(PLACEHOLDER.search(t) for t in tokens):
        _, rest = cli._train_parser().parse_known_args(tokens[1:])  # the CLI's own parse
        unknown = sorted(set(cli._parse_overrides(rest)) - CONFIG_FIELDS)
        assert not unknown, f"{where}: {unknown} are not config fields"
    if subcommand == "sweep":
        arguments = []
        rest = iter(tokens[1:])
        for token in rest:
            if token == "--out":
                next(rest)  # the dry run lists the runs of a scratch folder instead
            elif not token.startswith("--out="):
                arguments.append(token)
        code, listing = _run(["sweep", *arguments, "--dry-run", "--out", str(tmp_path)])
        assert code == 0 and f"runs in {tmp_path} (" in listing.rstrip().splitlines()[-1], f"{where}: {listing[-500:]}"
        assert not any(tmp_path.iterdir()), "a dry run wrote files"
    else:
        assert help_text(subcommand)
