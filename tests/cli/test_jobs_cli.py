"""``mlengine jobs``: flags and rendering in-process, then end to end against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from mlengine.cli.errors import run_cli
from mlengine.cli.jobs import log_lines, sort_resources
from mlengine.cli.jobs_submit import build_training_job
from mlengine.cli.main import cli
from mlengine.cli.output import parse_format, render
from tests.client.test_sdk import (
    fake_client,
    free_port,
    new_job_id,
    server_process,
    wait_for,
    write_trainer,
)

JOB = {
    "jobId": "census_1",
    "state": "SUCCEEDED",
    "createTime": "2024-03-07T17:13:34Z",
    "startTime": "2024-03-07T17:13:40Z",
    "endTime": "2024-03-07T17:20:00Z",
    "labels": {"team": "a"},
    "trainingInput": {
        "scaleTier": "BASIC",
        "region": "local",
        "pythonModule": "trainer.task",
        "packageUris": ["file:///p.tar.gz"],
        "args": ["--x", "1"],
    },
    "trainingOutput": {
        "completedTrialCount": "2",
        "isHyperparameterTuningJob": True,
        "trials": [
            {
                "trialId": "2",
                "state": "SUCCEEDED",
                "hyperparameters": {"lr": "0.1"},
                "finalMetric": {"trainingStep": "100", "objectiveValue": 0.91},
            },
            {
                "trialId": "1",
                "state": "SUCCEEDED",
                "hyperparameters": {"lr": "0.9"},
                "finalMetric": {"trainingStep": "100", "objectiveValue": 0.52},
            },
        ],
    },
}


def invoke(
    args: list[str], monkeypatch: pytest.MonkeyPatch | None = None, handler: Any = None
) -> tuple[int, str, str]:
    """Run the CLI in-process through run_cli (the real exit-code mapping)."""
    if handler is not None and monkeypatch is not None:
        monkeypatch.setattr("mlengine.cli.jobs.open_client", lambda ctx: fake_client(handler))
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = run_cli(cli, args)
    return code, out.getvalue().decode(), err.getvalue().decode()


# -- building the Job ---------------------------------------------------------------------


def test_config_then_flags_then_user_args(tmp_path: Path) -> None:
    config = {
        "jobId": "ignored",
        "labels": {"source": "config", "keep": "yes"},
        "trainingInput": {
            "pythonModule": "config.task",
            "args": ["--from-config"],
            "scaleTier": "STANDARD_1",
            "region": "europe",
            "masterConfig": {"imageUri": "kept"},
        },
    }
    flags = {
        "module_name": "trainer.task",
        "labels": {"source": "flag"},
        "master_accelerator": {"type": "NVIDIA_TESLA_T4", "count": "1"},
        "job_dir": "out",
        "workerCount": 2,
    }
    body = build_training_job("j1", config, flags, ["--user"])
    ti = body["trainingInput"]
    assert body["jobId"] == "j1"
    assert body["labels"] == {"source": "flag", "keep": "yes"}
    assert ti["pythonModule"] == "trainer.task"
    assert ti["args"] == ["--user"]
    assert ti["scaleTier"] == "STANDARD_1" and ti["region"] == "europe"
    assert ti["masterConfig"] == {
        "imageUri": "kept",
        "acceleratorConfig": {"type": "NVIDIA_TESLA_T4", "count": "1"},
    }
    assert ti["workerCount"] == "2"
    assert ti["jobDir"] == str(Path("out").absolute())
    assert config["trainingInput"]["args"] == ["--from-config"]  # the input is not mutated

    kept = build_training_job("j2", config, {}, [])
    assert kept["trainingInput"]["args"] == ["--from-config"]
    custom = build_training_job("j3", {}, {"masterType": "n1-standard-4"}, [])
    assert custom["trainingInput"]["scaleTier"] == "CUSTOM"
    assert custom["trainingInput"]["region"] == "local"


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--scale-tier", "huge"], "--scale-tier"),
        (["--master-accelerator", "type=nvidia-tesla-x1"], "--master-accelerator"),
        (["--worker-accelerator", "count=2"], "--worker-accelerator"),
        (["--worker-count", "2"], "--worker-machine-type"),
        (["--parameter-server-machine-type", "n1-standard-4"], "--parameter-server-count"),
        (["--scale-tier", "basic", "--master-machine-type", "n1-standard-4"], "--scale-tier"),
        (["--labels", "Bad Key=1"], "--labels"),
        (["--worker-count", "-1"], "--worker-count"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--packages", "/no/such/archive.tar.gz"], "--packages"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], flag: str
) -> None:
    package = write_trainer(tmp_path)
    monkeypatch.setenv("MLENGINE_SERVER", f"http://127.0.0.1:{free_port()}")
    base = [
        "jobs",
        "submit",
        "training",
        "j1",
        "--module-name",
        "trainer.task",
        "--package-path",
        str(package),
    ]
    code, _, err = invoke([*base, *args])
    assert code == 2, err
    assert flag in err


def test_a_bad_job_id_is_refused_before_anything_is_uploaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLENGINE_SERVER", f"http://127.0.0.1:{free_port()}")
    code, _, err = invoke(
        [
            "jobs",
            "submit",
            "training",
            "census-1",
            "--module-name",
            "m",
            "--package-path",
            str(write_trainer(tmp_path)),
        ]
    )
    assert code == 2 and "JOB" in err and "census_1" in err  # the suggested fix


def test_module_and_package_are_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLENGINE_SERVER", f"http://127.0.0.1:{free_port()}")
    code, _, err = invoke(["jobs", "submit", "training", "j1", "--package-path", str(tmp_path)])
    assert code == 2 and "--module-name" in err
    code, _, err = invoke(["jobs", "submit", "training", "j1", "--module-name", "m"])
    assert code == 2 and "--package-path" in err
    config = tmp_path / "c.yaml"
    config.write_text("- not a job\n")
    code, _, err = invoke(["jobs", "submit", "training", "j1", "--config", str(config)])
    assert code == 2 and "--config" in err


# -- rendering ----------------------------------------------------------------------------


def test_formats_render_the_wire_form(capsys: pytest.CaptureFixture[str]) -> None:
    render(JOB, parse_format("json"))
    assert json.loads(capsys.readouterr().out) == JOB
    render([JOB], parse_format("yaml"))
    assert yaml.safe_load(capsys.readouterr().out) == [JOB]
    render(JOB, parse_format("value(jobId,state,trainingInput.args,labels)"))
    assert capsys.readouterr().out == "census_1\tSUCCEEDED\t--x;1\tteam=a\n"
    render([JOB], parse_format("table(jobId,trainingInput.scaleTier)"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["JOB_ID", "SCALE_TIER"]
    assert lines[1].split() == ["census_1", "BASIC"]


def test_bad_format_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = invoke(["jobs", "list", "--format", "xml"])
    assert code == 2 and "--format" in err


def test_describe_summarize_and_list_table(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/jobs"):
            return httpx.Response(200, json={"jobs": [JOB, {**JOB, "jobId": "census_0"}]})
        return httpx.Response(200, json=JOB)

    code, out, _ = invoke(["jobs", "describe", "census_1", "--summarize"], monkeypatch, handler)
    assert code == 0
    for title in (
        "Job Overview",
        "Training Input Summary",
        "Training Output Summary",
        "Training Output Trials",
    ):
        assert title in out
    trials = out.split("Training Output Trials")[1].strip().splitlines()
    assert trials[0].split() == ["TRIAL", "STATE", "OBJECTIVE_VALUE", "STEP", "lr"]
    assert [row.split()[0] for row in trials[1:]] == ["2", "1"]  # best first, as the API sends
    assert "0.91" in out and "lr" in out.lower()

    code, out, _ = invoke(
        ["jobs", "list", "--sort-by", "jobId", "--limit", "1"], monkeypatch, handler
    )
    lines = out.splitlines()
    assert lines[0].split() == ["JOB_ID", "STATUS", "CREATED"]
    assert lines[1].split()[:2] == ["census_0", "SUCCEEDED"] and len(lines) == 2


def test_log_line_format_and_sorting() -> None:
    entry = {
        "severity": "INFO",
        "time": "2024-01-01T00:00:00Z",
        "taskName": "master-replica-0",
        "trialId": None,
        "message": "a\nb",
    }
    assert log_lines(entry, allow_multiline=False) == [
        "INFO  2024-01-01T00:00:00Z  master-replica-0    a",
        "INFO  2024-01-01T00:00:00Z  master-replica-0    b",
    ]
    assert len(log_lines({**entry, "trialId": "3"}, allow_multiline=True)) == 1
    items: list[Any] = [{"n": "10"}, {"n": "9"}, {}]
    assert [i.get("n") for i in sort_resources(items, "~n")] == ["10", "9", None]


# -- end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_process(tmp_path_factory.mktemp("cli-server") / "home") as url:
        yield url


@pytest.fixture(scope="module")
def trainer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trainer(tmp_path_factory.mktemp("cli-trainer"))


def mlengine(server: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlengine.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "MLENGINE_SERVER": server},
    )


def submit(
    server: str, trainer: Path, job_id: str, *extra: str, user_args: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    args = [
        "jobs",
        "submit",
        "training",
        job_id,
        "--module-name",
        "trainer.task",
        "--package-path",
        str(trainer),
        *extra,
    ]
    if user_args:
        args += ["--", *user_args]
    return mlengine(server, *args)


def describe(server: str, job_id: str) -> dict[str, Any]:
    done = mlengine(server, "jobs", "describe", job_id, "--format", "json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def master_messages(stdout: str) -> list[str]:
    out = []
    for line in stdout.splitlines():
        fields = line.split("  ", 4)
        if len(fields) == 5 and fields[2] == "master-replica-0":
            out.append(fields[4])
    return out


def test_submit_stream_logs_exit_codes_follow_the_job(server: str, trainer: Path) -> None:
    ok_id = new_job_id("ok")
    ok = submit(server, trainer, ok_id, "--stream-logs", user_args=("--lines", "4"))
    assert ok.returncode == 0, ok.stderr
    assert f"Job [{ok_id}] submitted successfully." in ok.stderr
    messages = master_messages(ok.stdout)
    assert [m for m in messages if m.startswith("line ")] == [f"line {i}" for i in range(4)]
    assert messages[-1] == "LAST LINE exit=0"
    assert "SUCCEEDED" in ok.stderr

    bad_id = new_job_id("bad")
    bad = submit(server, trainer, bad_id, "--stream-logs", user_args=("--exit-code", "3"))
    assert bad.returncode == 1, bad.stderr
    assert master_messages(bad.stdout)[-1] == "LAST LINE exit=3"
    assert "FAILED" in bad.stderr


def test_submit_then_read_commands(server: str, trainer: Path) -> None:
    job_id = new_job_id("read")
    done = submit(server, trainer, job_id, "--labels", "suite=cli", user_args=("--lines", "2"))
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout) == {"jobId": job_id, "state": "QUEUED"}
    for hint in ("describe", "stream-logs", "cancel"):
        assert f"mlengine jobs {hint} {job_id}" in done.stderr

    logs = mlengine(server, "jobs", "stream-logs", job_id, "--polling-interval", "0.2")
    assert logs.returncode == 0, logs.stderr
    assert master_messages(logs.stdout)[-3:] == ["line 0", "line 1", "LAST LINE exit=0"]
    only_master = mlengine(server, "jobs", "stream-logs", job_id, "--task-name", "service")
    tasks = {line.split("  ")[2] for line in only_master.stdout.splitlines()}
    assert tasks == {"service"}

    assert describe(server, job_id)["state"] == "SUCCEEDED"
    as_yaml = mlengine(server, "jobs", "describe", job_id)
    assert yaml.safe_load(as_yaml.stdout)["jobId"] == job_id
    summary = mlengine(server, "jobs", "describe", job_id, "--summarize")
    assert "Job Overview" in summary.stdout and "Training Input Summary" in summary.stdout

    table = mlengine(server, "jobs", "list", "--filter", f"jobId:{job_id}*")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["JOB_ID", "STATUS", "CREATED"]
    assert lines[1].split()[:2] == [job_id, "SUCCEEDED"]
    listed = json.loads(mlengine(server, "jobs", "list", "--format", "json").stdout)
    assert job_id in [j["jobId"] for j in listed]
    listed_yaml = yaml.safe_load(mlengine(server, "jobs", "list", "--format", "yaml").stdout)
    assert job_id in [j["jobId"] for j in listed_yaml]
    value = mlengine(
        server, "jobs", "list", "--filter", f"jobId:{job_id}", "--format", "value(jobId,state)"
    )
    assert value.stdout == f"{job_id}\tSUCCEEDED\n"


def test_update_labels(server: str, trainer: Path) -> None:
    job_id = new_job_id("labels")
    assert submit(server, trainer, job_id, "--labels", "a=1").returncode == 0

    def labels(*flags: str) -> dict[str, str]:
        done = mlengine(server, "jobs", "update", job_id, *flags, "--format", "json")
        assert done.returncode == 0, done.stderr
        return describe(server, job_id).get("labels") or {}

    assert labels("--update-labels", "b=2,c=3") == {"a": "1", "b": "2", "c": "3"}
    assert labels("--remove-labels", "a,zzz") == {"b": "2", "c": "3"}
    assert labels("--clear-labels", "--update-labels", "d=4") == {"d": "4"}
    assert labels("--clear-labels") == {}
    nothing = mlengine(server, "jobs", "update", job_id)
    assert nothing.returncode == 2 and "--update-labels" in nothing.stderr


def test_cancel_a_running_job(server: str, trainer: Path) -> None:
    job_id = new_job_id("cancel")
    assert submit(server, trainer, job_id, user_args=("--sleep", "60")).returncode == 0
    wait_for(lambda: describe(server, job_id)["state"] == "RUNNING", what="RUNNING")
    cancelled = mlengine(server, "jobs", "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert job_id in cancelled.stderr
    wait_for(lambda: describe(server, job_id)["state"] == "CANCELLED", what="CANCELLED")
    again = mlengine(server, "jobs", "cancel", job_id)
    assert again.returncode == 6 and "FAILED_PRECONDITION" in again.stderr


def test_ctrl_c_stops_following_not_the_job(server: str, trainer: Path) -> None:
    job_id = new_job_id("sigint")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlengine.cli",
            "jobs",
            "submit",
            "training",
            job_id,
            "--module-name",
            "trainer.task",
            "--package-path",
            str(trainer),
            "--stream-logs",
            "--polling-interval",
            "0.2",
            "--",
            "--sleep",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLENGINE_SERVER": server},
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "line 2" in line:
                break
        else:
            pytest.fail("no log line before the deadline")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "continues" in err and f"mlengine jobs cancel {job_id}" in err
    assert describe(server, job_id)["state"] == "RUNNING"
    assert mlengine(server, "jobs", "cancel", job_id).returncode == 0


def test_config_file_merge(server: str, trainer: Path, tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "labels": {"source": "config", "keep": "yes"},
                "training_input": {
                    "python_module": "not.this",
                    "scale_tier": "BASIC",
                    "args": ["--lines", "1"],
                },
            }
        )
    )
    overridden = new_job_id("merged")
    done = submit(
        server,
        trainer,
        overridden,
        "--config",
        str(config),
        "--labels",
        "source=flag",
        "--job-dir",
        "out",
        user_args=("--lines", "2"),
    )
    assert done.returncode == 0, done.stderr
    job = describe(server, overridden)
    assert job["labels"] == {"source": "flag", "keep": "yes"}
    ti = job["trainingInput"]
    assert ti["pythonModule"] == "trainer.task" and ti["scaleTier"] == "BASIC"
    assert ti["args"] == ["--lines", "2"]
    assert ti["jobDir"] == str(Path("out").absolute())

    from_file = new_job_id("fromfile")
    run = submit(server, trainer, from_file, "--config", str(config), "--stream-logs")
    assert run.returncode == 0, run.stderr
    args_line = next(m for m in master_messages(run.stdout) if m.startswith("ARGS "))
    assert json.loads(args_line[5:])[:2] == ["--lines", "1"]
    assert mlengine(server, "jobs", "cancel", overridden).returncode in (0, 6)


def test_unknown_job_and_unreachable_server(server: str) -> None:
    missing = mlengine(server, "jobs", "describe", "no_such_job")
    assert missing.returncode == 4 and "NOT_FOUND" in missing.stderr
    url = f"http://127.0.0.1:{free_port()}"
    down = mlengine(url, "jobs", "list")
    assert down.returncode == 9
    assert url in down.stderr and "mlengine server start" in down.stderr
    flag = mlengine(server, "jobs", "list", "--server", url)
    assert flag.returncode == 9 and url in flag.stderr


def test_relative_path_args_are_made_absolute_for_a_local_server(
    server: str, trainer: Path, tmp_path: Path
) -> None:
    (tmp_path / "data.csv").write_text("x\n")
    job_id = new_job_id("paths")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlengine.cli",
            "jobs",
            "submit",
            "training",
            job_id,
            "--module-name",
            "trainer.task",
            "--package-path",
            str(trainer),
            "--",
            "--train-files",
            "data.csv",
            "--eval-files=data.csv",
            "--name",
            "not-a-file",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "MLENGINE_SERVER": server},
    )
    assert done.returncode == 0, done.stderr
    assert "Made relative paths absolute" in done.stderr
    args = describe(server, job_id)["trainingInput"]["args"]
    data = str(tmp_path / "data.csv")
    assert args == ["--train-files", data, f"--eval-files={data}", "--name", "not-a-file"]
