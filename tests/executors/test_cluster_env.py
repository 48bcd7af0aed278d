"""TF_CONFIG, CLUSTER_SPEC and the PyTorch variables, exactly, for every replica type."""

from __future__ import annotations

import json

import pytest

from mlengine.domain.replicas import (
    Accelerator,
    GroupRequest,
    ReplicaRole,
    plan_for_local_train,
    plan_for_scale_tier,
)
from mlengine.executors.cluster_env import (
    ClusterAddresses,
    RunIdentity,
    replica_environment,
    tf_config,
)

JOB = {"job_name": "trainer.task", "args": ["--train-files", "x", "--job-dir", "out"]}


def _envs(plan, **kwargs):
    addresses = ClusterAddresses.contiguous(plan, start_port=27182)
    identity = RunIdentity(job_id="j1", job=JOB, **kwargs)
    return {
        r.name: replica_environment(
            plan,
            r,
            addresses,
            identity,
            metric_file=f"/m/{r.name}",
            base={"PATH": "/bin", "RANK": "stale"},
        )
        for r in plan.replicas()
    }


def test_single_replica_matches_gcloud_local_train():
    plan = plan_for_local_train(distributed=False)
    env = _envs(plan)["master-replica-0"]
    assert json.loads(env["TF_CONFIG"]) == {
        "job": JOB,
        "task": {},
        "cluster": {},
        "environment": "cloud",
    }
    assert env["CLUSTER_SPEC"] == env["TF_CONFIG"]
    for var in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        assert var not in env  # a stale RANK from the caller's shell is dropped too
    assert env["CLOUD_ML_JOB_ID"] == "j1"
    assert env["CLOUD_ML_HP_METRIC_FILE"] == "/m/master-replica-0"
    assert env["PATH"] == "/bin"


def test_distributed_layout_matches_the_spec_example():
    plan = plan_for_local_train(distributed=True, worker_count=2, parameter_server_count=2)
    envs = _envs(plan)
    cluster = {
        "master": ["localhost:27182"],
        "ps": ["localhost:27183", "localhost:27184"],
        "worker": ["localhost:27185", "localhost:27186"],
    }
    assert json.loads(envs["worker-replica-1"]["TF_CONFIG"]) == {
        "job": JOB,
        "task": {"type": "worker", "index": 1},
        "cluster": cluster,
        "environment": "cloud",
    }
    assert json.loads(envs["master-replica-0"]["TF_CONFIG"])["task"] == {
        "type": "master",
        "index": 0,
    }
    assert json.loads(envs["ps-replica-1"]["TF_CONFIG"])["task"] == {"type": "ps", "index": 1}


@pytest.mark.parametrize(
    ("name", "rank"), [("master-replica-0", 0), ("worker-replica-0", 1), ("worker-replica-1", 2)]
)
def test_torch_variables_for_master_and_workers(name, rank):
    plan = plan_for_local_train(distributed=True, worker_count=2, parameter_server_count=1)
    env = _envs(plan)[name]
    assert env["MASTER_ADDR"] == "127.0.0.1"
    assert env["MASTER_PORT"] == "27182"
    assert env["WORLD_SIZE"] == "3"
    assert env["RANK"] == str(rank)
    assert env["LOCAL_RANK"] == str(rank)


def test_ps_and_evaluators_get_no_torch_variables_and_evaluators_are_not_in_the_cluster():
    plan = plan_for_local_train(
        distributed=True, worker_count=1, parameter_server_count=1, evaluator_count=2
    )
    envs = _envs(plan)
    for name in ("ps-replica-0", "evaluator-replica-0", "evaluator-replica-1"):
        assert "RANK" not in envs[name] and "WORLD_SIZE" not in envs[name]
    config = json.loads(envs["evaluator-replica-1"]["TF_CONFIG"])
    assert config["task"] == {"type": "evaluator", "index": 1}
    assert "evaluator" not in config["cluster"]
    assert config["cluster"] == {
        "master": ["localhost:27182"],
        "ps": ["localhost:27183"],
        "worker": ["localhost:27184"],
    }


def test_chief_replaces_master_when_asked():
    plan = plan_for_local_train(
        distributed=True, worker_count=1, parameter_server_count=0, use_chief=True
    )
    config = json.loads(_envs(plan)["master-replica-0"]["TF_CONFIG"])
    assert config["task"] == {"type": "chief", "index": 0}
    assert config["cluster"] == {"chief": ["localhost:27182"], "worker": ["localhost:27183"]}


def test_trial_id_reaches_task_and_environment():
    plan = plan_for_scale_tier("BASIC")
    env = _envs(plan, trial_id="3", metric_tag="accuracy")["master-replica-0"]
    assert json.loads(env["TF_CONFIG"])["task"] == {"type": "master", "index": 0, "trial": "3"}
    assert env["CLOUD_ML_TRIAL_ID"] == "3"
    assert env["CLOUD_ML_HP_METRIC_TAG"] == "accuracy"


def test_gpu_assignment_sets_visible_devices_and_local_rank_zero():
    plan = plan_for_scale_tier(
        "CUSTOM",
        {
            ReplicaRole.MASTER: GroupRequest("n1-standard-8", 1, Accelerator("NVIDIA_TESLA_T4", 1)),
            ReplicaRole.WORKER: GroupRequest("n1-standard-8", 1, Accelerator("NVIDIA_TESLA_T4", 1)),
        },
    )
    addresses = ClusterAddresses.contiguous(plan)
    worker = plan.replica("worker-replica-0")
    env = replica_environment(
        plan, worker, addresses, RunIdentity("j"), metric_file="/m", gpu_ids=[1]
    )
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["LOCAL_RANK"] == "0" and env["RANK"] == "1"


def test_standard_1_tier_cluster_has_every_role():
    plan = plan_for_scale_tier("STANDARD_1")
    config = tf_config(
        plan, plan.replica("ps-replica-2"), ClusterAddresses.contiguous(plan), RunIdentity("j")
    )
    assert [len(config["cluster"][k]) for k in ("master", "worker", "ps")] == [1, 4, 3]
    assert config["task"] == {"type": "ps", "index": 2}
