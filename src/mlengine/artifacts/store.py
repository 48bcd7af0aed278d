"""The artifact store: files under one root, a local folder or an fsspec URI.

Contract (both kinds of root, checked by one shared test suite in ``tests/artifacts``):

* Every relative path goes through :func:`~mlengine.artifacts.paths.contain` (local roots)
  or :func:`~mlengine.artifacts.paths.checked_relative_path` (fsspec roots): a path that could
  lead outside the root raises :class:`InvalidArgument` naming ``field`` before any I/O.
* **Writes never expose half an artifact.** Local roots write to a temporary file in the
  target's folder, ``fsync`` it and ``os.replace`` it onto the final name; trees are copied
  into a temporary sibling folder and renamed into place. fsspec roots upload to a temporary
  name and move it (best effort: a move is a copy on object stores, but the final name only
  ever receives a complete upload). A failed write leaves neither the final name nor
  temporary litter behind.
* Temporary names start with :data:`TMP_PREFIX` and never appear in :meth:`ArtifactStore.list`.
* Failures of the storage itself become canonical errors: a missing artifact
  :class:`NotFound`; no space, no permission, a read-only disk or a file where a folder is
  expected :class:`FailedPrecondition`; anything else (I/O, network) :class:`Unavailable`.
  The message carries the operating system's reason.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from mlengine.artifacts.paths import checked_relative_path, contain, contain_uri
from mlengine.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    MlEngineError,
    NotFound,
    Unavailable,
)

#: Temporary files and folders of in-flight writes start with this; listings hide them.
TMP_PREFIX = ".mlengine-tmp-"
_CHUNK = 1 << 20
#: OS failures that retrying will not fix: the operator or the caller has to act.
_PRECONDITION_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.EEXIST,
    errno.ENOTEMPTY,
    errno.EFBIG,
    errno.ENAMETOOLONG,
}


@contextmanager
def _storage_errors(action: str, target: str, field: str) -> Iterator[None]:
    try:
        yield
    except MlEngineError:
        raise
    except FileNotFoundError:
        raise NotFound(f"Artifact {target!r} does not exist.", field=field) from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        message = f"Could not {action} artifact {target!r}: {reason}."
        if exc.errno in _PRECONDITION_ERRNOS or isinstance(exc, PermissionError):
            raise FailedPrecondition(message, field=field) from exc
        raise Unavailable(message, field=field) from exc


def _tree_files(source: Path, field: str) -> Iterator[tuple[str, Path]]:
    """``(relative posix path, file)`` for every file under ``source``, sorted.

    Symlinked files are followed when they stay inside ``source``; links leading out, and
    symlinked folders, are refused so a copied tree can never pull in files from elsewhere.
    """
    for directory, dirnames, filenames in os.walk(source):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            entry = Path(directory, name)
            if not entry.is_symlink():
                continue
            target = entry.resolve()
            if entry.is_dir() or not target.is_file() or not target.is_relative_to(source):
                raise InvalidArgument(
                    f"{field}: {str(entry)!r} is a symbolic link to {str(target)!r}; only links "
                    f"to files inside {str(source)!r} are copied.",
                    field=field,
                )
        for name in sorted(filenames):
            entry = Path(directory, name)
            yield entry.relative_to(source).as_posix(), entry


def _refuse_root(relative: str, action: str, field: str) -> None:
    if not relative:
        raise InvalidArgument(f"{field}: cannot {action} the artifact root itself.", field=field)


class _Files(Protocol):
    """What each kind of root implements; paths are the user's, not yet checked."""

    def write(self, rel: str, stream: IO[bytes], field: str) -> None: ...
    def write_tree(self, rel: str, source: Path, field: str) -> None: ...
    def open(self, rel: str, field: str) -> BinaryIO: ...
    def exists(self, rel: str, field: str) -> bool: ...
    def list(self, rel: str, recursive: bool, field: str) -> builtins.list[str]: ...
    def delete(self, rel: str, field: str) -> bool: ...
    def delete_tree(self, rel: str, field: str) -> bool: ...
    def uri(self, rel: str, field: str) -> str: ...
    def local_path(self, rel: str, field: str) -> Path: ...


class _LocalFiles:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    def _path(self, rel: str, field: str) -> Path:
        return contain(self.root, rel, field=field)

    def _target(self, rel: str, action: str, field: str) -> Path:
        path = self._path(rel, field)
        _refuse_root("" if path == self.root else rel, action, field)
        return path

    def write(self, rel: str, stream: IO[bytes], field: str) -> None:
        target = self._target(rel, "write", field)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(stream, out, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(target.parent)

    def write_tree(self, rel: str, source: Path, field: str) -> None:
        target = self._target(rel, "replace", field)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=TMP_PREFIX))
        try:
            for directory, dirnames, _ in os.walk(source):
                for name in dirnames:  # keep empty folders too
                    (staging / Path(directory, name).relative_to(source)).mkdir(exist_ok=True)
            for relative, file in _tree_files(source, "local_dir"):
                copy = staging / relative
                shutil.copyfile(file, copy)
                with open(copy, "rb") as handle:
                    os.fsync(handle.fileno())
            os.chmod(staging, 0o755)
            self._swap_in(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(target.parent)

    @staticmethod
    def _swap_in(staging: Path, target: Path) -> None:
        """Rename ``staging`` onto ``target``; an old tree there is moved aside first.

        The final name shows the old tree or the new one, never a mix; between the two
        renames it is briefly absent.
        """
        if not target.exists():
            os.replace(staging, target)
            return
        old = target.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        os.replace(target, old)
        os.replace(staging, target)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()

    def open(self, rel: str, field: str) -> BinaryIO:
        return open(self._path(rel, field), "rb")  # the caller closes it

    def exists(self, rel: str, field: str) -> bool:
        return self._path(rel, field).exists()

    def list(self, rel: str, recursive: bool, field: str) -> builtins.list[str]:
        folder = self._path(rel, field)
        if not folder.is_dir():
            return []
        if recursive:
            return sorted(
                p.relative_to(folder).as_posix()
                for p in folder.rglob("*")
                if p.is_file()
                and not any(part.startswith(TMP_PREFIX) for part in p.relative_to(folder).parts)
            )
        return sorted(
            e.name + ("/" if e.is_dir() else "")
            for e in folder.iterdir()
            if not e.name.startswith(TMP_PREFIX)
        )

    def delete(self, rel: str, field: str) -> bool:
        path = self._target(rel, "delete", field)
        if path.is_dir():
            raise FailedPrecondition(
                f"{field} {rel!r} is a folder; delete it with delete_tree.", field=field
            )
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def delete_tree(self, rel: str, field: str) -> bool:
        path = self._target(rel, "delete", field)
        if not path.exists():
            return False
        if not path.is_dir():
            path.unlink()
            return True
        # Rename first so the tree disappears from its name at once, then remove it.
        doomed = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def uri(self, rel: str, field: str) -> str:
        return str(self._path(rel, field))

    def local_path(self, rel: str, field: str) -> Path:
        path = self._path(rel, field)
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "no such artifact", str(path))
        return path


class _RemoteFiles:
    """Files behind an fsspec filesystem (``memory://``, ``s3://``, ``gs://`` …)."""

    def __init__(self, root_uri: str, cache_dir: Path | None) -> None:
        import fsspec

        self.fs: Any
        self.fs, base = fsspec.core.url_to_fs(root_uri)
        self.base = str(base).rstrip("/")
        self.root_uri = root_uri.rstrip("/")
        self._cache_dir = cache_dir

    def _key(self, rel: str, field: str) -> str:
        relative = checked_relative_path(rel, field=field)
        return f"{self.base}/{relative}" if relative else self.base

    def _target(self, rel: str, action: str, field: str) -> str:
        key = self._key(rel, field)
        _refuse_root("" if key == self.base else rel, action, field)
        return key

    def _temporary(self, key: str) -> str:
        parent, _, name = key.rpartition("/")
        return f"{parent}/{TMP_PREFIX}{uuid.uuid4().hex}-{name}"

    def write(self, rel: str, stream: IO[bytes], field: str) -> None:
        key = self._target(rel, "write", field)
        if self.fs.isdir(key):
            raise FailedPrecondition(f"{field} {rel!r} is a folder, not a file.", field=field)
        tmp = self._temporary(key)
        try:
            with self.fs.open(tmp, "wb") as out:
                shutil.copyfileobj(stream, out, _CHUNK)
            self.fs.mv(tmp, key)
        except BaseException:
            with suppress(Exception):
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            raise

    def write_tree(self, rel: str, source: Path, field: str) -> None:
        key = self._target(rel, "replace", field)
        tmp = self._temporary(key)
        try:
            for relative, file in _tree_files(source, "local_dir"):
                self.fs.put_file(str(file), f"{tmp}/{relative}")
            if self.fs.exists(key):
                self.fs.rm(key, recursive=True)
            if self.fs.exists(tmp):
                self.fs.mv(tmp, key, recursive=True)
        except BaseException:
            with suppress(Exception):
                if self.fs.exists(tmp):
                    self.fs.rm(tmp, recursive=True)
            raise

    def open(self, rel: str, field: str) -> BinaryIO:
        handle: BinaryIO = self.fs.open(self._key(rel, field), "rb")
        return handle

    def exists(self, rel: str, field: str) -> bool:
        return bool(self.fs.exists(self._key(rel, field)))

    def list(self, rel: str, recursive: bool, field: str) -> builtins.list[str]:
        key = self._key(rel, field)
        if not self.fs.isdir(key):
            return []
        prefix = key + "/"
        if recursive:
            names = [str(n).removeprefix(prefix) for n in self.fs.find(key)]
            return sorted(n for n in names if TMP_PREFIX not in n)
        entries = [
            str(e["name"]).rstrip("/").removeprefix(prefix)
            + ("/" if e["type"] == "directory" else "")
            for e in self.fs.ls(key, detail=True)
        ]
        return sorted(n for n in entries if not n.startswith(TMP_PREFIX))

    def delete(self, rel: str, field: str) -> bool:
        key = self._target(rel, "delete", field)
        if self.fs.isdir(key):
            raise FailedPrecondition(
                f"{field} {rel!r} is a folder; delete it with delete_tree.", field=field
            )
        if not self.fs.exists(key):
            return False
        self.fs.rm_file(key)
        return True

    def delete_tree(self, rel: str, field: str) -> bool:
        key = self._target(rel, "delete", field)
        if not self.fs.exists(key):
            return False
        self.fs.rm(key, recursive=True)
        return True

    def uri(self, rel: str, field: str) -> str:
        return contain_uri(self.root_uri, rel, field=field)

    @property
    def cache_dir(self) -> Path:
        if self._cache_dir is None:
            self._cache_dir = Path(tempfile.mkdtemp(prefix="mlengine-artifact-cache-"))
        return self._cache_dir

    def local_path(self, rel: str, field: str) -> Path:
        """Download into the cache, keyed by the object's version (fsspec ``ukey``)."""
        key = self._key(rel, field)
        if not self.fs.exists(key):
            raise FileNotFoundError(errno.ENOENT, "no such artifact", key)
        files = [key] if not self.fs.isdir(key) else sorted(self.fs.find(key))
        identity = hashlib.sha256(key.encode())
        for name in files:
            identity.update(f"\0{name}\0{self.fs.ukey(name)}".encode())
        slot = self.cache_dir / identity.hexdigest()[:32]
        final = slot / key.rpartition("/")[2]
        if final.exists():
            return final
        slot.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=slot, prefix=TMP_PREFIX))
        try:
            for name in files:
                relative = name.removeprefix(key).lstrip("/")
                destination = staging / "data" / relative if relative else staging / "data"
                destination.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(name, str(destination))
            with suppress(OSError):  # another process may have won the race
                os.replace(staging / "data", final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: not every file system supports it)."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _is_local_root(root: str) -> bool:
    return "://" not in root or root.startswith("file://")


class ArtifactStore:
    """Files under one root; ``root`` is a local folder (created if missing) or an fsspec URI.

    ``file://`` roots are treated as local folders. ``cache_dir`` is where
    :meth:`local_path` downloads remote artifacts (default: a private temporary folder).
    Every method taking a path accepts ``field``: the API field or flag the path came from,
    named in errors.
    """

    def __init__(self, root: str | Path, *, cache_dir: Path | None = None) -> None:
        text = os.fspath(root)
        self.is_local = _is_local_root(text)
        self._files: _Files
        if self.is_local:
            local = _LocalFiles(Path(text.removeprefix("file://")).expanduser())
            self.root = str(local.root)
            self._files = local
        else:
            self.root = text.rstrip("/")
            self._files = _RemoteFiles(self.root, cache_dir)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    def put_stream(self, rel: str, stream: IO[bytes], *, field: str = "path") -> str:
        """Write the bytes read from ``stream`` to ``rel`` atomically; return its URI."""
        with _storage_errors("write", rel, field):
            self._files.write(rel, stream, field)
            return self._files.uri(rel, field)

    def put_bytes(self, rel: str, data: bytes, *, field: str = "path") -> str:
        """Write ``data`` to ``rel`` atomically (replacing what was there); return its URI."""
        return self.put_stream(rel, io.BytesIO(data), field=field)

    def put_file(self, rel: str, local_path: str | Path, *, field: str = "path") -> str:
        """Copy the local file ``local_path`` to ``rel`` atomically; return its URI."""
        source = Path(local_path)
        if not source.is_file():
            raise InvalidArgument(f"{str(source)!r} is not a file.", field="local_path")
        with source.open("rb") as stream:
            return self.put_stream(rel, stream, field=field)

    def put_tree(self, rel_dir: str, local_dir: str | Path, *, field: str = "path") -> str:
        """Copy the folder ``local_dir`` to ``rel_dir``, replacing a tree there; return its URI.

        Local roots: copied into a temporary sibling, then renamed into place. fsspec roots:
        uploaded under a temporary prefix, then moved (best effort).
        """
        source = Path(local_dir).resolve()
        if not source.is_dir():
            raise InvalidArgument(f"{str(local_dir)!r} is not a folder.", field="local_dir")
        with _storage_errors("write", rel_dir, field):
            self._files.write_tree(rel_dir, source, field)
            return self._files.uri(rel_dir, field)

    def get_bytes(self, rel: str, *, field: str = "path") -> bytes:
        """The whole content of ``rel``; :class:`NotFound` if it does not exist."""
        with self.open(rel, field=field) as handle, _storage_errors("read", rel, field):
            return handle.read()

    def open(self, rel: str, mode: str = "rb", *, field: str = "path") -> BinaryIO:
        """A binary file object for reading ``rel`` (writes go through ``put_*``)."""
        if mode != "rb":
            raise ValueError("ArtifactStore.open only reads ('rb'); write with put_*")
        with _storage_errors("read", rel, field):
            return self._files.open(rel, field)

    def exists(self, rel: str, *, field: str = "path") -> bool:
        with _storage_errors("inspect", rel, field):
            return self._files.exists(rel, field)

    def list(
        self, rel_dir: str = "", *, recursive: bool = False, field: str = "path"
    ) -> builtins.list[str]:
        """Sorted entries of a folder (``[]`` if it does not exist).

        Non-recursive: child names, folders with a trailing ``/``. Recursive: the files
        below, as ``/``-separated paths relative to ``rel_dir``.
        """
        with _storage_errors("list", rel_dir, field):
            return self._files.list(rel_dir, recursive, field)

    def delete(self, rel: str, *, field: str = "path") -> bool:
        """Delete one file; False if it did not exist. Folders need :meth:`delete_tree`."""
        with _storage_errors("delete", rel, field):
            return self._files.delete(rel, field)

    def delete_tree(self, rel_dir: str, *, field: str = "path") -> bool:
        """Delete a folder and everything below it (never the root); False if absent."""
        with _storage_errors("delete", rel_dir, field):
            return self._files.delete_tree(rel_dir, field)

    def uri(self, rel: str, *, field: str = "path") -> str:
        """The full path (local roots) or URI (fsspec roots) of ``rel``."""
        return self._files.uri(rel, field)

    def local_path(self, rel: str, *, field: str = "path") -> Path:
        """A local path holding ``rel`` (file or folder); :class:`NotFound` if absent.

        Local roots: the artifact itself — do not modify it. fsspec roots: a copy downloaded
        into the cache, reused while the remote object is unchanged.
        """
        with _storage_errors("download", rel, field):
            return self._files.local_path(rel, field)
