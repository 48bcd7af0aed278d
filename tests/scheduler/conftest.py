"""A real control plane without HTTP: SQLite store, artifact store, local executor, scheduler.

The scheduler is driven one tick at a time; package preparation runs inline
(``prepare_workers=0``) so each tick is deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlengine.artifacts.store import ArtifactStore
from mlengine.client.packaging import build_package
from mlengine.domain.machine_types import Resources
from mlengine.domain.resources import Job, JobState
from mlengine.executors.local import LocalProcessExecutor
from mlengine.scheduler.loop import Scheduler
from mlengine.services.jobs import JobService
from mlengine.services.packages import PackageService
from mlengine.services.run_preparation import RunPreparer
from mlengine.stores.sql import SqlMetadataStore
from tests.conftest import REPO_ROOT

PROBE = REPO_ROOT / "tests" / "fixtures" / "probe_trainer" / "trainer"
TUNING = REPO_ROOT / "tests" / "fixtures" / "tuning_trainer" / "trainer"
PROJECT = "proj"


@dataclass
class ControlPlane:
    root: Path
    store: SqlMetadataStore
    executor: LocalProcessExecutor
    jobs: JobService
    scheduler: Scheduler
    package_uri: str

    def submit(self, job_id: str, args: list[str], **training: object) -> Job:
        body = {
            "jobId": job_id,
            "trainingInput": {
                "packageUris": [self.package_uri],
                "pythonModule": "trainer.task",
                "region": "local",
                "args": args,
                **training,
            },
        }
        return self.jobs.create(PROJECT, body)

    def state(self, job_id: str) -> JobState:
        return self.store.get_job(PROJECT, job_id).state

    def run_until(
        self, job_id: str, done: Callable[[JobState], bool], timeout: float = 60.0
    ) -> Job:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.scheduler.tick()
            job = self.store.get_job(PROJECT, job_id).job
            if done(job.state or JobState.STATE_UNSPECIFIED):
                return job
            time.sleep(0.1)
        raise AssertionError(f"{job_id} stuck in {self.state(job_id)}")

    def close(self) -> None:
        self.scheduler.close()
        self.store.close()


def build_plane(
    root: Path,
    package_uri: str | None = None,
    capacity: Resources | None = None,
    strict: bool = False,
    trainer: Path = PROBE,
) -> ControlPlane:
    """Build (or rebuild, after a simulated crash) the control plane over ``root``."""
    store = SqlMetadataStore(f"sqlite:///{root / 'mlengine.db'}")
    artifacts = ArtifactStore(str(root / "artifacts"))
    packages = PackageService(artifacts, root / "cache")
    if package_uri is None:
        archive = build_package(trainer, out_dir=root / "dist")
        package_uri = packages.stage(archive.name, archive.read_bytes())
    executor = LocalProcessExecutor(root / "runs", capacity=capacity, strict_placement=strict)
    preparer = RunPreparer(packages.materialize, root / "envs", root / "work")
    scheduler = Scheduler(
        store,
        executor,
        preparer,
        prepare_workers=0,
        base_env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    return ControlPlane(
        root,
        store,
        executor,
        JobService(store, check_packages=packages.check),
        scheduler,
        package_uri,
    )


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    cp = build_plane(tmp_path)
    yield cp
    cp.close()
