"""Preparing a job's run: its Python environment and its working folder.

Packages named by ``trainingInput.packageUris`` are fetched (``PackageService.materialize``)
and installed into a virtual environment layered over the server's runtime
(``executors.runtime_env``), cached by content hash, so a second job with the same package
starts at once. Runs offline when the runtime already has what the package needs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlengine.domain.resources import TrainingInput
from mlengine.executors.runtime_env import layered_environment


@dataclass(frozen=True)
class PreparedRun:
    """Where and with which interpreter a run's replicas start."""

    python: str
    workdir: str


class RunPreparer:
    """Builds :class:`PreparedRun`\\ s. ``materialize`` turns packageUris into local archives."""

    def __init__(
        self,
        materialize: Callable[[Sequence[str]], Sequence[Path]],
        environments_dir: Path,
        work_root: Path,
    ) -> None:
        self._materialize = materialize
        self._environments_dir = environments_dir
        self._work_root = work_root

    def prepare(self, project: str, job_id: str, attempt: int, ti: TrainingInput) -> PreparedRun:
        """Install the job's packages (cached) and create its empty working folder.

        Raises InvalidArgument / FailedPrecondition with pip's reason when the packages cannot
        be fetched or installed.
        """
        archives = self._materialize(list(ti.package_uris or []))
        python = layered_environment(
            list(archives), self._environments_dir, field="trainingInput.packageUris"
        )
        workdir = self._work_root / project / job_id / str(attempt)
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        return PreparedRun(python=python, workdir=str(workdir))
