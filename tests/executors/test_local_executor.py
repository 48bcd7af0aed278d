"""LocalProcessExecutor and its replica supervisor, with real processes.

Trainers come from tests/fixtures/executor_trainers (one flag per behaviour). Liveness is
checked through /proc with start times, and zombies count as dead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mlengine.domain.errors import FailedPrecondition, ResourceExhausted
from mlengine.domain.machine_types import Resources
from mlengine.domain.replicas import (
    Accelerator,
    GroupRequest,
    ReplicaPlan,
    ReplicaRole,
    plan_for_local_train,
    plan_for_scale_tier,
)
from mlengine.executors import local
from mlengine.executors import replica_supervisor as supervisor
from mlengine.executors.base import RunSpec, RunStatus
from mlengine.executors.cluster_env import RunIdentity
from mlengine.executors.local import (
    LOST_EXIT_CODE,
    LocalProcessExecutor,
    decide_end,
    run_dir_name,
)
from mlengine.executors.local_placement import free_ports
from mlengine.executors.local_processes import Observation

TRAINERS = Path(__file__).resolve().parents[1] / "fixtures" / "executor_trainers"
SINGLE = plan_for_local_train(distributed=False)


def _spec(run_id: str, plan: ReplicaPlan, *args: str) -> RunSpec:
    return RunSpec(
        run_id=run_id,
        plan=plan,
        python=sys.executable,
        module="trainer.task",
        args=list(args),
        workdir=str(TRAINERS),
        identity=RunIdentity(job_id="job1"),
        base_env=dict(os.environ),
    )


class Runs:
    """An executor whose runs are all stopped and removed when the test ends."""

    def __init__(self, runs_dir: Path, **kwargs: Any) -> None:
        self.runs_dir = runs_dir
        self.executor = LocalProcessExecutor(runs_dir, **kwargs)
        self.handles: list[dict[str, Any]] = []

    def start(self, run_id: str, plan: ReplicaPlan, *args: str, running: Any = ()) -> Any:
        handle = self.executor.start(_spec(run_id, plan, *args), list(running))
        self.handles.append(dict(handle))
        return handle

    def close(self) -> None:
        for handle in self.handles:
            self.executor.stop(handle, grace_seconds=0.5)
            self.executor.cleanup(handle)


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    runs = Runs(tmp_path / "runs", gpu_ids=[])
    yield runs
    runs.close()


def _wait(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s")


def _run_to_end(executor: LocalProcessExecutor, handle: Any, timeout: float = 15.0) -> RunStatus:
    status: RunStatus = _wait(lambda: (s := executor.poll(handle)).ended and s, timeout)
    return status


def _all_logs(executor: LocalProcessExecutor, handle: Any, cursor: Any = None) -> list[Any]:
    lines, _ = executor.read_logs(handle, cursor or {})
    return lines


def _alive(pid: int, start: int) -> bool:
    stat = supervisor.proc_stat(pid)
    return stat is not None and stat.start == start and not stat.dead


def _processes(handle: Any, record_dir: Path | None = None) -> list[tuple[int, int]]:
    """(pid, start) of every supervisor and trainer of the run, and recorded children."""
    out = []
    for replica in handle["replicas"]:
        out.append((replica["pid"], replica["start"]))
        pid_file = Path(handle["run_dir"]) / f"{replica['name']}.pid"
        _, trainer = supervisor.read_pid_record(pid_file)
        if trainer is not None:
            out.append((trainer.pid, trainer.start))
    for record in (record_dir.glob("*.json")) if record_dir else ():
        child = json.loads(record.read_text())["child"]
        stat = supervisor.proc_stat(child) if child else None
        if stat is not None:
            out.append((child, stat.start))
    return out


def _trainer_started(handle: Any, name: str = "master-replica-0") -> Any:
    return supervisor.read_pid_record(Path(handle["run_dir"]) / f"{name}.pid")[1]


# -- lifecycle --------------------------------------------------------------------------------


def test_single_replica_succeeds_with_its_lines(runs: Runs) -> None:
    handle = runs.start("p/j/1", SINGLE, "--print", "3")
    status = _run_to_end(runs.executor, handle)
    assert (status.exit_code, status.failed_replica, status.reason) == (0, None, "")
    assert [(r.name, r.running, r.exit_code) for r in status.replicas] == [
        ("master-replica-0", False, 0)
    ]
    lines = _all_logs(runs.executor, handle)
    assert [(x.replica, x.stream, x.message) for x in lines] == [
        ("master-replica-0", "stdout", f"line {i}") for i in range(3)
    ]
    assert runs.executor.poll(handle) == status  # the verdict is stable


def test_failing_primary_ends_the_run_with_its_code(runs: Runs) -> None:
    handle = runs.start("p/j/1", SINGLE, "--exit-code", "3")
    status = _run_to_end(runs.executor, handle)
    assert status.exit_code == 3
    assert status.failed_replica == "master-replica-0"
    assert status.reason == "master-replica-0 exited with code 3."


def test_a_dying_worker_ends_a_distributed_run_and_every_process_goes(
    runs: Runs, tmp_path: Path
) -> None:
    plan = plan_for_local_train(distributed=True, worker_count=2, parameter_server_count=1)
    record = tmp_path / "record"
    record.mkdir()
    args = ("--sleep", "60", "--fail-task", "worker:1:7", "--record", str(record))
    handle = runs.start("p/j/1", plan, *args)
    _wait(lambda: len(list(record.glob("*.json"))) == 4)
    processes = _processes(handle, record)
    started = time.monotonic()
    status = _run_to_end(runs.executor, handle)
    assert time.monotonic() - started < 15  # "within seconds", with room for a loaded machine
    assert status.failed_replica == "worker-replica-1"
    assert status.exit_code == 7
    assert status.reason == "worker-replica-1 exited with code 7; stopping the other replicas."
    codes = {r.name: r.exit_code for r in status.replicas}
    assert codes["worker-replica-1"] == 7 and codes["master-replica-0"] in (143, 137)
    assert not [p for p in processes if _alive(*p)]
    stderr = [x.message for x in _all_logs(runs.executor, handle) if x.stream == "stderr"]
    assert stderr == ["worker-1 failing with 7"]


def test_a_worker_that_exits_zero_just_finishes(runs: Runs) -> None:
    plan = plan_for_local_train(distributed=True, worker_count=1, parameter_server_count=0)
    handle = runs.start("p/j/1", plan, "--sleep", "1.5", "--fail-task", "worker:0:0")
    early = _wait(lambda: (s := runs.executor.poll(handle)).replicas[1].exit_code == 0 and s)
    assert not early.ended and early.replicas[0].running
    status = _run_to_end(runs.executor, handle)
    assert (status.exit_code, status.failed_replica) == (0, None)
    assert [r.exit_code for r in status.replicas] == [0, 0]


def test_lines_keep_unicode_long_lines_bad_bytes_and_the_unterminated_last_line(
    runs: Runs,
) -> None:
    handle = runs.start("p/j/1", SINGLE, "--fancy")
    _run_to_end(runs.executor, handle)
    lines = _all_logs(runs.executor, handle)
    out = [x.message for x in lines if x.stream == "stdout"]
    assert out == [
        "héllo wörld ✓ 日本語",
        "x" * 200_000,
        "bad \ufffd\ufffd bytes",
        "no newline at the end",
    ]
    assert [x.message for x in lines if x.stream == "stderr"] == ["to stderr"]
    assert all(x.time.tzinfo is not None for x in lines)


def test_read_logs_in_small_chunks_loses_nothing(
    runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "MAX_LOG_CHUNK", 100)  # smaller than one record
    handle = runs.start("p/j/1", SINGLE, "--print", "5", "--fancy")
    _run_to_end(runs.executor, handle)
    seen: list[str] = []
    cursor: Any = {}
    while True:
        lines, cursor = runs.executor.read_logs(handle, cursor)
        if not lines:
            break
        seen += [x.message for x in lines]
    assert len(seen) == 10 and "x" * 200_000 in seen and seen[-1] == "no newline at the end"


def test_read_logs_returns_complete_lines_once_and_is_cheap_when_idle(runs: Runs) -> None:
    handle = runs.start("p/j/1", SINGLE, "--print", "2")
    _run_to_end(runs.executor, handle)
    lines, cursor = runs.executor.read_logs(handle, {})
    assert len(lines) == 2
    assert runs.executor.read_logs(handle, cursor) == ([], cursor)
    log = Path(handle["run_dir"]) / "master-replica-0.log"
    record = json.dumps({"t": time.time(), "s": "stdout", "m": "late"}).encode() + b"\n"
    with open(log, "ab") as out:  # a record caught half-written waits for its newline
        out.write(record[:10])
    assert runs.executor.read_logs(handle, cursor) == ([], cursor)
    with open(log, "ab") as out:
        out.write(record[10:])
    lines, _ = runs.executor.read_logs(handle, json.loads(json.dumps(cursor)))
    assert [x.message for x in lines] == ["late"]


def test_cpu_seconds_are_counted_for_a_busy_trainer(runs: Runs) -> None:
    handle = runs.start("p/j/1", SINGLE, "--busy", "0.3")
    status = _run_to_end(runs.executor, handle)
    assert status.cpu_seconds >= 0.25
    assert status.replicas[0].cpu_seconds == status.cpu_seconds


# -- stop -------------------------------------------------------------------------------------


def test_stop_kills_trainers_and_their_children(runs: Runs, tmp_path: Path) -> None:
    plan = plan_for_local_train(distributed=True, worker_count=1, parameter_server_count=0)
    record = tmp_path / "record"
    record.mkdir()
    handle = runs.start("p/j/1", plan, "--spawn-child", "--sleep", "60", "--record", str(record))
    _wait(lambda: len(list(record.glob("*.json"))) == 2)
    processes = _processes(handle, record)
    assert len(processes) == 6  # 2 supervisors, 2 trainers, 2 sleep children
    status = runs.executor.stop(handle, grace_seconds=5)
    assert status.ended and status.exit_code == 143
    assert not [p for p in processes if _alive(*p)]
    assert runs.executor.stop(handle, grace_seconds=5) == status  # idempotent
    assert runs.executor.poll(handle) == status


def test_stop_uses_sigkill_after_the_grace(runs: Runs) -> None:
    handle = runs.start("p/j/1", SINGLE, "--ignore-sigterm", "--sleep", "60", "--print", "1")
    _wait(lambda: _all_logs(runs.executor, handle))
    processes = _processes(handle)
    started = time.monotonic()
    status = runs.executor.stop(handle, grace_seconds=0.5)
    assert 0.5 <= time.monotonic() - started < 15
    assert status.ended
    assert not [p for p in processes if _alive(*p)]


def test_poll_sigkills_survivors_after_the_grace_without_blocking(tmp_path: Path) -> None:
    runs = Runs(tmp_path / "runs", gpu_ids=[], grace_seconds=0.5)
    try:
        plan = plan_for_local_train(distributed=True, worker_count=1, parameter_server_count=0)
        args = ("--ignore-sigterm", "--sleep", "60", "--fail-task", "master:0:0")
        handle = runs.start("p/j/1", plan, *args)
        polls = []
        while True:
            started = time.monotonic()
            status = runs.executor.poll(handle)
            assert time.monotonic() - started < 1
            if status.ended:
                break
            polls.append(status)
            time.sleep(0.05)
        assert (status.exit_code, status.failed_replica) == (0, None)
        worker = next(r for r in status.replicas if r.name == "worker-replica-0")
        assert worker.exit_code == 128 + signal.SIGKILL  # its supervisor still recorded it
        assert any(not s.replicas[0].running for s in polls)  # ended late, not at once
        assert not [p for p in _processes(handle) if _alive(*p)]
    finally:
        runs.close()


# -- re-attach and lost supervisors -----------------------------------------------------------


def test_a_new_executor_reattaches_without_losing_or_repeating_lines(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    first = LocalProcessExecutor(runs_dir, gpu_ids=[])
    handle = first.start(_spec("p/j/1", SINGLE, "--print", "40", "--interval", "0.03"), [])
    seen, cursor = first.read_logs(handle, {})
    stored_handle = json.loads(json.dumps(handle))
    stored_cursor = json.loads(json.dumps(cursor))
    del first  # the server died

    second = LocalProcessExecutor(runs_dir, gpu_ids=[])
    assert second.find_run("p/j/1") == stored_handle
    while True:
        status = second.poll(stored_handle)
        lines, stored_cursor = second.read_logs(stored_handle, stored_cursor)
        stored_cursor = json.loads(json.dumps(stored_cursor))
        seen += lines
        if status.ended:
            break
        time.sleep(0.05)
    seen += second.read_logs(stored_handle, stored_cursor)[0]
    assert status.exit_code == 0
    assert [x.message for x in seen] == [f"line {i}" for i in range(40)]
    second.cleanup(stored_handle)
    assert not Path(stored_handle["run_dir"]).exists()
    second.cleanup(stored_handle)  # idempotent


SERVER = """
import json, os, sys, time
from pathlib import Path
from mlengine.domain.replicas import plan_for_local_train
from mlengine.executors.base import RunSpec
from mlengine.executors.cluster_env import RunIdentity
from mlengine.executors.local import LocalProcessExecutor

plan = plan_for_local_train(distributed=True, worker_count=1, parameter_server_count=0)
spec = RunSpec(run_id="p/j/1", plan=plan, python=sys.executable, module="trainer.task",
               args=["--print", "30", "--interval", "0.03"], workdir=sys.argv[2],
               identity=RunIdentity(job_id="j"), base_env=dict(os.environ))
handle = LocalProcessExecutor(Path(sys.argv[1]), gpu_ids=[]).start(spec, [])
print(json.dumps(handle), flush=True)
time.sleep(60)
"""


def test_replicas_outlive_a_server_killed_with_sigkill(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(runs_dir), str(TRAINERS)], stdout=subprocess.PIPE
    )
    assert server.stdout is not None
    handle = json.loads(server.stdout.readline())
    server.kill()  # kill -9: no cleanup of any kind
    server.wait()
    server.stdout.close()

    executor = LocalProcessExecutor(runs_dir, gpu_ids=[])
    status = _run_to_end(executor, handle)
    assert (status.exit_code, status.failed_replica) == (0, None)
    lines = _all_logs(executor, handle)
    for name in ("master-replica-0", "worker-replica-0"):
        assert [x.message for x in lines if x.replica == name] == [f"line {i}" for i in range(30)]
    assert not [p for p in _processes(handle) if _alive(*p)]
    executor.cleanup(handle)


def test_start_is_idempotent_per_run_id(runs: Runs) -> None:
    handle = runs.start("p/j/1", SINGLE, "--sleep", "60")
    again = runs.executor.start(_spec("p/j/1", SINGLE, "--sleep", "60"), [])
    assert again == handle
    assert runs.executor.find_run("p/j/2") is None


def test_a_start_cut_short_by_a_crash_is_discarded_before_starting_again(
    runs: Runs, tmp_path: Path
) -> None:
    run_dir = runs.runs_dir / run_dir_name("p/j/1")
    run_dir.mkdir(parents=True)
    orphan = _supervise(run_dir, sys.executable, "-c", "import time; time.sleep(60)")
    _wait(lambda: _trainer_started({"run_dir": str(run_dir)}, "r"))
    sup, trainer = supervisor.read_pid_record(run_dir / "r.pid")
    assert sup is not None and trainer is not None
    handle = runs.start("p/j/1", SINGLE)
    orphan.wait(timeout=5)
    assert not _alive(trainer.pid, trainer.start)
    assert _run_to_end(runs.executor, handle).exit_code == 0
    assert not (Path(handle["run_dir"]) / "r.pid").exists()


def test_a_killed_supervisor_means_a_lost_replica(runs: Runs) -> None:
    plan = plan_for_local_train(distributed=True, worker_count=2, parameter_server_count=0)
    handle = runs.start("p/j/1", plan, "--sleep", "60")
    for replica in handle["replicas"]:
        _wait(lambda name=replica["name"]: _trainer_started(handle, name))
    processes = _processes(handle)
    victim = next(r for r in handle["replicas"] if r["name"] == "worker-replica-1")
    os.kill(victim["pid"], signal.SIGKILL)
    status = _run_to_end(runs.executor, handle)
    assert status.failed_replica == "worker-replica-1"
    assert status.exit_code == LOST_EXIT_CODE
    assert (
        "worker-replica-1 disappeared without an exit status (its supervisor was killed)"
        in status.reason
    )
    lost = next(r for r in status.replicas if r.name == "worker-replica-1")
    assert (lost.running, lost.exit_code) == (False, None)
    runs.executor.stop(handle, grace_seconds=1)
    assert not [p for p in processes if _alive(*p)]


def test_a_lost_primary_is_reported_and_its_trainer_stopped(runs: Runs) -> None:
    handle = runs.start("p/j/1", SINGLE, "--sleep", "60")
    trainer = _wait(lambda: _trainer_started(handle))
    sup = handle["replicas"][0]
    os.kill(sup["pid"], signal.SIGKILL)
    _wait(lambda: not _alive(sup["pid"], sup["start"]))
    status = runs.executor.stop(handle, grace_seconds=1)
    assert status.reason.startswith("master-replica-0 disappeared without an exit status")
    assert not _alive(trainer.pid, trainer.start)


# -- placement --------------------------------------------------------------------------------


def _gpu_plan(gpus_per_worker: int = 0, workers: int = 0) -> ReplicaPlan:
    requests = {
        ReplicaRole.MASTER: GroupRequest("n1-standard-4", 1, Accelerator("NVIDIA_TESLA_T4", 1)),
        ReplicaRole.WORKER: GroupRequest(
            "n1-standard-4", workers, Accelerator("NVIDIA_TESLA_T4", gpus_per_worker)
        ),
    }
    return plan_for_scale_tier("CUSTOM", requests)


def test_gpu_requests_on_a_machine_without_gpus_are_unplaceable(tmp_path: Path) -> None:
    executor = LocalProcessExecutor(tmp_path, gpu_ids=[])
    plan = plan_for_scale_tier("BASIC_GPU")
    reason = executor.unplaceable_reason(plan)
    assert reason == "master-replica-0 asks for 1 NVIDIA_TESLA_K80 GPU(s) but this machine has 0."
    assert not executor.fits(plan, [])
    with pytest.raises(FailedPrecondition, match="asks for 1"):
        executor.start(_spec("p/j/1", plan), [])
    assert executor.unplaceable_reason(SINGLE) is None


def test_gpus_in_total_and_tpus_are_checked(tmp_path: Path) -> None:
    executor = LocalProcessExecutor(tmp_path, gpu_ids=[0, 1])
    reason = executor.unplaceable_reason(_gpu_plan(gpus_per_worker=1, workers=2))
    assert reason is not None and "3 GPUs in total" in reason and "has 2" in reason
    assert executor.unplaceable_reason(_gpu_plan(gpus_per_worker=1, workers=1)) is None
    tpu = executor.unplaceable_reason(plan_for_scale_tier("BASIC_TPU"))
    assert tpu is not None and "worker-replica-0 (cloud_tpu)" in tpu and "TPU" in tpu


def test_gpus_are_hard_and_each_run_gets_its_own(runs: Runs, tmp_path: Path) -> None:
    runs.executor = LocalProcessExecutor(runs.runs_dir, gpu_ids=[0, 1])
    assert runs.executor.capacity().gpus == 2
    plan = plan_for_scale_tier("BASIC_GPU")
    records = [tmp_path / f"r{i}" for i in range(3)]
    for record in records:
        record.mkdir()
    first = runs.start("p/a/1", plan, "--record", str(records[0]), "--sleep", "0.5")
    assert runs.executor.fits(plan, [first])
    second = runs.start(
        "p/b/1", plan, "--record", str(records[1]), "--sleep", "60", running=[first]
    )
    assert not runs.executor.fits(plan, [first, second])
    with pytest.raises(ResourceExhausted):
        runs.executor.start(_spec("p/c/1", plan), [first, second])
    _run_to_end(runs.executor, first)
    assert runs.executor.fits(plan, [second])
    third = runs.start(
        "p/c/1", plan, "--record", str(records[2]), "--sleep", "60", running=[second]
    )

    def visible(record: Path) -> str:
        path = _wait(lambda: next(record.glob("*.json"), None))
        return str(json.loads(path.read_text())["env"]["CUDA_VISIBLE_DEVICES"])

    assert [visible(r) for r in records] == ["0", "1", "0"]
    assert [h["replicas"][0]["gpus"] for h in (first, second, third)] == [[0], [1], [0]]


def test_cpu_and_memory_are_soft_unless_strict(tmp_path: Path) -> None:
    tiny = Resources(cpus=2, memory_gib=4)
    basic = plan_for_scale_tier("BASIC")  # n1-standard-4: 4 vCPUs, 15 GiB
    soft = LocalProcessExecutor(tmp_path, capacity=tiny)
    assert soft.unplaceable_reason(basic) is None and soft.fits(basic, [])
    strict = LocalProcessExecutor(tmp_path, capacity=tiny, strict_placement=True)
    assert strict.unplaceable_reason(basic) == (
        "master-replica-0 asks for 4 vCPUs but this machine has 2 (strict placement is on)."
    )
    roomy = LocalProcessExecutor(tmp_path, capacity=Resources(8, 32), strict_placement=True)
    running = {"executor": "local", "replicas": [], "resources": {"cpus": 4, "memory_gib": 15}}
    assert roomy.fits(basic, [running])
    assert not roomy.fits(basic, [running, running])
    assert roomy.capacity() == Resources(8, 32, 0)


def test_capacity_is_detected(tmp_path: Path) -> None:
    capacity = LocalProcessExecutor(tmp_path, gpu_ids=[]).capacity()
    assert capacity.cpus == os.cpu_count()
    assert capacity.memory_gib > 0 and capacity.gpus == 0


# -- ports and the cluster --------------------------------------------------------------------


def test_concurrent_runs_get_distinct_ports_matching_their_tf_config(
    runs: Runs, tmp_path: Path
) -> None:
    plan = plan_for_local_train(distributed=True, worker_count=1, parameter_server_count=0)
    handles, records = [], []
    for i in range(2):
        record = tmp_path / f"r{i}"
        record.mkdir()
        records.append(record)
        handles.append(
            runs.start(f"p/j{i}/1", plan, "--record", str(record), "--sleep", "60", running=handles)
        )
    ports = [{r["port"] for r in h["replicas"]} for h in handles]
    assert len(ports[0]) == len(ports[1]) == 2 and not ports[0] & ports[1]
    for handle, record in zip(handles, records, strict=True):
        path = _wait(lambda r=record: (r / "master-0.json").exists() and r / "master-0.json")
        env = json.loads(path.read_text())["env"]
        cluster = json.loads(env["TF_CONFIG"])["cluster"]
        port_of = {r["name"]: r["port"] for r in handle["replicas"]}
        assert cluster == {
            "master": [f"localhost:{port_of['master-replica-0']}"],
            "worker": [f"localhost:{port_of['worker-replica-0']}"],
        }
        assert env["MASTER_PORT"] == str(port_of["master-replica-0"])
        assert env["CLOUD_ML_HP_METRIC_FILE"] == str(
            runs.executor.metric_file(handle, "master-replica-0")
        )
        assert env["OMP_NUM_THREADS"] == "1"  # given by the base environment: left alone
        assert "CUDA_VISIBLE_DEVICES" not in env  # no GPUs here: as under `local train`
        assert env["LOCAL_RANK"] == env["RANK"] == "0"


def test_threads_are_shared_out_when_the_base_environment_sets_none(
    runs: Runs, tmp_path: Path
) -> None:
    plan = plan_for_local_train(distributed=True, worker_count=1, parameter_server_count=0)
    base = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    spec = replace(_spec("p/j/1", plan, "--record", str(tmp_path)), base_env=base)
    handle = runs.executor.start(spec, [])
    runs.handles.append(dict(handle))
    _run_to_end(runs.executor, handle)
    env = json.loads((tmp_path / "master-0.json").read_text())["env"]
    assert env["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))


def test_free_ports_skip_reserved_and_bound_ports() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert free_ports(2, {port + 1}, (port, port + 3)) == [port + 2, port + 3]
        with pytest.raises(ResourceExhausted):
            free_ports(1, set(), (port, port))


# -- the group rules and the supervisor on its own --------------------------------------------


def test_decide_end_takes_the_first_decisive_event() -> None:
    worker_ok = Observation("worker-replica-0", False, 0, time=1.0)
    assert decide_end("master-replica-0", [worker_ok], now=5.0) is None
    master_fails = Observation("master-replica-0", False, 1, time=3.0)
    worker_killed = Observation("worker-replica-1", False, 137, signal=9, time=2.0)
    end = decide_end("master-replica-0", [master_fails, worker_killed], now=5.0)
    assert end is not None and end.failed_replica == "worker-replica-1"
    assert end.reason == "worker-replica-1 was killed by SIGKILL; stopping the other replicas."
    lost = Observation("worker-replica-0", False, lost=True)
    master_ok = Observation("master-replica-0", False, 0, time=4.0)
    end = decide_end("master-replica-0", [lost, master_ok], now=5.0)
    assert end is not None and (end.exit_code, end.failed_replica) == (0, None)


def test_run_dir_names_are_one_to_one_and_safe() -> None:
    assert run_dir_name("p/j/1") == "p+j+1"
    assert run_dir_name("a_b/c/1") != run_dir_name("a/b_c/1")
    assert run_dir_name("a+b/c") != run_dir_name("a/b+c")
    for hostile in ("..", ".", "../../etc", "a/../../b"):
        assert "/" not in run_dir_name(hostile) and run_dir_name(hostile) not in (".", "..")
    long_a, long_b = "p/" + "j" * 300 + "/1", "p/" + "j" * 300 + "/2"
    assert len(run_dir_name(long_a)) <= 200 and run_dir_name(long_a) != run_dir_name(long_b)
    with pytest.raises(ValueError):
        run_dir_name("")


def _supervise(tmp_path: Path, *argv: str) -> subprocess.Popen[bytes]:
    options = ["--run-dir", str(tmp_path), "--name", "r", "--"]
    return subprocess.Popen(
        [sys.executable, "-m", supervisor.__name__, *options, *argv],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_supervisor_relays_sigterm_and_records_the_signal(tmp_path: Path) -> None:
    proc = _supervise(
        tmp_path, sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"
    )
    _wait(lambda: (tmp_path / "r.log").exists() and (tmp_path / "r.log").read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    record = json.loads((tmp_path / "r.exit").read_text())
    assert (record["code"], record["signal"]) == (143, signal.SIGTERM)
    sup, trainer = supervisor.read_pid_record(tmp_path / "r.pid")
    assert sup is not None and sup.pid == proc.pid and trainer is not None


def test_supervisor_records_a_command_that_cannot_start(tmp_path: Path) -> None:
    proc = _supervise(tmp_path, str(tmp_path / "no-such-python"))
    assert proc.wait(timeout=10) == 0
    assert json.loads((tmp_path / "r.exit").read_text())["code"] == 127
    line = json.loads((tmp_path / "r.log").read_text().splitlines()[0])
    assert line["s"] == "stderr" and "cannot start" in line["m"]


def test_soft_placement_caps_concurrent_replicas(tmp_path: Path) -> None:
    capped = Runs(tmp_path / "runs", gpu_ids=[], max_replicas=3)
    try:
        pair = plan_for_local_train(distributed=True, worker_count=1, parameter_server_count=0)
        big = plan_for_scale_tier("STANDARD_1")  # 8 replicas: more than the cap
        assert capped.executor.fits(big, [])  # alone, a plan larger than the cap still runs
        first = capped.start("p/cap/1", pair, "--sleep", "30")
        assert capped.executor.fits(SINGLE, [first])  # 2 + 1 <= 3
        assert not capped.executor.fits(pair, [first])  # 2 + 2 > 3
        assert not capped.executor.fits(SINGLE, [first], [SINGLE])  # pending plans count too
    finally:
        capped.close()


# -- the start gate: a trainer starts only once its run is recorded ---------------------------


def _gated(tmp_path: Path, marker: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    gate = run_dir / "start.gate"
    trainer = f"open({str(marker)!r}, 'w').write('ran')"
    argv = [
        sys.executable, supervisor.__file__, "--run-dir", str(run_dir),
        "--name", "master-replica-0", "--gate", str(gate), "--", sys.executable, "-c", trainer,
    ]  # fmt: skip
    return subprocess.Popen(argv, start_new_session=True), run_dir, gate


def test_a_gated_supervisor_starts_its_trainer_only_once_the_gate_exists(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    process, run_dir, gate = _gated(tmp_path, marker)
    time.sleep(0.5)
    assert process.poll() is None and not marker.exists()  # waiting, trainer not started
    assert (run_dir / "master-replica-0.pid").exists()
    gate.write_text("{}")
    process.wait(timeout=30)
    assert marker.read_text() == "ran"
    exit_record = json.loads((run_dir / "master-replica-0.exit").read_text())
    assert exit_record["code"] == 0


def test_a_start_cut_short_before_the_gate_never_runs_the_trainer(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    process, run_dir, _ = _gated(tmp_path, marker)
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGTERM)  # what discarding a partial start does
    process.wait(timeout=30)
    assert not marker.exists()
    exit_record = json.loads((run_dir / "master-replica-0.exit").read_text())
    assert exit_record["code"] == 128 + signal.SIGTERM
