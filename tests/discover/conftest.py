"""Fixture homes: a copy of tests/discover/fixtures per test (home/ and project/)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes under ``root``, except Airlock's own backups."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".airlock" not in p.relative_to(root).parts}


@pytest.fixture
def tree(tmp_path) -> tuple[Path, Path]:
    """(home, project) copied from the fixtures; ~/.claude.json names the real project path."""
    shutil.copytree(FIXTURES, tmp_path, dirs_exist_ok=True)
    home, project = tmp_path / "home", tmp_path / "project"
    state = home / ".claude.json"
    state.write_text(state.read_text().replace("__PROJECT__", str(project)))
    return home, project
