"""No module of shared/ passes 400 lines: a module that long mixes concerns, and a newcomer cannot hold it.

Issue 11 split the last modules over the limit (the worker, the HTTP triggers, the Graph adapter), so there is
no allow-list any more: a module that grows past the limit is split by concern, not excused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# The checkout's root wherever this file sits in tests/ (it is moved with the test tree).
ROOT = next(parent for parent in Path(__file__).resolve().parents if (parent / "pyproject.toml").is_file())
SHARED = ROOT / "shared"
MAX_MODULE_LINES = 400


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def _modules() -> list[Path]:
    return sorted(SHARED.rglob("*.py"))


def test_modules_are_found() -> None:
    assert len(_modules()) > 10, f"no modules found under {SHARED}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_in_shared_passes_400_lines(path: Path) -> None:
    name = path.relative_to(ROOT).as_posix()
    lines = _line_count(path)
    assert lines <= MAX_MODULE_LINES, f"{name}: {lines} lines (limit {MAX_MODULE_LINES}); split it by concern"
