"""The trainer SDK: metric files (against the real cloudml-hypertune), context, torch init."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from mlengine.domain.metrics import final_metric, latest_by_tag, parse_metric_lines
from mlengine.trainer import MetricReporter, context

WRITER = textwrap.dedent("""
    import sys
    kind = sys.argv[1]
    reports = [("accuracy", 0.5, 10), ("loss", 0.9, 10), ("accuracy", 0.75, 20), (None, 3.0, 0)]
    if kind == "hypertune":
        import hypertune
        hpt = hypertune.HyperTune()
        for tag, value, step in reports:
            hpt.report_hyperparameter_tuning_metric(tag, value, global_step=step)
    else:
        from mlengine import trainer
        for tag, value, step in reports:
            trainer.report_metric(tag, value, step)
""")


@pytest.mark.parametrize("kind", ["hypertune", "mlengine"])
def test_metric_files_from_both_writers_read_the_same(tmp_path, kind):
    path = tmp_path / kind / "output.metrics"
    env = {**os.environ, "CLOUD_ML_HP_METRIC_FILE": str(path), "CLOUD_ML_TRIAL_ID": "4"}
    subprocess.run([sys.executable, "-c", WRITER, kind], env=env, check=True)
    lines = path.read_text().splitlines()
    assert all(json.loads(line)["trial"] == "4" for line in lines)
    records = parse_metric_lines(path.read_text())
    assert [(r.tag, r.value, r.step) for r in records] == [
        ("accuracy", 0.5, 10),
        ("loss", 0.9, 10),
        ("accuracy", 0.75, 20),
        ("training/hptuning/metric", 3.0, 0),
    ]
    assert final_metric(records, "accuracy").value == 0.75
    assert set(latest_by_tag(records)) == {"accuracy", "loss", "training/hptuning/metric"}


def test_our_lines_are_byte_compatible_with_hypertune(tmp_path):
    """Same keys, same string encodings, keys sorted: a reader cannot tell them apart."""
    ours = MetricReporter(str(tmp_path / "a"), trial_id="2")
    ours.report("auc", 1, step=7)
    entry = json.loads((tmp_path / "a").read_text())
    assert list(entry) == sorted(entry)
    assert entry["auc"] == "1.0" and entry["global_step"] == "7" and entry["trial"] == "2"
    assert entry["checkpoint_path"] == "" and isinstance(entry["timestamp"], float)


def test_reporter_keeps_the_last_100_entries_and_refuses_nan(tmp_path):
    reporter = MetricReporter(str(tmp_path / "m"))
    for step in range(150):
        reporter.report("accuracy", step / 150, step)
    records = parse_metric_lines((tmp_path / "m").read_text())
    assert len(records) == 100 and records[0].step == 50
    with pytest.raises(ValueError, match="finite"):
        reporter.report("accuracy", float("nan"))


def test_partial_last_line_is_ignored_by_the_reader():
    text = '{"accuracy": "0.5", "global_step": "1", "timestamp": 1.0, "trial": "0"}\n{"accur'
    assert [r.value for r in parse_metric_lines(text)] == [0.5]


def test_context_from_tf_config():
    tf_config = {
        "cluster": {"master": ["h:1"], "worker": ["h:2", "h:3"]},
        "task": {"type": "worker", "index": 1, "trial": "5"},
        "job": {"job_name": "trainer.task", "args": ["--x", "--job-dir", "/out"]},
        "environment": "cloud",
    }
    ctx = context(
        {
            "TF_CONFIG": json.dumps(tf_config),
            "CLOUD_ML_JOB_ID": "j",
            "WORLD_SIZE": "3",
            "RANK": "2",
            "CLOUD_ML_HP_METRIC_TAG": "accuracy",
        }
    )
    assert (ctx.job_id, ctx.trial_id, ctx.task_type, ctx.task_index) == ("j", "5", "worker", 1)
    assert ctx.job_dir == "/out" and not ctx.is_chief and ctx.is_distributed
    assert ctx.world_size == 3 and ctx.rank == 2 and ctx.metric_tag == "accuracy"


def test_context_single_process_and_server_style_job():
    ctx = context({})
    assert ctx.is_chief and not ctx.is_distributed and ctx.task_type is None
    server = {"task": {"type": "chief", "index": 0}, "job": {"job_dir": "/jobs/a"}}
    ctx = context({"CLUSTER_SPEC": json.dumps(server)})
    assert ctx.is_chief and ctx.job_dir == "/jobs/a"
    assert context({"TF_CONFIG": "not json"}).task_type is None


TORCH_RANK = textwrap.dedent("""
    import torch, torch.distributed as dist
    from mlengine import trainer
    assert trainer.init_torch_distributed() is True
    t = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(t)
    print(int(t.item()), dist.get_world_size())
    dist.destroy_process_group()
""")


def test_init_torch_distributed_joins_a_real_gloo_group():
    pytest.importorskip("torch")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TORCH_RANK],
            stdout=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "WORLD_SIZE": "2",
                "RANK": str(rank),
            },
        )
        for rank in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == [["3", "2"], ["3", "2"]]


def test_init_torch_distributed_is_a_no_op_for_one_process(monkeypatch):
    from mlengine import trainer

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert trainer.init_torch_distributed() is False
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.delenv("RANK", raising=False)  # a parameter server: no rank, no group
    assert trainer.init_torch_distributed() is False
