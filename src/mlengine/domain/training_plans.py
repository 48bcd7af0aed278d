"""A validated TrainingInput → its :class:`~mlengine.domain.replicas.ReplicaPlan`.

Kept apart from ``replicas.py`` so that ``local train``, which needs plans but not the API
schemas, does not pay for importing pydantic at start-up.
"""

from __future__ import annotations

from mlengine.domain.replicas import (
    Accelerator,
    GroupRequest,
    ReplicaPlan,
    ReplicaRole,
    plan_for_scale_tier,
)
from mlengine.domain.resources import ReplicaConfig, TrainingInput


def _accelerator(config: ReplicaConfig | None) -> Accelerator | None:
    acc = config.accelerator_config if config is not None else None
    if acc is None or not acc.count or acc.type is None:
        return None
    return Accelerator(str(acc.type.value), int(acc.count))


def plan_for_training_input(training_input: TrainingInput) -> ReplicaPlan:
    """The replica plan of ``training_input`` (scaleTier default BASIC).

    Raises :class:`~mlengine.domain.errors.InvalidArgument` naming the field for an unknown
    machine type or a CUSTOM tier without ``masterType``.
    """
    ti = training_input
    requests = {
        ReplicaRole.MASTER: GroupRequest(ti.master_type, 1, _accelerator(ti.master_config)),
        ReplicaRole.WORKER: GroupRequest(
            ti.worker_type, int(ti.worker_count or 0), _accelerator(ti.worker_config)
        ),
        ReplicaRole.PARAMETER_SERVER: GroupRequest(
            ti.parameter_server_type,
            int(ti.parameter_server_count or 0),
            _accelerator(ti.parameter_server_config),
        ),
        ReplicaRole.EVALUATOR: GroupRequest(
            ti.evaluator_type, int(ti.evaluator_count or 0), _accelerator(ti.evaluator_config)
        ),
    }
    tier = ti.scale_tier.value if ti.scale_tier is not None else None
    return plan_for_scale_tier(tier, requests, use_chief=bool(ti.use_chief_in_tf_config))
