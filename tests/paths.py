"""Where things are, relative to this checkout: no test names a machine path or counts parent folders."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "tests" / "fixtures" / "seeds"
EMULATOR_FIXTURES = ROOT / "emulator" / "fixtures"
