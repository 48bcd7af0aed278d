"""`mlengine local train` end to end, with real replica processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.processes import wait_dead

PROBE = REPO_ROOT / "tests" / "fixtures" / "probe_trainer" / "trainer"


def _free_port_block(size: int) -> int:
    import socket

    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            start = s.getsockname()[1]
        if start + size < 65000:
            return start
    raise RuntimeError("no port")


def mlengine(
    *args: str, cwd: Path | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlengine.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _records(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def test_single_replica_runs_in_the_package_parent_with_args_intact(tmp_path):
    record = tmp_path / "rec"
    tricky = [
        "--name",
        "two words",
        "--quote",
        'it\'s "quoted"',
        "--glob",
        "*.py; rm -rf /",
        "--empty",
        "",
        "--dollar",
        "$HOME",
    ]
    result = mlengine(
        "local",
        "train",
        "--module-name",
        "trainer.task",
        "--package-path",
        str(PROBE),
        "--job-dir",
        str(tmp_path / "job"),
        "--",
        "--record",
        str(record),
        *tricky,
    )
    assert result.returncode == 0, result.stderr
    master = _records(record)["master-0"]
    assert master["argv"] == ["--record", str(record), *tricky, "--job-dir", str(tmp_path / "job")]
    assert master["cwd"] == str(PROBE.parent)
    config = json.loads(master["env"]["TF_CONFIG"])
    assert config["task"] == {} and config["cluster"] == {}
    assert config["job"]["job_name"] == "trainer.task"
    assert "[master-replica-0] master-0 started" in result.stdout


def test_exit_code_of_the_primary_is_the_commands(tmp_path):
    result = mlengine(
        "local",
        "train",
        "--module-name",
        "trainer.task",
        "--package-path",
        str(PROBE),
        "--",
        "--exit-code",
        "3",
    )
    assert result.returncode == 3
    assert "master-replica-0 exited with code 3" in result.stderr


def test_relative_job_dir_and_path_args_are_made_absolute(tmp_path):
    (tmp_path / "data.csv").write_text("x\n")
    record = tmp_path / "rec"
    result = mlengine(
        "local",
        "train",
        "--module-name",
        "trainer.task",
        "--package-path",
        str(PROBE),
        "--job-dir",
        "out",
        "--",
        "--record",
        str(record),
        "--train-files",
        "data.csv",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    argv = _records(record)["master-0"]["argv"]
    assert argv[argv.index("--train-files") + 1] == str(tmp_path / "data.csv")
    assert argv[-2:] == ["--job-dir", str(tmp_path / "out")]


def test_distributed_environment_for_every_replica(tmp_path):
    record = tmp_path / "rec"
    port = _free_port_block(6)
    result = mlengine(
        "local",
        "train",
        "--module-name",
        "trainer.task",
        "--package-path",
        str(PROBE),
        "--distributed",
        "--worker-count",
        "2",
        "--parameter-server-count",
        "1",
        "--evaluator-count",
        "1",
        "--start-port",
        str(port),
        "--use-master-in-tf-config",
        "--",
        "--record",
        str(record),
        "--sleep",
        "1.5",
    )
    assert result.returncode == 0, result.stderr
    recs = _records(record)
    assert set(recs) == {"master-0", "worker-0", "worker-1", "ps-0", "evaluator-0"}
    cluster = {
        "master": [f"localhost:{port}"],
        "ps": [f"localhost:{port + 1}"],
        "worker": [f"localhost:{port + 2}", f"localhost:{port + 3}"],
    }
    for name, rec in recs.items():
        env = rec["env"]
        config = json.loads(env["TF_CONFIG"])
        kind, index = name.split("-")
        assert config["task"] == {"type": kind, "index": int(index)}
        assert config["cluster"] == cluster
        assert config["environment"] == "cloud"
        assert json.loads(env["CLUSTER_SPEC"]) == config
        if kind in ("master", "worker"):
            rank = 0 if kind == "master" else int(index) + 1
            assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("127.0.0.1", str(port))
            assert (env["WORLD_SIZE"], env["RANK"], env["LOCAL_RANK"]) == (
                "3",
                str(rank),
                str(rank),
            )
        else:
            assert not {"RANK", "WORLD_SIZE", "MASTER_ADDR"} & set(env)
    for replica in ("master-replica-0", "worker-replica-1", "ps-replica-0", "evaluator-replica-0"):
        assert f"[{replica}]" in result.stdout


def test_a_dying_worker_takes_the_group_down_and_is_named(tmp_path):
    record = tmp_path / "rec"
    started = time.monotonic()
    result = mlengine(
        "local",
        "train",
        "--module-name",
        "trainer.task",
        "--package-path",
        str(PROBE),
        "--distributed",
        "--worker-count",
        "2",
        "--parameter-server-count",
        "1",
        "--start-port",
        str(_free_port_block(5)),
        "--",
        "--record",
        str(record),
        "--sleep",
        "300",
        "--spawn-child",
        "--fail-task",
        "worker:1:7",
    )
    assert time.monotonic() - started < 60
    assert result.returncode == 7
    assert "worker-replica-1 exited with code 7" in result.stderr
    assert "[worker-replica-1] worker-1 failing with 7" in result.stderr  # last line kept
    pids = [pid for rec in _records(record).values() for pid in rec["pids"]]
    assert len(pids) == 8
    assert wait_dead(pids) == []


def test_ctrl_c_stops_every_replica_and_their_children(tmp_path):
    record = tmp_path / "rec"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlengine.cli",
            "local",
            "train",
            "--module-name",
            "trainer.task",
            "--package-path",
            str(PROBE),
            "--distributed",
            "--worker-count",
            "1",
            "--parameter-server-count",
            "1",
            "--start-port",
            str(_free_port_block(4)),
            "--",
            "--record",
            str(record),
            "--sleep",
            "300",
            "--spawn-child",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(list(record.glob("*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [pid for rec in _records(record).values() for pid in rec["pids"]]
    assert len(pids) == 6
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Interrupted" in err
    assert wait_dead(pids) == []


def test_missing_package_path_is_a_clear_error(tmp_path):
    result = mlengine(
        "local", "train", "--module-name", "trainer.task", "--package-path", str(tmp_path / "nope")
    )
    assert result.returncode == 2
    assert "--package-path" in result.stderr and "is not a directory" in result.stderr


def test_missing_module_is_a_clear_error():
    result = mlengine(
        "local", "train", "--module-name", "trainer.tsk", "--package-path", str(PROBE)
    )
    assert result.returncode == 2
    assert "--module-name 'trainer.tsk'" in result.stderr and "tsk.py" in result.stderr
    result = mlengine(
        "local", "train", "--module-name", "trainer-task", "--package-path", str(PROBE)
    )
    assert result.returncode == 2 and "not a Python module name" in result.stderr


def test_counts_without_distributed_warn_and_run_one_replica(tmp_path):
    record = tmp_path / "rec"
    result = mlengine(
        "local",
        "train",
        "--module-name",
        "trainer.task",
        "--package-path",
        str(PROBE),
        "--worker-count",
        "3",
        "--",
        "--record",
        str(record),
    )
    assert result.returncode == 0
    assert "--worker-count is ignored without --distributed" in result.stderr
    assert set(_records(record)) == {"master-0"}


def test_packages_are_installed_for_the_run_only(tmp_path):
    """--packages: an sdist built here is installed into a layered environment."""
    src = tmp_path / "extra_src"
    (src / "mlengine_probe_extra").mkdir(parents=True)
    (src / "mlengine_probe_extra" / "__init__.py").write_text("VALUE = 'from-archive'\n")
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "mlengine-probe-extra"\nversion = "0.1"\n'
        '[tool.setuptools]\npackages = ["mlengine_probe_extra"]\n'
    )
    pytest.importorskip("setuptools")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("*.whl"))
    pkg = tmp_path / "pkg" / "trainer"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "task.py").write_text(
        "import mlengine_probe_extra, mlengine.trainer\nprint(mlengine_probe_extra.VALUE)\n"
    )
    result = mlengine(
        "local",
        "train",
        "--module-name",
        "trainer.task",
        "--package-path",
        str(pkg),
        "--packages",
        str(wheel),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "[master-replica-0] from-archive" in result.stdout
    missing = mlengine(
        "local",
        "train",
        "--module-name",
        "trainer.task",
        "--package-path",
        str(pkg),
        "--packages",
        str(tmp_path / "missing.whl"),
    )
    assert missing.returncode == 2 and "--packages" in missing.stderr
