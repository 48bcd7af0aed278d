"""The one path-containment check: every user-supplied path goes through here.

A *relative artifact path* is what a user may name inside the artifact root (an upload's
file name, a path in an artifact route, a package URI). :func:`contain` and
:func:`contain_uri` accept one only when every reading of it is safe:

* it is text without NUL or other control characters and without backslashes (``\\`` is
  never a separator here, so ``..\\x`` cannot sneak past on any platform);
* it is not absolute (``/etc/passwd``) and has no drive letter (``C:x``);
* its ``/``-separated segments are neither empty (``a//b``), ``.`` nor ``..`` — checked on
  the value as given, on every percent-decoding of it (``%2e%2e``, ``%252e%252e`` …, decoded
  until stable) and on its NFKC form (full-width ``．．``), then again after normalisation;
* for local roots, the path with symbolic links resolved lies inside the resolved root
  (a symlinked folder pointing out of the root is refused).

The value itself is used verbatim (no decoding), so a file named ``100%25`` keeps its name;
because every decoding was checked, no layer that decodes it later can be led outside.
The empty path names the root itself. A trailing ``/`` is allowed (``models/m1/``).

:func:`validate_user_local_path` is the companion for paths a user points at on the
server's own disk (a version origin, a local job dir, a package file): absolute, no ``..``,
no control characters, existing with the right kind, and inside an allow-list when one is
configured.

Symlinks are resolved when the check runs; a link swapped in afterwards by someone who can
write inside the root is outside this check's reach (only the server writes there).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

from mlengine.domain.errors import InvalidArgument, PermissionDenied

MAX_PATH_LENGTH = 4096
MAX_SEGMENT_LENGTH = 255
#: Percent-decoding stops here; a value still changing after this many rounds is refused.
MAX_DECODE_ROUNDS = 8

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _refuse(field: str, value: object, rule: str) -> InvalidArgument:
    shown = repr(value)
    if len(shown) > 200:
        shown = shown[:197] + "..."
    return InvalidArgument(f"{field} {shown} is not allowed: {rule}.", field=field)


def _decodings(value: str, field: str) -> list[str]:
    """The value, each successive percent-decoding of it, and their NFKC forms."""
    forms = [value]
    for _ in range(MAX_DECODE_ROUNDS):
        decoded = unquote(forms[-1], errors="strict") if "%" in forms[-1] else forms[-1]
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    else:
        raise _refuse(field, value, "it is percent-encoded too many times")
    return forms + [unicodedata.normalize("NFKC", f) for f in forms]


def _check_form(form: str, value: str, field: str) -> None:
    def refuse(rule: str) -> InvalidArgument:
        return _refuse(field, value, rule if form == value else f"{rule} (read as {form!r})")

    if _CONTROL.search(form):
        raise refuse("it contains NUL or other control characters")
    if "\\" in form:
        raise refuse("backslashes are not path separators here; use '/'")
    if form.startswith("/"):
        raise refuse("it must be relative, not an absolute path")
    if _DRIVE.match(form):
        raise refuse("it must be relative, without a drive letter")
    segments = form.removesuffix("/").split("/") if form else []
    for segment in segments:
        if segment == "..":
            raise refuse("'..' segments are not allowed")
        if segment in ("", "."):
            raise refuse("empty and '.' path segments are not allowed")
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_LENGTH:
            raise refuse(f"a path segment is longer than {MAX_SEGMENT_LENGTH} bytes")


def checked_relative_path(user_path: str, *, field: str) -> str:
    """Return ``user_path`` (without a trailing ``/``) if it is a safe relative path.

    Pure string rules, shared by local and fsspec roots; raises :class:`InvalidArgument`
    naming ``field``, the value and the rule it breaks.
    """
    if not isinstance(user_path, str):
        raise _refuse(field, user_path, "it must be a string")
    if len(user_path) > MAX_PATH_LENGTH:
        raise _refuse(field, user_path, f"it is longer than {MAX_PATH_LENGTH} characters")
    if _SCHEME.match(user_path):
        raise _refuse(field, user_path, "it must be a path inside the store, not a URI")
    try:
        forms = _decodings(user_path, field)
    except UnicodeDecodeError:
        raise _refuse(field, user_path, "its percent-escapes do not decode to UTF-8") from None
    for form in forms:
        _check_form(form, user_path, field)
    relative = user_path.removesuffix("/")
    # Belt and braces: normalisation must neither climb out nor change the meaning.
    if relative and os.path.normpath(relative) != relative:
        raise _refuse(field, user_path, "it is not in normal form")
    return relative


def contain(root: str | Path, user_path: str, *, field: str) -> Path:
    """The absolute path of ``user_path`` inside the local folder ``root``.

    Symbolic links are resolved (the root's own too); the result is the resolved path and is
    always ``root`` itself or below it. Raises :class:`InvalidArgument` otherwise.
    """
    relative = checked_relative_path(user_path, field=field)
    base = Path(root).resolve()
    resolved = (base / relative).resolve() if relative else base
    if resolved != base and not resolved.is_relative_to(base):
        raise _refuse(field, user_path, "it leads outside the artifact root through a symlink")
    return resolved


def contain_uri(root_uri: str, user_path: str, *, field: str) -> str:
    """The URI of ``user_path`` under ``root_uri`` (an fsspec URI or a local folder).

    ``file://`` roots and plain folders get the local check (symlinks included) and come back
    in the same form as the root; other schemes are joined as ``root/relative``.
    """
    if root_uri.startswith("file://"):
        return "file://" + str(contain(root_uri.removeprefix("file://"), user_path, field=field))
    if not _SCHEME.match(root_uri):
        return str(contain(root_uri, user_path, field=field))
    relative = checked_relative_path(user_path, field=field)
    base = root_uri.rstrip("/")
    return f"{base}/{relative}" if relative else base


def validate_user_local_path(
    path: str | Path,
    *,
    field: str,
    must_exist: bool = True,
    kind: Literal["directory", "file"] = "directory",
    allowed_roots: Sequence[str | Path] | None = None,
) -> Path:
    """Check a path a user points at on the server's own disk; return it resolved.

    The path must be absolute (``file://`` is accepted and stripped), free of control
    characters and ``..`` segments; when ``must_exist`` it must exist and be a ``kind``.
    With ``allowed_roots`` (None: no restriction), the resolved path must lie inside one of
    them, else :class:`PermissionDenied`. Other failures raise :class:`InvalidArgument`.
    """
    if not isinstance(path, str | Path) or not str(path):
        raise _refuse(field, path, "it must be a non-empty path")
    text = os.fspath(path).removeprefix("file://")
    if _CONTROL.search(text):
        raise _refuse(field, path, "it contains NUL or other control characters")
    if not text.startswith("/"):
        raise _refuse(field, path, "it must be an absolute path on the server")
    if ".." in text.split("/"):
        raise _refuse(field, path, "'..' segments are not allowed")
    resolved = Path(text).resolve()
    if allowed_roots is not None and not any(
        resolved.is_relative_to(Path(r).resolve()) for r in allowed_roots
    ):
        raise PermissionDenied(
            f"{field} {str(path)!r} is outside the folders this server may read "
            f"({', '.join(map(str, allowed_roots)) or 'none configured'}).",
            field=field,
        )
    if must_exist:
        if not resolved.exists():
            raise _refuse(field, path, "it does not exist on the server")
        if kind == "directory" and not resolved.is_dir():
            raise _refuse(field, path, "it must be a directory")
        if kind == "file" and not resolved.is_file():
            raise _refuse(field, path, "it must be a regular file")
    return resolved
