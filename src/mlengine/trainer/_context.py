"""Where this replica stands: job, trial, role, cluster, job dir.

Everything comes from the environment the platform (or ``mlengine local train``) sets:
``TF_CONFIG`` first, then ``CLUSTER_SPEC``, then the PyTorch variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PRIMARY_ROLES = frozenset({"master", "chief"})


@dataclass(frozen=True)
class TrainerContext:
    """A snapshot of the replica's environment.

    ``task_type`` is ``None`` for a plain single-process run; ``is_chief`` is then true.
    ``world_size`` counts the processes of the data-parallel group (master + workers).
    """

    job_id: str | None = None
    trial_id: str | None = None
    task_type: str | None = None
    task_index: int = 0
    cluster: dict[str, list[str]] = field(default_factory=dict)
    job_dir: str | None = None
    metric_tag: str | None = None
    world_size: int = 1
    rank: int | None = None
    local_rank: int | None = None
    environment: str | None = None
    job: dict[str, Any] = field(default_factory=dict)

    @property
    def is_chief(self) -> bool:
        """True on the replica that should evaluate, report and export."""
        if self.task_type is not None:
            return self.task_type in PRIMARY_ROLES
        return self.rank in (None, 0)

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1 or any(
            addresses for role, addresses in self.cluster.items() if role not in PRIMARY_ROLES
        )


def _load_json(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _section(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None


def _job_dir_from(job: Mapping[str, Any]) -> str | None:
    for key in ("job_dir", "jobDir"):
        if isinstance(job.get(key), str) and job[key]:
            return str(job[key])
    args = job.get("args")
    if isinstance(args, list):
        for i, arg in enumerate(args):
            if arg == "--job-dir" and i + 1 < len(args):
                return str(args[i + 1])
            if isinstance(arg, str) and arg.startswith("--job-dir="):
                return arg.split("=", 1)[1]
    return None


def context(environ: Mapping[str, str] | None = None) -> TrainerContext:
    """Read the replica's context from ``environ`` (default: ``os.environ``)."""
    env = os.environ if environ is None else environ
    config = _load_json(env.get("TF_CONFIG")) or _load_json(env.get("CLUSTER_SPEC"))
    task = _section(config, "task")
    cluster_raw = _section(config, "cluster")
    cluster = {str(k): [str(a) for a in v] for k, v in cluster_raw.items() if isinstance(v, list)}
    job = _section(config, "job")
    trial = env.get("CLOUD_ML_TRIAL_ID") or (str(task["trial"]) if task.get("trial") else None)
    return TrainerContext(
        job_id=env.get("CLOUD_ML_JOB_ID") or None,
        trial_id=trial,
        task_type=str(task["type"]) if task.get("type") else None,
        task_index=int(task.get("index", 0) or 0),
        cluster=cluster,
        job_dir=_job_dir_from(job),
        metric_tag=env.get("CLOUD_ML_HP_METRIC_TAG") or None,
        world_size=_int(env.get("WORLD_SIZE")) or 1,
        rank=_int(env.get("RANK")),
        local_rank=_int(env.get("LOCAL_RANK")),
        environment=str(config["environment"]) if config.get("environment") else None,
        job=dict(job),
    )
