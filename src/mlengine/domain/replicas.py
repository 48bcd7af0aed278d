"""Replica plans: which processes a training job (or one trial of it) runs.

A plan is derived from the scale tier and machine types of a TrainingInput
(:func:`plan_for_scale_tier`) or from the flags of ``local train`` (:func:`plan_for_local_train`).
Executors turn a plan into processes; ``mlengine.executors.cluster_env`` turns it into each
replica's environment (TF_CONFIG, CLUSTER_SPEC, the PyTorch variables).

Scale tiers (PRODUCT §4.2):

=========== ======================================================================
BASIC       1 master (n1-standard-4)
STANDARD_1  1 master (n1-highcpu-8), 4 workers (n1-highcpu-8), 3 ps (n1-standard-4)
PREMIUM_1   1 master (n1-highcpu-16), 19 workers (n1-highcpu-16), 11 ps (n1-highmem-8)
BASIC_GPU   1 master (n1-standard-8) with 1 GPU
BASIC_TPU   1 master (n1-standard-4) and 1 ``cloud_tpu`` worker
CUSTOM      masterType, workerCount × workerType, parameterServerCount × parameterServerType,
            evaluatorCount × evaluatorType, each with an optional acceleratorConfig
=========== ======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.machine_types import DEFAULT_MACHINE_TYPE, Resources, resources_for


class ReplicaRole(StrEnum):
    """The role of a replica. The primary is called ``master`` or ``chief`` in TF_CONFIG."""

    MASTER = "master"
    WORKER = "worker"
    PARAMETER_SERVER = "ps"
    EVALUATOR = "evaluator"


#: Roles that are members of the training cluster (evaluators are not, spec §5.2).
CLUSTER_ROLES = (ReplicaRole.MASTER, ReplicaRole.PARAMETER_SERVER, ReplicaRole.WORKER)

#: Machine type used by ``local train``: the replica shares this machine, it requests nothing.
LOCAL_MACHINE_TYPE = "local"


@dataclass(frozen=True)
class Accelerator:
    """``acceleratorConfig``: ``count`` devices of ``type`` (an AcceleratorConfig enum value)."""

    type: str
    count: int


@dataclass(frozen=True)
class ReplicaGroup:
    """``count`` identical replicas of one role."""

    role: ReplicaRole
    count: int
    machine_type: str
    resources: Resources


@dataclass(frozen=True)
class Replica:
    """One process of a plan. ``name`` is the task name logs use: ``worker-replica-1``."""

    role: ReplicaRole
    index: int
    machine_type: str
    resources: Resources

    @property
    def name(self) -> str:
        return f"{self.role.value}-replica-{self.index}"


@dataclass(frozen=True)
class ReplicaPlan:
    """The processes of one training run. Always exactly one master.

    ``use_chief`` writes ``chief`` instead of ``master`` in TF_CONFIG (``useChiefInTfConfig``,
    and ``local train`` when TensorFlow 1.x is absent).
    """

    groups: tuple[ReplicaGroup, ...]
    use_chief: bool = False

    def __post_init__(self) -> None:
        masters = [g for g in self.groups if g.role is ReplicaRole.MASTER]
        if len(masters) != 1 or masters[0].count != 1:
            raise ValueError("a replica plan has exactly one master replica")

    def count(self, role: ReplicaRole) -> int:
        return sum(g.count for g in self.groups if g.role is role)

    @property
    def primary_name(self) -> str:
        """The TF_CONFIG role name of the primary: ``master`` or ``chief``."""
        return "chief" if self.use_chief else "master"

    @property
    def is_distributed(self) -> bool:
        return len(self.replicas()) > 1

    @property
    def world_size(self) -> int:
        """Processes in the PyTorch data-parallel group: the master and the workers."""
        return 1 + self.count(ReplicaRole.WORKER)

    def replicas(self) -> list[Replica]:
        """Every replica, in launch order: master, parameter servers, workers, evaluators."""
        order = (ReplicaRole.MASTER, *CLUSTER_ROLES[1:], ReplicaRole.EVALUATOR)
        out: list[Replica] = []
        for role in order:
            for group in (g for g in self.groups if g.role is role):
                start = sum(1 for r in out if r.role is role)
                out.extend(
                    Replica(role, start + i, group.machine_type, group.resources)
                    for i in range(group.count)
                )
        return out

    def replica(self, name: str) -> Replica:
        for replica in self.replicas():
            if replica.name == name:
                return replica
        raise KeyError(name)

    def total_resources(self) -> Resources:
        total = Resources(0, 0)
        for replica in self.replicas():
            total = total + replica.resources
        return total


@dataclass(frozen=True)
class GroupRequest:
    """What a TrainingInput asks for one role: machine type, count, accelerator."""

    machine_type: str | None = None
    count: int = 0
    accelerator: Accelerator | None = None


_TIERS: dict[str, tuple[tuple[ReplicaRole, int, str, Accelerator | None], ...]] = {
    "BASIC": ((ReplicaRole.MASTER, 1, DEFAULT_MACHINE_TYPE, None),),
    "STANDARD_1": (
        (ReplicaRole.MASTER, 1, "n1-highcpu-8", None),
        (ReplicaRole.WORKER, 4, "n1-highcpu-8", None),
        (ReplicaRole.PARAMETER_SERVER, 3, "n1-standard-4", None),
    ),
    "PREMIUM_1": (
        (ReplicaRole.MASTER, 1, "n1-highcpu-16", None),
        (ReplicaRole.WORKER, 19, "n1-highcpu-16", None),
        (ReplicaRole.PARAMETER_SERVER, 11, "n1-highmem-8", None),
    ),
    "BASIC_GPU": ((ReplicaRole.MASTER, 1, "n1-standard-8", Accelerator("NVIDIA_TESLA_K80", 1)),),
    "BASIC_TPU": (
        (ReplicaRole.MASTER, 1, DEFAULT_MACHINE_TYPE, None),
        (ReplicaRole.WORKER, 1, "cloud_tpu", None),
    ),
}

_FIELDS = {
    ReplicaRole.MASTER: ("masterType", None, "masterConfig"),
    ReplicaRole.WORKER: ("workerType", "workerCount", "workerConfig"),
    ReplicaRole.PARAMETER_SERVER: (
        "parameterServerType",
        "parameterServerCount",
        "parameterServerConfig",
    ),
    ReplicaRole.EVALUATOR: ("evaluatorType", "evaluatorCount", "evaluatorConfig"),
}


def _group(
    role: ReplicaRole, count: int, machine_type: str, acc: Accelerator | None, prefix: str
) -> ReplicaGroup:
    type_field = f"{prefix}{_FIELDS[role][0]}"
    resources = resources_for(machine_type, field=type_field)
    if acc is not None:
        if acc.count < 0:
            count_field = f"{prefix}{_FIELDS[role][2]}.acceleratorConfig.count"
            raise InvalidArgument(
                f"'{count_field}' must be ≥ 0, got {acc.count}.", field=count_field
            )
        resources = resources.plus_accelerators(acc.type, acc.count)
    return ReplicaGroup(role, count, machine_type, resources)


def plan_for_scale_tier(
    scale_tier: str | None,
    requests: dict[ReplicaRole, GroupRequest] | None = None,
    *,
    use_chief: bool = False,
    field_prefix: str = "trainingInput.",
) -> ReplicaPlan:
    """The replica plan of a TrainingInput.

    ``requests`` carries masterType/workerType/… and accelerator configs. For a predefined tier
    only accelerator configs are honoured (type fields are rejected upstream by validation);
    for ``CUSTOM`` every group comes from ``requests`` and ``masterType`` is required.
    Raises :class:`InvalidArgument` naming the field for an unknown tier or machine type.
    """
    tier = (scale_tier or "BASIC").upper()
    requests = requests or {}
    if tier == "CUSTOM":
        groups = [
            _custom_group(role, requests.get(role, GroupRequest()), field_prefix)
            for role in ReplicaRole
        ]
        return ReplicaPlan(tuple(g for g in groups if g.count > 0), use_chief=use_chief)
    if tier not in _TIERS:
        raise InvalidArgument(
            f"Unknown scale tier {scale_tier!r} in '{field_prefix}scaleTier'; use one of "
            f"{', '.join([*_TIERS, 'CUSTOM'])}.",
            field=f"{field_prefix}scaleTier",
        )
    groups = []
    for role, count, machine_type, default_acc in _TIERS[tier]:
        acc = requests.get(role, GroupRequest()).accelerator or default_acc
        groups.append(_group(role, count, machine_type, acc, field_prefix))
    return ReplicaPlan(tuple(groups), use_chief=use_chief)


def _custom_group(role: ReplicaRole, request: GroupRequest, prefix: str) -> ReplicaGroup:
    type_field, count_field, _ = _FIELDS[role]
    count = 1 if role is ReplicaRole.MASTER else request.count
    if count < 0:
        raise InvalidArgument(
            f"'{prefix}{count_field}' must be ≥ 0, got {count}.", field=f"{prefix}{count_field}"
        )
    if count > 0 and not request.machine_type:
        hint = (
            "required when scaleTier is CUSTOM"
            if role is ReplicaRole.MASTER
            else (f"required when '{count_field}' > 0")
        )
        raise InvalidArgument(
            f"'{prefix}{type_field}' is {hint}; set it to a machine type such as 'n1-standard-4'.",
            field=f"{prefix}{type_field}",
        )
    machine_type = request.machine_type or DEFAULT_MACHINE_TYPE
    return _group(role, count, machine_type, request.accelerator, prefix)


def plan_for_local_train(
    *,
    distributed: bool,
    worker_count: int = 2,
    parameter_server_count: int = 2,
    evaluator_count: int = 0,
    use_chief: bool = False,
) -> ReplicaPlan:
    """The plan of ``mlengine local train``: replicas share this machine and request nothing.

    Without ``distributed`` the plan is a single master whatever the counts say (gcloud
    ignores them, with a warning the CLI prints).
    """
    for flag, value in (
        ("--worker-count", worker_count),
        ("--parameter-server-count", parameter_server_count),
        ("--evaluator-count", evaluator_count),
    ):
        if value < 0:
            raise InvalidArgument(f"{flag} must be ≥ 0, got {value}.", field=flag)
    local = Resources(0, 0)
    groups = [ReplicaGroup(ReplicaRole.MASTER, 1, LOCAL_MACHINE_TYPE, local)]
    if distributed:
        groups += [
            ReplicaGroup(
                ReplicaRole.PARAMETER_SERVER, parameter_server_count, LOCAL_MACHINE_TYPE, local
            ),
            ReplicaGroup(ReplicaRole.WORKER, worker_count, LOCAL_MACHINE_TYPE, local),
            ReplicaGroup(ReplicaRole.EVALUATOR, evaluator_count, LOCAL_MACHINE_TYPE, local),
        ]
    return ReplicaPlan(tuple(g for g in groups if g.count > 0), use_chief=use_chief)
