"""Making a version's packages (``packageUris``) importable in the serving process.

Custom prediction routines live in them, and so may the classes a pickled pipeline refers to.
Each package path is one of:

* a **directory without** ``setup.py``/``pyproject.toml``: put on ``sys.path`` as it is, so the
  modules in it import directly;
* a **wheel**, an **sdist** (``.tar.gz``, ``.tgz``, ``.zip``) or a **project directory**:
  installed with ``pip install --no-deps --target`` into a fresh private temporary directory,
  which is put on ``sys.path``. Dependencies are not installed: what the code imports
  beyond its own packages must be installed on the server (``--target`` would otherwise
  place a second numpy next to the running one).

The paths go to the front of ``sys.path`` and stay there, so code that imports lazily
(inside ``predict``) still finds its modules. Before a routine's module is imported,
:func:`forget_modules` drops modules an earlier routine loaded from such paths under the same
top-level name, so a new version of a package runs its own code; objects of the older
version keep the modules they already hold. Versions that ship different code under the
same module names are only fully isolated in separate server processes.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from mlengine.domain.errors import FailedPrecondition, InvalidArgument

ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".zip")
PROJECT_FILES = ("setup.py", "pyproject.toml")

#: Serialises changes to sys.path and sys.modules made here.
IMPORT_LOCK = threading.RLock()
#: Every sys.path entry this module added: the only places forget_modules forgets from.
_ADDED: list[str] = []


def make_importable(package_paths: Sequence[Path], *, field: str = "packageUris") -> list[str]:
    """Put ``package_paths`` on ``sys.path`` (see the module docstring); the entries added.

    Raises :class:`InvalidArgument` (``field``) for a path that is missing or of an unknown
    kind, :class:`FailedPrecondition` when pip cannot install an archive.
    """
    plain: list[str] = []
    to_install: list[Path] = []
    for path in map(Path, package_paths):
        if path.is_dir() and not any((path / name).is_file() for name in PROJECT_FILES):
            plain.append(str(path.resolve()))
        elif path.is_dir() or (path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)):
            to_install.append(path)
        else:
            raise InvalidArgument(
                f"package {path} does not exist or is not a directory, a wheel or an sdist "
                f"({', '.join(ARCHIVE_SUFFIXES)})",
                field=field,
            )
    entries = plain + ([_install(to_install, field)] if to_install else [])
    with IMPORT_LOCK:
        for entry in reversed(entries):
            if entry not in sys.path:
                sys.path.insert(0, entry)
            if entry not in _ADDED:
                _ADDED.append(entry)
        importlib.invalidate_caches()
    return entries


def forget_modules(top_level: str) -> None:
    """Drop ``top_level`` and its submodules from ``sys.modules`` when they were loaded from
    a path :func:`make_importable` added (never a module of the server's own environment)."""
    with IMPORT_LOCK:
        for name, module in list(sys.modules.items()):
            if name != top_level and not name.startswith(top_level + "."):
                continue
            places = [getattr(module, "__file__", None), *getattr(module, "__path__", [])]
            if any(_under_added(place) for place in places if isinstance(place, str)):
                del sys.modules[name]


def _under_added(place: str) -> bool:
    return any(place.startswith(root + os.sep) for root in _ADDED)


def _install(archives: Sequence[Path], field: str) -> str:
    """pip-install ``archives`` (no dependencies) into a new private directory; its path."""
    target = tempfile.mkdtemp(prefix="mlengine-packages-")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--no-deps",
        "--target",
        target,
    ]
    if importlib.util.find_spec("setuptools") is not None:
        command.append("--no-build-isolation")  # builds sdists offline with the server's setuptools
    result = subprocess.run(
        [*command, *map(str, archives)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise FailedPrecondition(
            f"installing {', '.join(a.name for a in archives)} from {field} failed:\n{tail}",
            field=field,
        )
    return target
