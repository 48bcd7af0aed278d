"""Trainer package archives: staging uploads and turning ``packageUris`` into local files.

An uploaded archive is stored once per content at ``packages/<sha256>/<filename>`` in the
artifact store and named by the URI ``mlengine-artifacts://packages/<sha256>/<filename>``.
When a job runs, :meth:`PackageService.materialize` turns each of its ``packageUris`` into a
local file for :func:`mlengine.executors.runtime_env.layered_environment`:

=================================  =========================================================
``mlengine-artifacts://packages/…``  the staged blob, its sha256 verified on every use
``gs://``, ``s3://``, ``memory://`` …  downloaded into the cache, stored by content hash
``/abs/path.tar.gz``, ``file://…``   a file on the server's disk (allow-list applies)
=================================  =========================================================

Errors name ``<field>[i]``: ``trainingInput.packageUris[i]`` for jobs (the default), or the
field the caller passes (versions.create passes ``packageUris``).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from mlengine.artifacts.paths import checked_relative_path, validate_user_local_path
from mlengine.artifacts.store import TMP_PREFIX, ArtifactStore
from mlengine.config import DEFAULT_MAX_PACKAGE_BYTES
from mlengine.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

PACKAGE_URI_SCHEME = "mlengine-artifacts://"
PACKAGES_PREFIX = "packages"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".whl")
#: fsspec protocols a packageUri may name; plain http(s) is left out so a job cannot make
#: the server fetch arbitrary URLs.
REMOTE_SCHEMES = frozenset({"gs", "gcs", "s3", "s3a", "az", "abfs", "abfss", "hdfs", "memory"})

_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,254}")
_WHEEL_PART = re.compile(r"[A-Za-z0-9_.+!]+")
_STAGED = re.compile(rf"{PACKAGES_PREFIX}/([0-9a-f]{{64}})/([^/]+)")
_CHUNK = 1 << 20
_STAGE_FIELD = "packageUris"
_URI_FIELD = "trainingInput.packageUris"


def validate_package_filename(filename: object, *, field: str = _STAGE_FIELD) -> str:
    """Return ``filename`` if it is a plain archive basename pip can install.

    Letters, digits and ``._+-`` only, ending in one of :data:`ARCHIVE_SUFFIXES`; a wheel's
    name must follow ``name-version(-build)?-python-abi-platform.whl`` (PEP 427).
    """
    if not isinstance(filename, str) or not _FILENAME.fullmatch(filename):
        raise InvalidArgument(
            f"{field}: package file name {filename!r} must be a plain file name of letters, "
            "digits and '._+-' (no folders), at most 255 characters.",
            field=field,
        )
    if not filename.lower().endswith(ARCHIVE_SUFFIXES):
        raise InvalidArgument(
            f"{field}: package file name {filename!r} must end in {', '.join(ARCHIVE_SUFFIXES)}.",
            field=field,
        )
    if filename.lower().endswith(".whl"):
        parts = filename[: -len(".whl")].split("-")
        build_ok = len(parts) == 5 or (len(parts) == 6 and parts[2][:1].isdigit())
        if not build_ok or not all(_WHEEL_PART.fullmatch(p) for p in parts):
            raise InvalidArgument(
                f"{field}: wheel file name {filename!r} does not follow "
                "'name-version(-build)?-pythontag-abitag-platformtag.whl' (PEP 427).",
                field=field,
            )
    return filename


def package_uri(sha256: str, filename: str) -> str:
    return f"{PACKAGE_URI_SCHEME}{PACKAGES_PREFIX}/{sha256}/{filename}"


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class PackageService:
    """Stages trainer archives by content and materializes ``packageUris`` for a run.

    ``cache_dir`` holds downloaded archives (``<sha256>/<filename>``, only ever written
    after their hash was computed) and uploads being hashed. ``allowed_local_roots`` limits
    which server folders a local package path may name (None: any).
    """

    def __init__(
        self,
        store: ArtifactStore,
        cache_dir: Path,
        *,
        max_bytes: int = DEFAULT_MAX_PACKAGE_BYTES,
        allowed_local_roots: Sequence[str | Path] | None = None,
        remote_schemes: frozenset[str] = REMOTE_SCHEMES,
    ) -> None:
        self._store = store
        self._cache_dir = Path(cache_dir)
        self._max_bytes = max_bytes
        self._allowed_local_roots = allowed_local_roots
        self._remote_schemes = remote_schemes

    # --- staging ----------------------------------------------------------------------

    def stage(self, filename: str, data: bytes | IO[bytes]) -> str:
        """Store an uploaded archive by content; return its ``mlengine-artifacts://`` URI.

        Idempotent: the same bytes under the same name give the same URI and are not
        written again. Raises :class:`InvalidArgument` (field ``packageUris``) for a bad
        file name and :class:`ResourceExhausted` above the size limit.
        """
        validate_package_filename(filename)
        if isinstance(data, bytes | bytearray | memoryview):
            blob = bytes(data)
            self._check_size(len(blob), filename)
            check_archive(io.BytesIO(blob), filename)
            sha = hashlib.sha256(blob).hexdigest()
            rel = f"{PACKAGES_PREFIX}/{sha}/{filename}"
            if not self._store.exists(rel, field=_STAGE_FIELD):
                self._store.put_bytes(rel, blob, field=_STAGE_FIELD)
            return package_uri(sha, filename)
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self._cache_dir, prefix=TMP_PREFIX) as spool:
            sha = self._copy_hashing(data, spool, filename)
            spool.flush()
            spool.seek(0)
            check_archive(spool, filename)
            rel = f"{PACKAGES_PREFIX}/{sha}/{filename}"
            if not self._store.exists(rel, field=_STAGE_FIELD):
                self._store.put_file(rel, spool.name, field=_STAGE_FIELD)
        return package_uri(sha, filename)

    def _check_size(self, size: int, filename: str) -> None:
        if size > self._max_bytes:
            raise ResourceExhausted(
                f"{_STAGE_FIELD}: package {filename!r} is larger than the "
                f"{self._max_bytes // (1024 * 1024)} MB limit; ship large data separately "
                "or raise the server's package size limit.",
                field=_STAGE_FIELD,
            )

    def _copy_hashing(self, source: IO[bytes], target: IO[bytes], filename: str) -> str:
        digest, size = hashlib.sha256(), 0
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            size += len(chunk)
            self._check_size(size, filename)
            digest.update(chunk)
            target.write(chunk)
        return digest.hexdigest()

    # --- materializing ----------------------------------------------------------------

    def materialize(self, uris: Sequence[str], *, field: str = _URI_FIELD) -> list[Path]:
        """Local files for ``uris``, in order, ready for ``runtime_env.layered_environment``
        (jobs) or ``serving.user_code`` (model versions).

        Errors name ``<field>[i]`` (default ``trainingInput.packageUris[i]``):
        :class:`InvalidArgument` for a URI of an unknown form or one that does not exist,
        :class:`FailedPrecondition` for a staged blob whose content no longer matches its
        hash, :class:`Unavailable` when a remote store cannot be read.
        """
        return [self._materialize_one(uri, f"{field}[{i}]") for i, uri in enumerate(uris)]

    def check(self, uris: Sequence[str], *, field: str = _URI_FIELD) -> None:
        """Cheap checks at submission (a job, a model version), without downloading anything.

        Staged packages must exist in the store and local paths on the server's disk; remote
        URIs must use an allowed scheme and name an archive file. The same errors as
        :meth:`materialize`, naming ``<field>[i]``.
        """
        for i, uri in enumerate(uris):
            at = f"{field}[{i}]"
            kind = self._kind(uri, at)
            if kind == "staged":
                rel, _, _ = self._staged_parts(uri, at)
                if not self._store.exists(rel, field=at):
                    raise InvalidArgument(
                        f"{at} {uri!r} does not exist on this server; upload the package again.",
                        field=at,
                    )
            elif kind == "local":
                self._local(uri, at)
            else:
                validate_package_filename(uri.rstrip("/").rpartition("/")[2], field=at)

    def _kind(self, uri: object, field: str) -> str:
        if not isinstance(uri, str) or not uri:
            raise InvalidArgument(f"{field} must be a non-empty URI or path.", field=field)
        if uri.startswith(PACKAGE_URI_SCHEME):
            return "staged"
        if uri.startswith("/") or uri.startswith("file://"):
            return "local"
        scheme, sep, _ = uri.partition("://")
        if sep and scheme.lower() in self._remote_schemes:
            return "remote"
        raise InvalidArgument(
            f"{field} {uri!r} is not a package this server can fetch: use an uploaded "
            f"package ({PACKAGE_URI_SCHEME}…), an absolute path on the server, or a URI with "
            f"one of the schemes {', '.join(sorted(self._remote_schemes))}.",
            field=field,
        )

    def _materialize_one(self, uri: str, field: str) -> Path:
        kind = self._kind(uri, field)
        if kind == "staged":
            return self._staged(uri, field)
        if kind == "local":
            return self._local(uri, field)
        return self._remote(uri, field)

    def _local(self, uri: str, field: str) -> Path:
        path = validate_user_local_path(
            uri, field=field, kind="file", allowed_roots=self._allowed_local_roots
        )
        validate_package_filename(path.name, field=field)
        return path

    def _staged_parts(self, uri: str, field: str) -> tuple[str, str, str]:
        """``(store path, sha256, filename)`` of a staged package URI."""
        rel = checked_relative_path(uri.removeprefix(PACKAGE_URI_SCHEME), field=field)
        match = _STAGED.fullmatch(rel)
        if match is None:
            raise InvalidArgument(
                f"{field} {uri!r} is not a staged package URI "
                f"({PACKAGE_URI_SCHEME}{PACKAGES_PREFIX}/<sha256>/<filename>).",
                field=field,
            )
        sha, filename = match.groups()
        validate_package_filename(filename, field=field)
        return rel, sha, filename

    def _staged(self, uri: str, field: str) -> Path:
        rel, sha, filename = self._staged_parts(uri, field)
        try:
            if self._store.is_local:
                path = self._store.local_path(rel, field=field)
                actual = sha256_file(path)
            else:
                path = self._cached(sha, filename)
                if path.is_file():
                    return path
                with self._store.open(rel, field=field) as source:
                    path, actual = self._download(source, filename)
        except NotFound:
            raise InvalidArgument(
                f"{field} {uri!r} does not exist on this server; upload the package again.",
                field=field,
            ) from None
        if actual != sha:
            raise FailedPrecondition(
                f"{field} {uri!r} is corrupted: its content hash is {actual}; delete it and "
                "upload the package again.",
                field=field,
            )
        return path

    def _remote(self, uri: str, field: str) -> Path:
        filename = validate_package_filename(uri.rstrip("/").rpartition("/")[2], field=field)
        try:
            import fsspec

            with fsspec.open(uri, "rb") as source:
                path, _ = self._download(source, filename)
        except FileNotFoundError:
            raise InvalidArgument(f"{field} {uri!r} does not exist.", field=field) from None
        except (ImportError, ValueError) as exc:
            raise FailedPrecondition(
                f"{field} {uri!r} cannot be read on this server: {exc}", field=field
            ) from exc
        except OSError as exc:
            raise Unavailable(f"{field} {uri!r} could not be read: {exc}", field=field) from exc
        return path

    def _cached(self, sha: str, filename: str) -> Path:
        return self._cache_dir / sha / filename

    def _download(self, source: Any, filename: str) -> tuple[Path, str]:
        """Copy ``source`` into the cache under its content hash; return (path, sha256)."""
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._cache_dir, prefix=TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                digest = hashlib.sha256()
                for chunk in iter(lambda: source.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            final = self._cached(sha, filename)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            with suppress(OSError):  # keep the original error
                os.unlink(tmp)
            raise
        return final, sha

    def clear_cache(self) -> None:
        """Remove every downloaded archive (staged blobs in the store stay)."""
        shutil.rmtree(self._cache_dir, ignore_errors=True)


def check_archive(handle: IO[bytes], filename: str) -> None:
    """Refuse bytes that are not the archive their name promises (a gzip'd tar for
    ``.tar.gz``/``.tgz``, a zip for ``.zip``/``.whl``), so a bad upload fails at submit with
    a clear message instead of later inside pip."""
    try:
        if filename.endswith((".zip", ".whl")):
            valid = zipfile.is_zipfile(handle)
        else:
            with tarfile.open(fileobj=handle, mode="r:gz") as archive:
                valid = archive.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        valid = False
    finally:
        handle.seek(0)
    if not valid:
        raise InvalidArgument(
            f"{_STAGE_FIELD}: {filename!r} is not a valid "
            f"{'zip' if filename.endswith(('.zip', '.whl')) else 'gzip-compressed tar'} archive; "
            "upload the sdist or wheel your build produced.",
            field=_STAGE_FIELD,
        )
