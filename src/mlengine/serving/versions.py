"""What the data plane needs to know about a deployed version, and where it learns it.

The data plane reads the registry and nothing else: :class:`VersionSource` resolves
``(project, model, version or None)`` — None meaning the model's default version — to a
:class:`DeployedVersion`: where its immutable model files are and how to load them. The
server gives it a view over its metadata store; ``mlengine serve`` opens the same store
read-only. :class:`CachedVersionSource` keeps answers for a short time so that a busy data
plane does not query the database on every request; a default-version change is therefore
seen within ``ttl_seconds`` (each request is answered by exactly one version either way).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class DeployedVersion:
    """A READY version as the data plane loads it.

    ``revision`` changes whenever the files or load settings change (a new version, or a
    re-deployment): predictors are cached by ``(name, revision)``.
    """

    name: str  # projects/P/models/M/versions/V
    model_dir: Path
    framework: str | None = None
    prediction_class: str | None = None
    package_paths: tuple[Path, ...] = ()
    revision: str = ""
    allow_pickle: bool = True
    extra: dict[str, str] = field(default_factory=dict)


class VersionSource(Protocol):
    """Resolves a predict call's target. Raises NotFound for an unknown model or version,
    FailedPrecondition for a version that is not READY or a model without a default."""

    def resolve(self, project: str, model: str, version: str | None) -> DeployedVersion: ...


class CachedVersionSource:
    """``source`` with answers (and errors) remembered for ``ttl_seconds``."""

    def __init__(
        self,
        source: VersionSource,
        ttl_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[
            tuple[str, str, str | None], tuple[float, DeployedVersion | Exception]
        ] = {}

    def resolve(self, project: str, model: str, version: str | None) -> DeployedVersion:
        key = (project, model, version)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            answer = hit[1]
        else:
            try:
                answer = self._source.resolve(project, model, version)
            except Exception as exc:  # remembered too: unknown names must not hit the DB
                answer = exc
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (now, answer)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def invalidate(self) -> None:
        """Forget every answer (the server calls this when it changes the registry)."""
        with self._lock:
            self._cache.clear()
