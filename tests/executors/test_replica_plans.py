"""Scale tiers → replica plans, and the machine-type table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.machine_types import resources_for
from mlengine.domain.replicas import (
    Accelerator,
    GroupRequest,
    ReplicaRole,
    plan_for_local_train,
    plan_for_scale_tier,
)


@pytest.mark.parametrize(
    ("tier", "master", "workers", "ps"),
    [
        ("BASIC", 1, 0, 0),
        ("STANDARD_1", 1, 4, 3),
        ("PREMIUM_1", 1, 19, 11),
        ("BASIC_GPU", 1, 0, 0),
        (None, 1, 0, 0),
    ],
)
def test_tiers(tier, master, workers, ps):
    plan = plan_for_scale_tier(tier)
    assert plan.count(ReplicaRole.MASTER) == master
    assert plan.count(ReplicaRole.WORKER) == workers
    assert plan.count(ReplicaRole.PARAMETER_SERVER) == ps


def test_basic_gpu_asks_for_one_gpu():
    assert plan_for_scale_tier("BASIC_GPU").total_resources().gpus == 1


def test_custom_requires_master_type_and_worker_type():
    with pytest.raises(InvalidArgument) as err:
        plan_for_scale_tier("CUSTOM")
    assert err.value.field == "trainingInput.masterType"
    with pytest.raises(InvalidArgument) as err:
        plan_for_scale_tier(
            "CUSTOM",
            {
                ReplicaRole.MASTER: GroupRequest("n1-standard-4"),
                ReplicaRole.WORKER: GroupRequest(None, 2),
            },
        )
    assert err.value.field == "trainingInput.workerType"


def test_custom_plan_with_accelerators():
    plan = plan_for_scale_tier(
        "CUSTOM",
        {
            ReplicaRole.MASTER: GroupRequest("n1-highmem-8", 1, Accelerator("NVIDIA_TESLA_T4", 2)),
            ReplicaRole.WORKER: GroupRequest("complex_model_m_gpu", 3),
            ReplicaRole.EVALUATOR: GroupRequest("n1-standard-4", 1),
        },
    )
    names = [r.name for r in plan.replicas()]
    assert names == [
        "master-replica-0",
        "worker-replica-0",
        "worker-replica-1",
        "worker-replica-2",
        "evaluator-replica-0",
    ]
    assert plan.total_resources().gpus == 2 + 3 * 4
    assert plan.world_size == 4


def test_unknown_machine_type_names_the_field_and_the_fix():
    with pytest.raises(InvalidArgument) as err:
        plan_for_scale_tier("CUSTOM", {ReplicaRole.MASTER: GroupRequest("n1-mega-4")})
    assert err.value.field == "trainingInput.masterType"
    assert "n1-standard-4" in err.value.message


def test_unknown_tier():
    with pytest.raises(InvalidArgument) as err:
        plan_for_scale_tier("STANDARD_2")
    assert err.value.field == "trainingInput.scaleTier"


@given(
    st.sampled_from(["n1-standard", "n1-highmem", "n1-highcpu", "e2-standard", "n2-highmem"]),
    st.integers(1, 96),
)
def test_compute_engine_types_scale_with_vcpus(family, cpus):
    resources = resources_for(f"{family}-{cpus}")
    assert resources.cpus == cpus and resources.memory_gib > 0 and resources.gpus == 0


@given(st.integers(0, 6), st.integers(0, 6), st.integers(0, 3), st.booleans())
def test_local_plans_count_and_name_replicas(workers, ps, evaluators, distributed):
    plan = plan_for_local_train(
        distributed=distributed,
        worker_count=workers,
        parameter_server_count=ps,
        evaluator_count=evaluators,
    )
    names = [r.name for r in plan.replicas()]
    assert names[0] == "master-replica-0" and len(set(names)) == len(names)
    expected = 1 + (workers + ps + evaluators if distributed else 0)
    assert len(names) == expected
    assert plan.world_size == 1 + (workers if distributed else 0)


def test_negative_counts_are_rejected_naming_the_flag():
    with pytest.raises(InvalidArgument) as err:
        plan_for_local_train(distributed=True, worker_count=-1)
    assert err.value.field == "--worker-count"


def test_training_input_to_plan():
    from mlengine.domain.resources import parse_training_input
    from mlengine.domain.training_plans import plan_for_training_input

    ti = parse_training_input(
        {
            "scaleTier": "CUSTOM",
            "masterType": "n1-standard-8",
            "workerType": "n1-highmem-4",
            "workerCount": "2",
            "evaluatorType": "n1-standard-4",
            "evaluatorCount": 1,
            "masterConfig": {"acceleratorConfig": {"type": "NVIDIA_TESLA_T4", "count": "1"}},
            "useChiefInTfConfig": True,
            "pythonModule": "trainer.task",
            "region": "local",
        }
    )
    plan = plan_for_training_input(ti)
    assert [r.name for r in plan.replicas()] == [
        "master-replica-0",
        "worker-replica-0",
        "worker-replica-1",
        "evaluator-replica-0",
    ]
    assert plan.primary_name == "chief"
    assert plan.replica("master-replica-0").resources.gpus == 1
    assert (
        plan_for_training_input(parse_training_input({"scaleTier": "STANDARD_1"})).count(
            ReplicaRole.PARAMETER_SERVER
        )
        == 3
    )
