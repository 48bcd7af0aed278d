"""Per-run Python environments layered over the runtime mlengine itself runs in.

A run that brings package archives (``--packages``, ``packageUris``) gets a virtual
environment whose ``site-packages`` sees the runtime's own packages (through a ``.pth`` file,
which also works when the runtime is itself a virtualenv) and into which pip installs only
the archives and whatever requirement the runtime does not already satisfy. Environments are
cached by the content hash of the archives and the runtime interpreter, built under a file
lock, and marked complete only after pip succeeded, so a crash never leaves a half-built
environment in use.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Sequence
from pathlib import Path

from mlengine.domain.errors import FailedPrecondition, InvalidArgument

_COMPLETE = ".mlengine-complete"


def archive_digest(archives: Sequence[Path], python: str) -> str:
    """The cache key: interpreter, then each archive's name and bytes, in install order."""
    digest = hashlib.sha256(python.encode())
    for archive in archives:
        digest.update(archive.name.encode())
        with archive.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:24]


def _runtime_site_paths() -> list[str]:
    paths = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    if site.ENABLE_USER_SITE:
        paths.append(site.getusersitepackages())
    return list(dict.fromkeys(p for p in paths if os.path.isdir(p)))


def _env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def layered_environment(
    archives: Sequence[str | Path], cache_root: Path, *, field: str = "--packages"
) -> str:
    """Return the interpreter of an environment holding ``archives`` over the runtime.

    With no archives this is the runtime's own interpreter. Raises :class:`InvalidArgument`
    for a missing archive and :class:`FailedPrecondition` when pip cannot install them
    (the message carries pip's last lines).
    """
    paths = [Path(a).expanduser().resolve() for a in archives]
    if not paths:
        return sys.executable
    for path in paths:
        if not path.is_file():
            raise InvalidArgument(
                f"Package archive {str(path)!r} given in {field} does not exist or is not a file.",
                field=field,
            )
    env_dir = cache_root / archive_digest(paths, sys.executable)
    cache_root.mkdir(parents=True, exist_ok=True)
    with open(cache_root / f"{env_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (env_dir / _COMPLETE).exists():
            _build(env_dir, paths, field)
    return str(_env_python(env_dir))


def _build(env_dir: Path, archives: list[Path], field: str) -> None:
    shutil.rmtree(env_dir, ignore_errors=True)
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    purelib = subprocess.run(
        [
            str(_env_python(env_dir)),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Runtime packages go after the environment's own, so an archive can override them.
    # addsitedir (not a bare path) so the runtime's own .pth files, such as editable
    # installs, are processed too.
    lines = [f"import site; site.addsitedir({path!r})" for path in _runtime_site_paths()]
    Path(purelib, "_mlengine_runtime.pth").write_text("\n".join(lines) + "\n")
    command = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(_env_python(env_dir)),
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
    ]
    if importlib.util.find_spec("setuptools") is not None:
        command.append("--no-build-isolation")  # works offline when the runtime has setuptools
    result = subprocess.run([*command, *map(str, archives)], capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(env_dir, ignore_errors=True)
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise FailedPrecondition(
            f"Installing {', '.join(a.name for a in archives)} from {field} failed:\n{tail}",
            field=field,
        )
    (env_dir / _COMPLETE).write_text("ok\n")
