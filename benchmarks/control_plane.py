"""Control-plane overheads against a real server process.

    python benchmarks/control_plane.py [--submits 10] [--queued 500]

1. submit → first trainer line: POST a job (package already staged, so its environment is
   cached) and poll the logs route until the master's first line arrives; compared with
   spawning the same trainer directly (`python -m trainer.task` to its first line).
2. Scheduler throughput: submit ``--queued`` no-op jobs at once and time until every one has
   SUCCEEDED (jobs/s), with the server process's own CPU time over that span.

Prints a table and writes benchmarks/results/control_plane.json. Goal for (1): ≤ 1 s median.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
PROJECT = "bench"
TASK = "print('first line', flush=True)\n"
SETUP = (
    "from setuptools import setup\n"
    "setup(name='benchtrainer', version='0.1', packages=['trainer'])\n"
)


def sdist() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in (
            ("setup.py", SETUP),
            ("trainer/__init__.py", ""),
            ("trainer/task.py", TASK),
        ):
            data = text.encode()
            info = tarfile.TarInfo(f"benchtrainer-0.1/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLENGINE_")}
    env.update(
        {"MLENGINE_HOME": str(home), "OMP_NUM_THREADS": "1", "MLENGINE_SCHEDULER_INTERVAL": "0.1"}
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlengine.server", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = home / "server.json"
        if state.exists():
            url = json.loads(state.read_text())["url"]
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def job(job_id: str, uri: str) -> dict[str, object]:
    return {
        "jobId": job_id,
        "trainingInput": {"packageUris": [uri], "region": "local", "pythonModule": "trainer.task"},
    }


def submit_to_first_line(client: httpx.Client, uri: str, job_id: str) -> float:
    started = time.perf_counter()
    client.post(f"/v1/projects/{PROJECT}/jobs", json=job(job_id, uri)).raise_for_status()
    while True:
        body = client.get(f"/v1/projects/{PROJECT}/jobs/{job_id}/logs").json()
        if any(e["taskName"] == "master-replica-0" for e in body.get("entries", [])):
            return time.perf_counter() - started
        if body["job"]["state"] in ("FAILED", "CANCELLED"):
            raise RuntimeError(body["job"])
        time.sleep(0.01)


def direct_first_line(folder: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer.task"], cwd=folder, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    elapsed = time.perf_counter() - started
    proc.wait()
    return elapsed


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_done(client: httpx.Client) -> int:
    """How many bulk jobs have ended (every page of a filtered list)."""
    done, token = 0, None
    while True:
        params = {"filter": "jobId:bulk_* AND (state=SUCCEEDED OR state=FAILED)", "pageSize": 100}
        if token:
            params["pageToken"] = token
        page = client.get(f"/v1/projects/{PROJECT}/jobs", params=params).json()
        done += len(page.get("jobs", []))
        token = page.get("nextPageToken")
        if not token:
            return done


def throughput(client: httpx.Client, uri: str, count: int, server_pid: int) -> dict[str, float]:
    cpu0, started = cpu_seconds(server_pid), time.perf_counter()
    for i in range(count):
        client.post(f"/v1/projects/{PROJECT}/jobs", json=job(f"bulk_{i}", uri)).raise_for_status()
    submitted = time.perf_counter() - started
    while count_done(client) < count:
        time.sleep(0.5)
    elapsed = time.perf_counter() - started
    return {
        "jobs": count,
        "submit_seconds": submitted,
        "total_seconds": elapsed,
        "jobs_per_second": count / elapsed,
        "server_cpu_seconds": cpu_seconds(server_pid) - cpu0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submits", type=int, default=10)
    parser.add_argument("--queued", type=int, default=500)
    parser.add_argument("--out", default=str(HERE / "results" / "control_plane.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        folder = Path(tmp) / "pkg"
        (folder / "trainer").mkdir(parents=True)
        (folder / "trainer" / "__init__.py").write_text("")
        (folder / "trainer" / "task.py").write_text(TASK)
        proc, url = start_server(home)
        try:
            client = httpx.Client(base_url=url, timeout=60)
            uri = client.post(
                f"/upload/v1/projects/{PROJECT}/packages",
                params={"filename": "benchtrainer-0.1.tar.gz"},
                content=sdist(),
                headers={"Content-Type": "application/octet-stream"},
            ).json()["packageUri"]
            submit_to_first_line(client, uri, "warm_up")  # builds the cached environment
            server = [submit_to_first_line(client, uri, f"lat_{i}") for i in range(args.submits)]
            direct = [direct_first_line(folder) for _ in range(args.submits)]
            bulk = throughput(client, uri, args.queued, proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    rows = {
        "submit_to_first_line_ms_median": statistics.median(server) * 1e3,
        "submit_to_first_line_ms_p90": sorted(server)[int(0.9 * len(server))] * 1e3,
        "direct_first_line_ms_median": statistics.median(direct) * 1e3,
        "overhead_ratio": statistics.median(server) / statistics.median(direct),
        **bulk,
    }
    print(f"{'measure':40} {'value':>12}")
    for key, value in rows.items():
        print(f"{key:40} {value:12.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "control_plane",
                "cpus": os.cpu_count(),
                "results": rows,
                "samples_ms": [s * 1e3 for s in server],
            },
            indent=2,
        )
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
