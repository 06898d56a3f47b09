"""The README documents every ``sentenialx models`` command (sqlite-utils' docs test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sentenialx.hub.cli import EXIT_TABLE
from sentenialx.hub.cli.models import models

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme() -> str:
    assert README.is_file(), f"{README} is missing"
    return README.read_text(encoding="utf-8")


@pytest.mark.parametrize("command", sorted(models.all_commands()))
def test_models_command_is_documented(command: str) -> None:
    text = _readme()
    # `sentenialx models register`, also when wrapped as `sentenialx models \\\n  register`.
    pattern = rf"sentenialx\s+models\s+(?:\\\s*)?{re.escape(command)}(?![\w-])"
    assert re.search(pattern, text), (
        f"README.md does not mention `sentenialx models {command}`; document it")


def test_every_command_is_listed() -> None:
    # The parametrisation above must cover what issue 2 asks for, whatever else is added.
    assert set(models.all_commands()) >= {
        "register", "list", "show", "versions", "path", "verify", "alias", "revoke", "delete",
        "log", "diff", "gc", "fsck", "export-registry", "import-registry"}


def _readme_exit_codes() -> list[tuple[int, str]]:
    section = _readme().split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", section, flags=re.MULTILINE)
    return [(int(code), meaning) for code, meaning in rows]


def test_readme_exit_code_table_matches_the_cli() -> None:
    # Each row names the hub's own error classes of that code, as in cli.EXIT_TABLE.
    want = []
    for row in EXIT_TABLE:
        names = ", ".join(f"`{e.__name__}`" for e in row.errors if e.__module__ == "sentenialx.hub.errors")
        want.append((row.code, f"{row.meaning} ({names})" if names else row.meaning))
    assert _readme_exit_codes() == want
