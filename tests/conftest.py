"""Shared fixtures: every subprocess a test starts runs single-threaded (2 shared cores)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
CENSUS_DIR = SHARED / "data" / "census"

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own MLENGINE_HOME so runs never share state."""
    home = tmp_path / "mlengine-home"
    monkeypatch.setenv("MLENGINE_HOME", str(home))
    return home
