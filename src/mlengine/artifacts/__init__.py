"""Artifacts: files under one root (a local folder or an fsspec URI), with the one path check.

:mod:`~mlengine.artifacts.paths` holds the containment check every route and service uses;
:mod:`~mlengine.artifacts.store` the :class:`ArtifactStore`. See docs/artifacts.md.
"""

from mlengine.artifacts.paths import contain, contain_uri, validate_user_local_path
from mlengine.artifacts.store import ArtifactStore

__all__ = ["ArtifactStore", "contain", "contain_uri", "validate_user_local_path"]
