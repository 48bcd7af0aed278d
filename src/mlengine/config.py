"""Settings: the one place that reads ``MLENGINE_*`` environment variables.

Nothing reads the environment at import time; callers build :class:`Settings` once (the CLI
at start-up, the server in its composition root) and pass it down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "~/.mlengine"


@dataclass(frozen=True)
class Settings:
    """Where mlengine keeps its state. ``home`` holds the database, artifacts and caches."""

    home: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(home=Path(env.get("MLENGINE_HOME") or DEFAULT_HOME).expanduser())

    @property
    def environments_dir(self) -> Path:
        """Cached per-run Python environments (see executors.runtime_env)."""
        return self.home / "envs"

    @property
    def local_runs_dir(self) -> Path:
        """Scratch space of ``local train`` runs: metric files per replica."""
        return self.home / "local-runs"
