"""The files of a model version: checking a ``deploymentUri`` and copying it into the store.

``versions.create`` names a folder (``deploymentUri``): an absolute path on the server
(``/srv/models/census/1``, ``file:///…``) or an fsspec URI with an allowed scheme
(``gs://``, ``s3://``, ``memory://`` …, the same list as for packages).  The service checks it
cheaply when the request arrives (:meth:`VersionFiles.check`); the deployer copies it
(:meth:`VersionFiles.copy`):

1. *stage*: the tree is copied into a private local folder — local sources through the
   artifact store's tree copy (symlinks leading out of the folder are refused), remote ones
   downloaded file by file — at most :data:`MAX_FILES` files;
2. *hash*: the staged copy's digest (SHA-256 over every relative path and file digest, in
   order) names it, so what is hashed is exactly what is published, even if the source
   changes meanwhile;
3. *publish*: the staged tree goes to ``models/<project>/<model>/<version>/<digest>`` in the
   artifact store with an atomic tree write, unless that prefix exists already (a restarted
   deployment of the same content).  The prefix is never written again: it is immutable.

A version's packages (``packageUris``, fetched by ``PackageService.materialize``) are
published next to it by :meth:`VersionFiles.publish_packages`, each staged and hashed the
same way, at ``models/<project>/<model>/<version>/packages/<sha256>/<filename>``: the
version carries its own copy, found from its runtime alone (by ``mlengine serve`` on
another machine too), and removed with the version.

Local paths go through the one containment check
(:func:`mlengine.artifacts.paths.validate_user_local_path`), with the server's allow-list of
folders when one is configured.  Errors name ``deploymentUri``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mlengine.artifacts.paths import validate_user_local_path
from mlengine.artifacts.store import TMP_PREFIX, ArtifactStore
from mlengine.domain.errors import FailedPrecondition, InvalidArgument, Unavailable
from mlengine.services.packages import REMOTE_SCHEMES, sha256_file

#: Files a deploymentUri may hold (spec §7.2).
MAX_FILES = 1000
MODELS_PREFIX = "models"
#: Below a version's prefix: its published packages, ``packages/<sha256>/<filename>``.
PACKAGES_DIR = "packages"
FIELD = "deploymentUri"
PACKAGES_FIELD = "packageUris"
_CHUNK = 1 << 20


class VersionFiles:
    """Checks deployment URIs and copies them into ``artifacts`` by content.

    ``work_dir`` holds staging folders while a copy runs; ``allowed_local_roots`` limits the
    server folders a local ``deploymentUri`` may name (None: any).
    """

    def __init__(
        self,
        artifacts: ArtifactStore,
        work_dir: Path,
        *,
        allowed_local_roots: Sequence[str | Path] | None = None,
        remote_schemes: frozenset[str] = REMOTE_SCHEMES,
    ) -> None:
        self.artifacts = artifacts
        self._work_dir = Path(work_dir)
        self._allowed_local_roots = allowed_local_roots
        self._remote_schemes = remote_schemes

    def check(self, uri: str) -> None:
        """Cheap checks at create time: a local folder must exist (inside the allow-list); a
        URI must use an allowed scheme.  InvalidArgument/PermissionDenied naming the field."""
        if self._is_local(uri):
            self._local(uri)

    def copy(self, uri: str, prefix: str) -> tuple[str, str]:
        """Copy the tree at ``uri`` to ``<prefix>/<digest>``; return (artifact path, digest)."""
        self._work_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self._work_dir, prefix=TMP_PREFIX))
        try:
            tree = staging / "tree"
            if self._is_local(uri):
                source = self._local(uri)
                _check_count(sum(1 for p in source.rglob("*") if p.is_file()), uri)
                ArtifactStore(staging).put_tree("tree", source, field=FIELD)
            else:
                self._download(uri, tree)
            digest = tree_digest(tree)
            rel = f"{prefix}/{digest}"
            if not self.artifacts.exists(rel, field=FIELD):
                self.artifacts.put_tree(rel, tree, field=FIELD)
            return rel, digest
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def publish_packages(
        self, paths: Sequence[Path], prefix: str, *, field: str = PACKAGES_FIELD
    ) -> tuple[str, ...]:
        """Publish the local package files ``paths`` (in order) below ``prefix``; return their
        artifact paths, ``<prefix>/packages/<sha256>/<filename>``.

        Each file is staged and hashed first, so what is hashed is what is published; a path
        that exists already (a restarted deployment) is reused, never written again.
        Errors name ``<field>[i]``.
        """
        published: list[str] = []
        self._work_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self._work_dir, prefix=TMP_PREFIX))
        try:
            for index, path in enumerate(paths):
                at = f"{field}[{index}]"
                staged = staging / str(index)
                try:
                    shutil.copyfile(path, staged)
                except OSError as exc:
                    raise FailedPrecondition(
                        f"{at}: package {path.name!r} could not be read: {exc}", field=at
                    ) from exc
                rel = f"{prefix}/{PACKAGES_DIR}/{sha256_file(staged)}/{path.name}"
                if not self.artifacts.exists(rel, field=at):
                    self.artifacts.put_file(rel, staged, field=at)
                published.append(rel)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return tuple(published)

    def local_dir(self, rel: str) -> Path:
        """A local folder holding the published tree ``rel`` (downloaded for remote roots)."""
        return self.artifacts.local_path(rel, field=FIELD)

    def local_package(self, rel: str) -> Path:
        """A local file holding the published package ``rel`` (downloaded for remote roots)."""
        return self.artifacts.local_path(rel, field=PACKAGES_FIELD)

    def remove(self, prefix: str) -> None:
        """Delete everything published under ``prefix`` (absent is fine)."""
        self.artifacts.delete_tree(prefix, field=FIELD)

    def _is_local(self, uri: str) -> bool:
        if uri.startswith("/") or uri.startswith("file://"):
            return True
        scheme, separator, _ = uri.partition("://")
        if separator and scheme.lower() in self._remote_schemes:
            return False
        raise InvalidArgument(
            f"{FIELD} {uri!r} is not a folder this server can read: give an absolute path on "
            f"the server, or a URI with one of the schemes "
            f"{', '.join(sorted(self._remote_schemes))}.",
            field=FIELD,
        )

    def _local(self, uri: str) -> Path:
        return validate_user_local_path(
            uri, field=FIELD, kind="directory", allowed_roots=self._allowed_local_roots
        )

    def _download(self, uri: str, target: Path) -> None:
        try:
            import fsspec

            fs, root = fsspec.core.url_to_fs(uri)
            base = str(root).rstrip("/")
            if not fs.isdir(base):
                raise InvalidArgument(f"{FIELD} {uri!r} is not a folder.", field=FIELD)
            names = sorted(str(name) for name in fs.find(base))
            _check_count(len(names), uri)
            for name in names:
                relative = name.removeprefix(base).lstrip("/")
                destination = target / relative
                if not destination.resolve().is_relative_to(target.resolve()):
                    raise InvalidArgument(
                        f"{FIELD} {uri!r} holds a file named {relative!r}, which would land "
                        "outside the copy.",
                        field=FIELD,
                    )
                destination.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(name, str(destination))
        except (ImportError, ValueError) as exc:
            raise FailedPrecondition(
                f"{FIELD} {uri!r} cannot be read on this server: {exc}", field=FIELD
            ) from exc
        except FileNotFoundError:
            raise InvalidArgument(f"{FIELD} {uri!r} does not exist.", field=FIELD) from None
        except OSError as exc:
            raise Unavailable(f"{FIELD} {uri!r} could not be read: {exc}", field=FIELD) from exc


def tree_digest(folder: Path) -> str:
    """SHA-256 over every file below ``folder``: its relative path and its own digest, sorted.

    Raises InvalidArgument (``deploymentUri``) when the tree is empty or holds more than
    :data:`MAX_FILES` files.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    _check_count(len(files), str(folder))
    if not files:
        raise InvalidArgument(
            f"{FIELD}: the folder is empty; point it at the folder holding the model's files.",
            field=FIELD,
        )
    digest = hashlib.sha256()
    for path in files:
        content = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                content.update(chunk)
        digest.update(f"{path.relative_to(folder).as_posix()}\0{content.hexdigest()}\n".encode())
    return digest.hexdigest()


def version_prefix(project: str, model_id: str, version_id: str) -> str:
    """Where the copies of one version live in the artifact store."""
    return f"{MODELS_PREFIX}/{project}/{model_id}/{version_id}"


def _check_count(count: int, where: str) -> None:
    if count > MAX_FILES:
        raise InvalidArgument(
            f"{FIELD} {where!r} holds {count} files; a model version may have at most "
            f"{MAX_FILES}. Export only what serving needs.",
            field=FIELD,
        )
