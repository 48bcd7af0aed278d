"""``local train``: run a trainer package's replicas on this machine, in the foreground.

This module decides *what* to start (argv, cwd, environment per replica) from a
:class:`LocalTrainRequest`; :class:`~mlengine.executors.process_group.ProcessGroup` starts it.
The gcloud semantics kept here (spec §4.1): ``python -m MODULE USER_ARGS --job-dir DIR`` with
cwd = the parent of the package path; the primary starts last.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.replicas import ReplicaPlan
from mlengine.executors.cluster_env import ClusterAddresses, RunIdentity, replica_environment
from mlengine.executors.process_group import ReplicaLaunch

_MODULE_PART = "[A-Za-z_][A-Za-z0-9_]*"


@dataclass(frozen=True)
class LocalTrainRequest:
    """Everything ``local train`` needs, already parsed from the command line."""

    module: str
    package_path: Path
    plan: ReplicaPlan
    job_id: str
    run_dir: Path
    python: str
    user_args: Sequence[str] = ()
    job_dir: str | None = None
    start_port: int = 27182
    base_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def workdir(self) -> Path:
        return self.package_path.parent

    def trainer_args(self) -> list[str]:
        """User args verbatim, then ``--job-dir DIR`` as two tokens (gcloud's order)."""
        args = list(self.user_args)
        if self.job_dir is not None:
            args += ["--job-dir", self.job_dir]
        return args


def check_package(module: str, package_path: Path, *, has_packages: bool) -> None:
    """Fail early, naming the flag, when the module cannot be run from the package path.

    A module outside the package folder is allowed when archives were given with
    ``--packages`` (it may come from one of them) or when the runtime can import it.
    """
    import importlib.util
    import re

    if not re.fullmatch(rf"{_MODULE_PART}(\.{_MODULE_PART})*", module):
        raise InvalidArgument(
            f"--module-name {module!r} is not a Python module name; use dotted names such as "
            "'trainer.task'.",
            field="--module-name",
        )
    if not package_path.is_dir():
        raise InvalidArgument(
            f"--package-path {str(package_path)!r} is not a directory; point it at the folder "
            "that holds your trainer package (e.g. examples/census/pytorch/trainer).",
            field="--package-path",
        )
    parts = module.split(".")
    if parts[0] == package_path.name:
        base = package_path.parent.joinpath(*parts)
        if not (base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()):
            raise InvalidArgument(
                f"--module-name {module!r}: neither {base}.py nor {base}/__main__.py exists in "
                f"--package-path {str(package_path)!r}.",
                field="--module-name",
            )
        return
    if not has_packages and importlib.util.find_spec(parts[0]) is None:
        raise InvalidArgument(
            f"--module-name {module!r} is not inside --package-path {str(package_path)!r} "
            f"(whose package is {package_path.name!r}) and cannot be imported; fix the module "
            "name or give the archive that provides it with --packages.",
            field="--module-name",
        )


def absolutize_path_args(
    args: Sequence[str], invocation_dir: Path, workdir: Path | None
) -> tuple[list[str], list[str]]:
    """Make relative path arguments that exist from ``invocation_dir`` absolute.

    The trainer runs in the package's parent folder (gcloud's rule), so an argument such as
    ``--train-files data/adult.data`` typed from elsewhere would point nowhere. An argument
    (or the value after ``=``) is rewritten only when it names an existing file or folder
    relative to where the command was typed and does not exist relative to the trainer's
    working directory (``workdir`` None: the trainer runs in a folder of the server's, so
    any existing relative path is rewritten). Returns the new args and the rewritten originals.
    """
    out: list[str] = []
    changed: list[str] = []
    for arg in args:
        prefix, _, value = (
            arg.partition("=") if arg.startswith("--") and "=" in arg else ("", "", arg)
        )
        candidate = _absolute_if_local(value, invocation_dir, workdir)
        if candidate is None:
            out.append(arg)
        else:
            out.append(f"{prefix}={candidate}" if prefix else candidate)
            changed.append(arg)
    return out, changed


def _absolute_if_local(value: str, invocation_dir: Path, workdir: Path | None) -> str | None:
    if not value or value.startswith("-") or os.path.isabs(value) or "://" in value:
        return None
    if workdir is not None and invocation_dir.resolve() == workdir.resolve():
        return None
    try:
        here = invocation_dir / value
        if here.exists() and (workdir is None or not (workdir / value).exists()):
            return str(here.resolve())
    except (OSError, ValueError):
        return None
    return None


def build_launches(request: LocalTrainRequest) -> list[ReplicaLaunch]:
    """One launch per replica of the plan, with its full environment."""
    plan = request.plan
    addresses = ClusterAddresses.contiguous(plan, start_port=request.start_port)
    args = request.trainer_args()
    identity = RunIdentity(job_id=request.job_id, job={"job_name": request.module, "args": args})
    base = dict(request.base_env)
    replicas = plan.replicas()
    if "OMP_NUM_THREADS" not in base:
        # Replicas share this machine's cores; oversubscribed OpenMP pools crawl.
        base["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(replicas)))
    launches = []
    for replica in replicas:
        env = replica_environment(
            plan,
            replica,
            addresses,
            identity,
            metric_file=str(request.run_dir / f"{replica.name}.metrics"),
            base=base,
        )
        launches.append(
            ReplicaLaunch(
                name=replica.name,
                argv=[request.python, "-m", request.module, *args],
                env=env,
                cwd=str(request.workdir),
            )
        )
    return launches
