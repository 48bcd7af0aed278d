"""The environment of each replica of a plan: TF_CONFIG, CLUSTER_SPEC, PyTorch variables.

One function, :func:`replica_environment`, shared by ``local train`` and the server's
executors, so a trainer sees the same contract wherever it runs (PRODUCT §4.2, spec §4.1/§5):

* ``TF_CONFIG`` = ``{"cluster": …, "task": {"type", "index"[, "trial"]}, "job": …,
  "environment": "cloud"}``. The cluster maps ``master`` (or ``chief``), ``ps`` and ``worker``
  to ``host:port`` lists; roles without replicas are left out; evaluators are never in it.
  A single-replica run gets gcloud's ``"task": {}, "cluster": {}``.
* ``CLUSTER_SPEC``: the same document (framework-neutral name used by custom containers).
* For the master and workers of a distributed plan: ``MASTER_ADDR``/``MASTER_PORT`` (the
  master's cluster address), ``WORLD_SIZE`` (1 + workers), ``RANK`` (master 0, worker *i* → *i*+1)
  and ``LOCAL_RANK``. Parameter servers and evaluators get none of these: they are not part of
  a PyTorch data-parallel group.
* ``CLOUD_ML_JOB_ID``, ``CLOUD_ML_TRIAL_ID`` (trials), ``CLOUD_ML_HP_METRIC_TAG``,
  ``CLOUD_ML_HP_METRIC_FILE`` (one file per replica), ``CUDA_VISIBLE_DEVICES`` when GPUs are
  assigned, ``PYTHONUNBUFFERED=1`` so every line reaches the log as it is printed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlengine.domain.replicas import CLUSTER_ROLES, Replica, ReplicaPlan, ReplicaRole

DEFAULT_START_PORT = 27182


@dataclass(frozen=True)
class ClusterAddresses:
    """``host:port`` of every cluster member, keyed by replica name."""

    by_replica: dict[str, str]

    @classmethod
    def contiguous(
        cls, plan: ReplicaPlan, host: str = "localhost", start_port: int = DEFAULT_START_PORT
    ) -> ClusterAddresses:
        """gcloud's layout: master on ``start_port``, then the ps, then the workers."""
        members = [r for r in plan.replicas() if r.role in CLUSTER_ROLES]
        if start_port < 1 or start_port + len(members) - 1 > 65535:
            raise ValueError(f"ports {start_port}..{start_port + len(members) - 1} out of range")
        return cls({r.name: f"{host}:{start_port + i}" for i, r in enumerate(members)})

    def cluster(self, plan: ReplicaPlan) -> dict[str, list[str]]:
        """The TF_CONFIG ``cluster``: role → addresses, primary named master or chief."""
        out: dict[str, list[str]] = {}
        for role in CLUSTER_ROLES:
            addresses = [self.by_replica[r.name] for r in plan.replicas() if r.role is role]
            if addresses:
                key = plan.primary_name if role is ReplicaRole.MASTER else role.value
                out[key] = addresses
        return out

    def master(self, plan: ReplicaPlan) -> tuple[str, int]:
        host, _, port = self.by_replica[plan.replicas()[0].name].rpartition(":")
        return host, int(port)


@dataclass(frozen=True)
class RunIdentity:
    """What identifies a run to its trainer: job, optional trial, metric tag and TF_CONFIG job."""

    job_id: str
    job: Mapping[str, Any] = field(default_factory=dict)
    trial_id: str | None = None
    metric_tag: str | None = None


def tf_config(
    plan: ReplicaPlan, replica: Replica, addresses: ClusterAddresses, identity: RunIdentity
) -> dict[str, Any]:
    """The TF_CONFIG document for ``replica`` (gcloud's empty task/cluster when single)."""
    if not plan.is_distributed:
        task: dict[str, Any] = {}
        cluster: dict[str, list[str]] = {}
        if identity.trial_id is not None:
            task = {"type": plan.primary_name, "index": 0}
    else:
        role = plan.primary_name if replica.role is ReplicaRole.MASTER else replica.role.value
        task = {"type": role, "index": replica.index}
        cluster = addresses.cluster(plan)
    if identity.trial_id is not None:
        task["trial"] = identity.trial_id
    return {"cluster": cluster, "task": task, "job": dict(identity.job), "environment": "cloud"}


def torch_variables(
    plan: ReplicaPlan, replica: Replica, addresses: ClusterAddresses, *, per_replica_gpus: bool
) -> dict[str, str]:
    """MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK/LOCAL_RANK for the data-parallel group.

    Empty for parameter servers and evaluators. ``LOCAL_RANK`` is 0 when each replica gets
    its own ``CUDA_VISIBLE_DEVICES`` (it sees only its devices), else the rank on this host.
    """
    if replica.role not in (ReplicaRole.MASTER, ReplicaRole.WORKER):
        return {}
    host, port = addresses.master(plan)
    rank = 0 if replica.role is ReplicaRole.MASTER else replica.index + 1
    return {
        "MASTER_ADDR": "127.0.0.1" if host == "localhost" else host,
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(plan.world_size),
        "RANK": str(rank),
        "LOCAL_RANK": "0" if per_replica_gpus else str(rank),
    }


def replica_environment(
    plan: ReplicaPlan,
    replica: Replica,
    addresses: ClusterAddresses,
    identity: RunIdentity,
    *,
    metric_file: str,
    gpu_ids: Sequence[int] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The full environment of ``replica``: ``base`` plus the platform's variables.

    Platform variables always win over ``base``, except thread settings such as
    ``OMP_NUM_THREADS``, which the caller puts in ``base`` and which are left as given.
    """
    env = dict(base or {})
    for stale in (
        "MASTER_ADDR",
        "MASTER_PORT",
        "WORLD_SIZE",
        "RANK",
        "LOCAL_RANK",
        "CLOUD_ML_TRIAL_ID",
        "CUDA_VISIBLE_DEVICES",
    ):
        env.pop(stale, None)
    document = json.dumps(tf_config(plan, replica, addresses, identity))
    env.update(
        {
            "TF_CONFIG": document,
            "CLUSTER_SPEC": document,
            "CLOUD_ML_JOB_ID": identity.job_id,
            "CLOUD_ML_HP_METRIC_FILE": metric_file,
            "CLOUD_ML_HP_METRIC_TAG": identity.metric_tag or "training/hptuning/metric",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if identity.trial_id is not None:
        env["CLOUD_ML_TRIAL_ID"] = identity.trial_id
    if gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids)
    if plan.is_distributed:
        env.update(torch_variables(plan, replica, addresses, per_replica_gpus=gpu_ids is not None))
    return env
