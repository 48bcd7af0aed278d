"""Online prediction: mlengine's data plane against peer model servers and two ceilings.

    python benchmarks/serving.py                  # everything (peers installed on first run)
    python benchmarks/serving.py --quick          # 3 s runs, 3 load cells: a smoke check
    python benchmarks/serving.py --only ours,http-ceiling,inprocess --duration 5
    python benchmarks/serving.py --setup-only     # train the models, build peer venvs, no load

Models (trained once into benchmarks/results/serving-cache/ with the census examples): the
scikit-learn pipeline (``model.joblib``) and the PyTorch DNN exported to ONNX. Requests: the
first 1 and 64 rows of ``adult.test`` as census JSON instances.

Every server runs pinned to CPU 0 (``taskset -c 0``, children included), the load generator
``wrk`` (closed loop, ``-t1 -cN``, a Lua script POSTing one fixed body) to CPU 1; each cell
records rps, rows/s, p50/p90/p99/max, socket errors and non-2xx, and the CPU of the server's
process tree, of wrk and of everything else (from /proc). Before loading a server its answer to
the 64-row body must equal the in-process model's.

Rows of each table (``--only`` takes these names, a prefix such as ``ours`` or ``bentoml``,
``peers`` or ``ceilings``): the two HTTP ceilings (raw ASGI on uvicorn, as installed in the
project venv and with uvloop+httptools), ``ours-server`` (``mlengine server`` with the models
deployed through the REST API, ``…/models/M:predict``), ``ours-serve-w1``/``-w2`` (``mlengine
serve --workers N`` on the same home), and the peers in their own venvs under
benchmarks/.peer-venvs/: MLflow, BentoML and MLServer (each without and with adaptive
batching), Ray Serve (without and with ``@serve.batch``). ``inprocess`` is the model called in
this machine's Python, no HTTP (the compute ceiling). A server that cannot be installed or run is
recorded with the reason and the run goes on. Method and caveats: docs/benchmarks-serving.md.

Prints a table per model and the ratios, and writes benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_DIR = HERE / "serving_peers"
VENVS = HERE / ".peer-venvs"
RESULTS = HERE / "results"
CACHE = RESULTS / "serving-cache"
DATA = Path(os.environ.get("CENSUS_DATA", ROOT.parent / "shared" / "data" / "census"))
PYTHON = sys.executable
BIN = Path(PYTHON).parent
LUA = PEERS_DIR / "post.lua"
PROJECT = "bench"
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SERVER_CPU, WRK_CPU = "0", "1"

#: The census JSON instance: the 13 features of the original sample's serving signature.
NUMERIC = ("age", "education_num", "capital_gain", "capital_loss", "hours_per_week")
FEATURES = (
    "age", "workclass", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "gender", "capital_gain", "capital_loss", "hours_per_week",
    "native_country",
)  # fmt: skip
#: adult.test column order (fnlwgt is a sampling weight, income_bracket the label).
CSV_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "gender", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income_bracket",
)  # fmt: skip
MODEL_NAMES = {"sklearn": "census", "onnx": "census_dnn"}

FINAL_AFTER_S = 10.0
FULL_CELLS = ((1, 1), (8, 1), (64, 1), (8, 64), (64, 64))
QUICK_CELLS = ((1, 1), (64, 1), (8, 64))

#: Packages of each peer venv (scikit-learn is pinned to the project venv's version, since the
#: pickled pipeline needs it; numpy and pandas too when the peer allows it).
PEER_PACKAGES: dict[str, list[str]] = {
    # The HTTP ceiling with uvicorn's fast loop and parser (uvicorn pinned to the project's).
    "uvloop": ["uvicorn", "uvloop", "httptools"],
    "mlflow": ["mlflow==3.17.2"],  # 3.18.0 needs an mlflow-skinny not on PyPI yet
    "bentoml": ["bentoml==1.4.40"],
    # uvloop 0.22+ crashes MLServer 1.7.1's inference pool (SERVING_NOTES.md §3.3, #2286).
    "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.22"],
    "ray": ["ray[serve]==2.60.0"],
}
#: Reported versions (pip names).
VERSION_KEYS = (
    "mlengine", "scikit-learn", "numpy", "pandas", "joblib", "onnxruntime", "torch", "uvicorn",
    "uvloop", "httptools", "starlette", "fastapi", "orjson", "pydantic", "mlflow", "bentoml",
    "mlserver", "mlserver-sklearn", "ray",
)  # fmt: skip


class Unavailable(Exception):
    """A server that cannot be installed, started or checked here (the message says why)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, for the table


class NotYet(Unavailable):
    """Ours: the piece is not in this checkout yet (recorded as skipped, not failed)."""


class NotInstalled(Unavailable):
    """A peer whose packages cannot be installed here (recorded as skipped)."""


def _status(exc: Exception) -> str:
    return "skipped" if isinstance(exc, NotYet | NotInstalled) else "failed"


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, Unavailable) else f"{type(exc).__name__}: {exc}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLENGINE_")}
    env.update(THREADS)
    env.update(extra)
    return env


def venv_env(python: Path, **extra: str) -> dict[str, str]:
    """``base_env`` with the venv activated (peers spawn their own tools by name)."""
    env = base_env(**extra)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    env.pop("PYTHONPATH", None)
    return env


# -- versions of things -----------------------------------------------------------------------


def pip_versions(python: str) -> dict[str, str]:
    out = subprocess.run(
        [python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return {}
    listed = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out.stdout)}
    return {k: listed[k] for k in VERSION_KEYS if k in listed}


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    wrk = None
    if shutil.which("wrk"):
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
        "wrk": (wrk.stdout + wrk.stderr).strip().splitlines()[0] if wrk else None,
    }


# -- models and bodies ------------------------------------------------------------------------


def _trained(model_file: Path, want: dict[str, Any]) -> bool:
    stamp = model_file.parent.parent / "bench-stamp.json"
    return model_file.exists() and stamp.exists() and json.loads(stamp.read_text()) == want


def _train(kind: str, folder: str, args: list[str], model_file: Path, want: dict) -> None:
    job_dir = model_file.parent.parent
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    log(f"training the {kind} census model into {job_dir} …")
    started = time.monotonic()
    out = subprocess.run(
        [PYTHON, "-m", "trainer.task", "--train-files", str(DATA / "adult.data"),
         "--eval-files", str(DATA / "adult.test"), "--job-dir", str(job_dir), *args],
        cwd=ROOT / "examples" / "census" / folder,
        env=base_env(),
        capture_output=True,
        text=True,
    )  # fmt: skip
    (job_dir / "train.log").write_text(out.stdout + out.stderr)
    if out.returncode != 0 or not model_file.exists():
        raise RuntimeError(f"training {kind} failed; see {job_dir / 'train.log'}")
    (job_dir / "bench-stamp.json").write_text(json.dumps(want))
    log(f"trained {kind} in {time.monotonic() - started:.0f} s")


def prepare_models(models: list[str], versions: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Train what is missing (or was trained with other library versions); the model dirs."""
    out = {}
    if "sklearn" in models:
        want = {"scikit-learn": versions.get("scikit-learn"), "numpy": versions.get("numpy")}
        model_file = CACHE / "sklearn" / "model" / "model.joblib"
        if not _trained(model_file, want):
            _train("sklearn", "sklearn", [], model_file, want)
        out["sklearn"] = {"dir": str(model_file.parent), "trained_with": want}
    if "onnx" in models:
        want = {"torch": versions.get("torch"), "train_steps": 300}
        model_file = CACHE / "onnx" / "model" / "model.onnx"
        if not _trained(model_file, want):
            _train("onnx", "pytorch", ["--train-steps", "300"], model_file, want)
        out["onnx"] = {"dir": str(model_file.parent), "trained_with": want}
    for entry in out.values():
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads((Path(entry["dir"]) / "metadata.json").read_text())
            metrics = meta.get("metrics") or {}
            entry["accuracy"] = meta.get("accuracy", metrics.get("accuracy"))
    return out


def census_instances(rows: int) -> list[dict[str, Any]]:
    """The first ``rows`` records of adult.test, shaped as the census JSON request (string
    values keep the file's leading space, as in the original sample's ``test.json``)."""
    instances = []
    with (DATA / "adult.test").open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("|") or not line.strip():
                continue
            record = dict(zip(CSV_COLUMNS, line.rstrip("\n").split(","), strict=True))
            instances.append({k: int(record[k]) if k in NUMERIC else record[k] for k in FEATURES})
            if len(instances) == rows:
                return instances
    raise RuntimeError(f"adult.test has fewer than {rows} records")


def v2_body(instances: list[dict[str, Any]]) -> dict[str, Any]:
    """The Open Inference Protocol (V2) request MLServer's PandasCodec turns into a frame."""
    inputs = []
    for name in FEATURES:
        values = [x[name] for x in instances]
        entry: dict[str, Any] = {"name": name, "shape": [len(values)], "data": values}
        if name in NUMERIC:
            entry["datatype"] = "INT64"
        else:
            entry["datatype"] = "BYTES"
            entry["parameters"] = {"content_type": "str"}
        inputs.append(entry)
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


#: body format → how the instances are wrapped.
BODY_FORMATS: dict[str, Callable[[list[dict[str, Any]]], Any]] = {
    "v1": lambda xs: {"instances": xs},
    "mlflow": lambda xs: {"dataframe_records": xs},
    "v2": v2_body,
}


def prepare_bodies() -> dict[str, dict[str, Any]]:
    folder = CACHE / "bodies"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for rows in (1, 64):
        instances = census_instances(rows)
        for fmt, wrap in BODY_FORMATS.items():
            path = folder / f"{fmt}_{rows}.json"
            path.write_bytes(json.dumps(wrap(instances), separators=(",", ":")).encode())
            out[f"{fmt}_{rows}"] = {"path": str(path), "bytes": path.stat().st_size}
    return out


# -- peer venvs -------------------------------------------------------------------------------


def ensure_venv(peer: str, pins: dict[str, str]) -> Path:
    """benchmarks/.peer-venvs/<peer>/bin/python with the peer's packages (installed once)."""
    VENVS.mkdir(parents=True, exist_ok=True)
    ignore = VENVS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    venv = VENVS / peer
    python = venv / "bin" / "python"
    stamp = venv / "bench-spec.json"
    if peer == "uvloop":  # no model in there
        tries = [[f"uvicorn=={pins['uvicorn']}", "uvloop", "httptools"]]
    else:
        tries = [
            [
                *PEER_PACKAGES[peer],
                *(f"{k}=={pins[k]}" for k in ("scikit-learn", "numpy", "pandas")),
            ],
            [*PEER_PACKAGES[peer], f"scikit-learn=={pins['scikit-learn']}"],
        ]
    if stamp.exists() and python.exists():
        done = json.loads(stamp.read_text())
        if done.get("packages") in tries:
            return python
        if done.get("failed") == tries:
            raise NotInstalled(done["reason"])
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    logfile = CACHE / "logs" / f"pip-{peer}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    reason = ""
    for packages in tries:
        log(f"installing into {venv}: {' '.join(packages)} (log: {logfile})")
        with logfile.open("a") as out:
            rc = subprocess.run(
                [str(python), "-m", "pip", "install", "--disable-pip-version-check",
                 "--no-input", *packages],
                stdout=out,
                stderr=subprocess.STDOUT,
            ).returncode  # fmt: skip
        if rc == 0:
            stamp.write_text(json.dumps({"packages": packages}))
            return python
        lines = logfile.read_text().strip().splitlines()
        errors = [x for x in lines if x.startswith("ERROR")][-2:] or lines[-2:]
        detail = " | ".join(x[:200] for x in errors)
        reason = f"pip install {' '.join(packages)} failed: {detail}"
    stamp.write_text(json.dumps({"failed": tries, "reason": reason}))
    raise NotInstalled(reason)


# -- processes --------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def tree_pids(root: int) -> list[int]:
    """``root`` and every live descendant (by parent pid, read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu(pids: list[int]) -> float:
    """utime+stime of the processes plus what their reaped children used, in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat(pid)
        if fields:
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


def machine_busy() -> tuple[float, float]:
    """(busy jiffies over all CPUs, now) from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), time.monotonic()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A server process tree pinned to CPU 0, in its own session, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None):
        self.name = name
        self.logfile = CACHE / "logs" / f"{name}.log"
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.logfile.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *argv],
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        text = self.logfile.read_text(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:])

    def stop(self) -> None:
        """SIGTERM to its session, then to any straggler of its tree; SIGKILL after a while."""
        pids = {pid: (_stat(pid) or ["?"] * 22)[19] for pid in tree_pids(self.pid)}
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 1.0)):
            left = [p for p, start in pids.items() if (_stat(p) or [None] * 22)[19] == start]
            left = [p for p in left if (_stat(p) or ["", "Z"])[0] != "Z"]
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(wait)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()


# -- load -------------------------------------------------------------------------------------


@dataclass
class Target:
    """One model behind one server: where to POST what, and how to read the predictions."""

    model: str
    url: str
    body: str  # body format (BODY_FORMATS key)
    extract: Callable[[Any], list[Any]]
    check: bool = True


def v1_predictions(answer: Any) -> list[Any]:
    return list(answer["predictions"])


def bare_list(answer: Any) -> list[Any]:
    return list(answer)


def v2_predictions(answer: Any) -> list[Any]:
    return list(answer["outputs"][0]["data"])


def same_predictions(model: str, got: list[Any], expected: list[Any]) -> str | None:
    """None when equal (ONNX probabilities within 1e-4), else what differs."""
    if len(got) != len(expected):
        return f"{len(got)} predictions for {len(expected)} instances"
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if model == "onnx":
            ok = isinstance(g, dict) and g.get("classes") == e["classes"]
            pairs = zip(g["probabilities"], e["probabilities"], strict=True) if ok else ()
            ok = ok and all(abs(a - b) <= 1e-4 for a, b in pairs)
        else:
            ok = g == e
        if not ok:
            return f"instance {i}: got {str(g)[:120]}, expected {str(e)[:120]}"
    return None


def wait_ready(
    process: Process, target: Target, bodies: dict, timeout: float, final: tuple[int, ...] = ()
) -> float:
    """Seconds from launch until the 1-row request answers 200."""
    body = Path(bodies[f"{target.body}_1"]["path"]).read_bytes()
    deadline = time.monotonic() + timeout
    last, first_final = "no answer", None
    while time.monotonic() < deadline:
        if not process.alive():
            raise Unavailable(f"exited with {process.proc.returncode}: {process.log_tail()}")
        try:
            answer = httpx.post(
                target.url, content=body, headers={"content-type": "application/json"}, timeout=5
            )
            if answer.status_code == 200:
                return time.monotonic() - process.started
            last = f"HTTP {answer.status_code}: {answer.text[:300]}"
            if answer.status_code not in final:
                first_final = None
            elif first_final is None:
                first_final = time.monotonic()
            elif time.monotonic() - first_final > FINAL_AFTER_S:
                raise NotYet(f"no :predict route yet: {target.url} answered {last}")
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise Unavailable(f"not ready after {timeout:.0f} s ({last}); log: {process.log_tail(3)}")


def check_target(target: Target, bodies: dict, expected: list[Any]) -> dict[str, Any]:
    body = Path(bodies[f"{target.body}_64"]["path"]).read_bytes()
    answer = httpx.post(
        target.url, content=body, headers={"content-type": "application/json"}, timeout=30
    )
    if answer.status_code != 200:
        raise Unavailable(f"64-row check: HTTP {answer.status_code}: {answer.text[:300]}")
    if not target.check:
        return {"equal": None, "note": "constant reply, not a model"}
    try:
        got = target.extract(answer.json())
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise Unavailable(f"64-row check: unexpected answer {answer.text[:300]} ({exc})") from None
    diff = same_predictions(target.model, got, expected)
    if diff:
        raise Unavailable(f"64-row check: predictions differ from in-process: {diff}")
    return {"equal": True, "rows": len(got)}


def run_wrk(
    process: Process, target: Target, bodies: dict, conc: int, rows: int, duration: float
) -> dict[str, Any]:
    body = bodies[f"{target.body}_{rows}"]["path"]
    out_file = CACHE / "logs" / "wrk.out"
    pids = tree_pids(process.pid)
    cpu0, (busy0, t0) = tree_cpu(pids), machine_busy()
    with out_file.open("wb") as out:
        wrk = subprocess.Popen(
            ["taskset", "-c", WRK_CPU, "wrk", "-t1", f"-c{conc}", f"-d{duration:g}s",
             "--timeout", "10s", "--latency", "-s", str(LUA), target.url, "--", body,
             "application/json"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        _, status, usage = os.wait4(wrk.pid, 0)
        wrk.returncode = os.waitstatus_to_exitcode(status)
    busy1, t1 = machine_busy()
    cpu1 = tree_cpu(tree_pids(process.pid))
    elapsed = t1 - t0
    text = out_file.read_text(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith("JSON ")), None)
    if line is None:
        return {"conc": conc, "rows": rows, "error": f"wrk failed: {text.strip()[-300:]}"}
    w = json.loads(line[5:])
    seconds = w["duration_us"] / 1e6
    server = (cpu1 - cpu0) / elapsed
    wrk_cores = (usage.ru_utime + usage.ru_stime) / elapsed
    busy = (busy1 - busy0) / elapsed
    rps = w["requests"] / seconds
    return {
        "conc": conc,
        "rows": rows,
        "rps": round(rps, 1),
        "rows_s": round(rps * rows, 1),
        "ok_rps": round((w["requests"] - w["status"]) / seconds, 1),
        "p50_ms": w["p50_us"] / 1000,
        "p90_ms": w["p90_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "max_ms": w["max_us"] / 1000,
        "requests": w["requests"],
        "non_2xx": w["status"],
        "socket_errors": w["connect"] + w["read"] + w["write"] + w["timeout"],
        "timeouts": w["timeout"],
        "server_cores": round(server, 3),
        "rps_per_server_core": round(rps / server, 1) if server > 0.05 else None,
        "wrk_cores": round(wrk_cores, 3),
        "machine_busy_cores": round(busy, 3),
        "foreign_cores": round(max(0.0, busy - server - wrk_cores), 3),
    }


MEDIAN_KEYS = ("rps", "rows_s", "p50_ms", "p90_ms", "p99_ms", "server_cores", "foreign_cores")


def load_cells(
    process: Process, target: Target, bodies: dict, settings: Settings
) -> list[dict[str, Any]]:
    cells = []
    for conc, rows in settings.cells:
        runs = []
        for _ in range(settings.repeat):
            runs.append(run_wrk(process, target, bodies, conc, rows, settings.duration))
            time.sleep(1.0)  # let a server with a backlog drain before the next run
        good = [r for r in runs if "error" not in r]
        cell: dict[str, Any] = {"model": target.model, "conc": conc, "rows": rows, "runs": runs}
        if good:
            cell["median"] = {
                k: round(statistics.median(r[k] for r in good), 3) for k in MEDIAN_KEYS
            }
            cell["median"]["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in good)
        last = good[-1] if good else runs[-1]
        log(
            f"  {process.name} {target.model} c={conc} rows={rows}: "
            + (
                f"{last['rps']:.0f} rps, p99 {last['p99_ms']:.1f} ms, server "
                f"{last['server_cores']:.2f} cores, foreign {last['foreign_cores']:.2f}, "
                f"errors {last['non_2xx'] + last['socket_errors']}"
                if good
                else last["error"]
            )
        )
        cells.append(cell)
    return cells


# -- servers ----------------------------------------------------------------------------------


@dataclass
class Started:
    process: Process
    targets: list[Target]
    config: dict[str, Any] = field(default_factory=dict)
    ready_timeout: float = 120.0
    #: Statuses that end the wait for readiness when they last FINAL_AFTER_S (ours: 404 is
    #: "no such route" while the data plane is not in this checkout).
    final_statuses: tuple[int, ...] = ()
    #: Removed once the server is stopped.
    cleanup: list[Path] = field(default_factory=list)


@dataclass
class ServerSpec:
    key: str
    label: str
    models: tuple[str, ...]
    start: Callable[[Context], Started]
    body: str = "v1: {'instances': [...]}"


@dataclass
class Context:
    models: dict[str, dict[str, Any]]
    bodies: dict[str, dict[str, Any]]
    pins: dict[str, str]
    selected_models: list[str]
    versions: dict[str, dict[str, str]]
    ours_home: Path | None = None
    ours_error: str | None = None


def _uvicorn_ceiling(python: Path, name: str, extra: list[str]) -> Started:
    port = free_port()
    argv = [str(python), "-m", "uvicorn", "ceiling_app:app", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning", *extra]  # fmt: skip
    process = Process(name, argv, venv_env(python), cwd=PEERS_DIR)
    url = f"http://127.0.0.1:{port}/predict"
    return Started(process, [Target("any", url, "v1", v1_predictions, check=False)], {"argv": argv})


def start_http_ceiling(ctx: Context) -> Started:
    started = _uvicorn_ceiling(Path(PYTHON), "http-ceiling", [])
    # uvicorn's "auto" loop and parser: uvloop and httptools when the venv has them.
    project = ctx.versions["project"]
    started.config["loop"] = "uvloop" if "uvloop" in project else "asyncio"
    started.config["http"] = "httptools" if "httptools" in project else "h11"
    return started


def start_http_ceiling_uvloop(ctx: Context) -> Started:
    python = ensure_venv("uvloop", ctx.pins)
    ctx.versions["uvloop"] = pip_versions(str(python))
    return _uvicorn_ceiling(
        python, "http-ceiling-uvloop", ["--loop", "uvloop", "--http", "httptools"]
    )


def start_mlflow(ctx: Context) -> Started:
    python = ensure_venv("mlflow", ctx.pins)
    ctx.versions["mlflow"] = pip_versions(str(python))
    mlmodel = CACHE / "run" / "mlflow-model"
    mlmodel.parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [str(python), str(PEERS_DIR / "mlflow_save.py"),
         str(Path(ctx.models["sklearn"]["dir"]) / "model.joblib"),
         ctx.bodies["v1_64"]["path"], str(mlmodel)],
        env=venv_env(python, MLFLOW_TRACKING_URI=f"file://{CACHE / 'run' / 'mlruns'}"),
        capture_output=True,
        text=True,
    )  # fmt: skip
    if out.returncode != 0:
        raise Unavailable(f"saving the MLflow model failed: {out.stderr.strip()[-400:]}")
    port = free_port()
    argv = [str(python.parent / "mlflow"), "models", "serve", "-m", str(mlmodel),
            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]  # fmt: skip
    env = venv_env(python, MLFLOW_TRACKING_URI=f"file://{CACHE / 'run' / 'mlruns'}")
    process = Process("mlflow", argv, env)
    url = f"http://127.0.0.1:{port}/invocations"
    targets = [Target("sklearn", url, "mlflow", v1_predictions)]
    return Started(process, targets, {"argv": argv, "model": "mlflow.sklearn, inferred signature"})


def _bento(ctx: Context, service: str, name: str) -> Started:
    python = ensure_venv("bentoml", ctx.pins)
    ctx.versions["bentoml"] = pip_versions(str(python))
    port = free_port()
    argv = [str(python.parent / "bentoml"), "serve", f"bento_service:{service}",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = venv_env(
        python,
        CENSUS_MODEL=str(Path(ctx.models["sklearn"]["dir"]) / "model.joblib"),
        BENTOML_DO_NOT_TRACK="true",
        BENTOML_HOME=str(CACHE / "run" / "bentoml-home"),
    )
    process = Process(name, argv, env, cwd=PEERS_DIR)
    targets = [Target("sklearn", f"http://127.0.0.1:{port}/predict", "v1", bare_list)]
    config = {"argv": argv, "service": service, "workers": 1}
    if service == "CensusBatch":
        config.update(batchable=True, max_batch_size=256, max_latency_ms=1000)
    return Started(process, targets, config)


def start_bento(ctx: Context) -> Started:
    return _bento(ctx, "CensusPlain", "bentoml")


def start_bento_batch(ctx: Context) -> Started:
    return _bento(ctx, "CensusBatch", "bentoml-batch")


def _mlserver(ctx: Context, name: str, batching: bool) -> Started:
    python = ensure_venv("mlserver", ctx.pins)
    ctx.versions["mlserver"] = pip_versions(str(python))
    folder = CACHE / "run" / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "census").mkdir(parents=True)
    port = free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "debug": False,
        "parallel_workers": 1,
    }
    model_settings: dict[str, Any] = {
        "name": "census",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {
            "uri": str(Path(ctx.models["sklearn"]["dir"]) / "model.joblib"),
            "version": "v1",
        },
    }
    if batching:
        model_settings.update(max_batch_size=64, max_batch_time=0.005)
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    (folder / "census" / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    argv = [str(python.parent / "mlserver"), "start", str(folder)]
    process = Process(name, argv, venv_env(python))
    url = f"http://127.0.0.1:{port}/v2/models/census/infer"
    config = {"argv": argv, "settings": settings, "model_settings": model_settings}
    return Started(process, [Target("sklearn", url, "v2", v2_predictions)], config)


def start_mlserver(ctx: Context) -> Started:
    return _mlserver(ctx, "mlserver", batching=False)


def start_mlserver_batch(ctx: Context) -> Started:
    return _mlserver(ctx, "mlserver-batch", batching=True)


def _ray(ctx: Context, name: str, batching: bool) -> Started:
    python = ensure_venv("ray", ctx.pins)
    ctx.versions["ray"] = pip_versions(str(python))
    port = free_port()
    model = str(Path(ctx.models["sklearn"]["dir"]) / "model.joblib")
    argv = [str(python), str(PEERS_DIR / "ray_app.py"), str(port), model]
    temp_dir = Path(tempfile.mkdtemp(prefix="raybench-"))  # short: Ray's sockets live there
    env = venv_env(
        python,
        RAY_BENCH_TMP=str(temp_dir),
        RAY_BATCH="1" if batching else "0",
        RAY_MAX_ONGOING="100",
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
    )
    env.pop("RAY_ADDRESS", None)
    process = Process(name, argv, env, cwd=PEERS_DIR)
    config: dict[str, Any] = {"argv": argv, "max_ongoing_requests": 100, "num_cpus": 2}
    if batching:
        config["serve.batch"] = {"max_batch_size": 64, "batch_wait_timeout_s": 0.005}
    url = f"http://127.0.0.1:{port}/predict"
    targets = [Target("sklearn", url, "v1", v1_predictions)]
    return Started(process, targets, config, 240.0, cleanup=[temp_dir])


def start_ray(ctx: Context) -> Started:
    return _ray(ctx, "ray", batching=False)


def start_ray_batch(ctx: Context) -> Started:
    return _ray(ctx, "ray-batch", batching=True)


# -- ours -------------------------------------------------------------------------------------


def _ours_env(home: Path) -> dict[str, str]:
    return base_env(MLENGINE_HOME=str(home), MLENGINE_SCHEDULER_INTERVAL="0.1")


def _ours_targets(ctx: Context, base: str) -> list[Target]:
    return [
        Target(m, f"{base}/v1/projects/{PROJECT}/models/{MODEL_NAMES[m]}:predict", "v1",
               v1_predictions)
        for m in ctx.selected_models
    ]  # fmt: skip


def _wait_server_url(process: Process, home: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise Unavailable(f"mlengine server exited: {process.log_tail()}")
        state = home / "server.json"
        if state.exists():
            with contextlib.suppress(ValueError, KeyError, httpx.HTTPError):
                url = str(json.loads(state.read_text())["url"])
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    return url
        time.sleep(0.2)
    raise Unavailable(f"mlengine server did not answer /healthz in {timeout:.0f} s")


def deploy(client: httpx.Client, name: str, model_dir: str, timeout: float = 300.0) -> float:
    """models.create + versions.create, then poll the operation; the seconds it took."""
    started = time.monotonic()
    answer = client.post(f"/v1/projects/{PROJECT}/models", json={"name": name})
    if answer.status_code not in (200, 409):
        raise Unavailable(f"models.create {name}: HTTP {answer.status_code}: {answer.text[:300]}")
    answer = client.post(
        f"/v1/projects/{PROJECT}/models/{name}/versions",
        json={"name": "v1", "deploymentUri": model_dir},
    )
    if answer.status_code != 200:
        raise Unavailable(f"versions.create {name}: HTTP {answer.status_code}: {answer.text[:300]}")
    operation = answer.json()
    deadline = time.monotonic() + timeout
    while not operation.get("done"):
        if time.monotonic() > deadline:
            raise Unavailable(f"versions.create {name}: not done after {timeout:.0f} s")
        time.sleep(0.2)
        answer = client.get(f"/v1/{operation['name']}")
        answer.raise_for_status()
        operation = answer.json()
    if "error" in operation:
        raise Unavailable(f"versions.create {name} failed: {json.dumps(operation['error'])[:400]}")
    return time.monotonic() - started


def start_ours_server(ctx: Context) -> Started:
    """``mlengine server`` on a fresh home; the models deployed through the REST API."""
    if ctx.ours_error:
        raise Unavailable(ctx.ours_error)
    home = Path(tempfile.mkdtemp(prefix="mlengine-bench-home-"))
    ctx.ours_home = home
    argv = [PYTHON, "-m", "mlengine.server", "--host", "127.0.0.1", "--port", "0"]
    process = Process("ours-server", argv, _ours_env(home))
    try:
        url = _wait_server_url(process, home)
        deployed = {}
        with httpx.Client(base_url=url, timeout=30) as client:
            for model in ctx.selected_models:
                seconds = deploy(client, MODEL_NAMES[model], ctx.models[model]["dir"])
                deployed[MODEL_NAMES[model]] = round(seconds, 2)
                log(f"  deployed {MODEL_NAMES[model]} in {seconds:.1f} s")
    except Exception as exc:
        process.stop()
        ctx.ours_error = f"deploying through the REST API failed: {exc}"
        raise Unavailable(ctx.ours_error) from None
    config = {"argv": argv, "home": str(home), "deploy_seconds": deployed}
    return Started(process, _ours_targets(ctx, url), config, 60.0, (404, 405))


def _ours_serve(ctx: Context, workers: int) -> Started:
    if ctx.ours_home is None:
        raise Unavailable(ctx.ours_error or "needs ours-server (the deployment) first")
    mlengine = BIN / "mlengine"
    help_ = subprocess.run(
        [str(mlengine), "serve", "--help"], capture_output=True, text=True, env=base_env()
    )
    if help_.returncode != 0:
        detail = (help_.stdout + help_.stderr).strip().splitlines()[-1:]
        raise NotYet(f"`mlengine serve` is not in this checkout yet ({' '.join(detail)})")
    port = free_port()
    argv = [str(mlengine), "serve", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers)]  # fmt: skip
    process = Process(f"ours-serve-w{workers}", argv, _ours_env(ctx.ours_home))
    defaults = dict(
        re.findall(r"--([a-z-]+)[^[]*?\[default: ([^;\]]+)", " ".join(help_.stdout.split()))
    )
    config = {"argv": argv, "home": str(ctx.ours_home), "defaults": defaults}
    targets = _ours_targets(ctx, f"http://127.0.0.1:{port}")
    return Started(process, targets, config, 60.0, (404, 405))


def start_ours_serve_w1(ctx: Context) -> Started:
    return _ours_serve(ctx, 1)


def start_ours_serve_w2(ctx: Context) -> Started:
    return _ours_serve(ctx, 2)


BOTH = ("sklearn", "onnx")
SERVERS = (
    ServerSpec("http-ceiling", "HTTP ceiling: raw ASGI, project venv's uvicorn", BOTH,
               start_http_ceiling),
    ServerSpec("http-ceiling-uvloop", "HTTP ceiling: same, --loop uvloop --http httptools", BOTH,
               start_http_ceiling_uvloop),
    ServerSpec("ours-server", "ours: mlengine server …/models/M:predict", BOTH,
               start_ours_server),
    ServerSpec("ours-serve-w1", "ours: mlengine serve --workers 1", BOTH, start_ours_serve_w1),
    ServerSpec("ours-serve-w2", "ours: mlengine serve --workers 2", BOTH, start_ours_serve_w2),
    ServerSpec("mlflow", "MLflow models serve (-w 1)", ("sklearn",), start_mlflow,
               "mlflow: {'dataframe_records': [...]}"),
    ServerSpec("bentoml", "BentoML, no batching", ("sklearn",), start_bento),
    ServerSpec("bentoml-batch", "BentoML, adaptive batching", ("sklearn",), start_bento_batch),
    ServerSpec("mlserver", "MLServer, no batching", ("sklearn",), start_mlserver,
               "v2: Open Inference Protocol, columnar, content_type pd"),
    ServerSpec("mlserver-batch", "MLServer, adaptive batching", ("sklearn",),
               start_mlserver_batch, "v2: Open Inference Protocol, columnar, content_type pd"),
    ServerSpec("ray", "Ray Serve, no batching", ("sklearn",), start_ray),
    ServerSpec("ray-batch", "Ray Serve, @serve.batch", ("sklearn",), start_ray_batch),
)  # fmt: skip
PEER_KEYS = tuple(s.key for s in SERVERS if not s.key.startswith(("ours", "http-ceiling")))
OURS_KEYS = tuple(s.key for s in SERVERS if s.key.startswith("ours"))


# -- orchestration ----------------------------------------------------------------------------


@dataclass
class Settings:
    duration: float
    cells: tuple[tuple[int, int], ...]
    repeat: int
    inproc_seconds: float


def selected(only: str | None) -> tuple[list[str], bool]:
    """(server keys, whether to measure in-process) for ``--only``."""
    if not only:
        return [s.key for s in SERVERS], True
    tokens = [t.strip() for t in only.split(",") if t.strip()]
    keys: list[str] = []
    for token in tokens:
        if token == "inprocess":
            continue
        group = {"peers": PEER_KEYS, "ceilings": ("http-ceiling", "http-ceiling-uvloop")}.get(token)
        matches = group or [
            s.key for s in SERVERS if s.key == token or s.key.startswith(token + "-")
        ]
        if not matches:
            raise SystemExit(f"--only: unknown name {token!r}")
        keys += [k for k in matches if k not in keys]
    if any(k.startswith("ours-serve") for k in keys) and "ours-server" not in keys:
        keys.insert(0, "ours-server")  # the deployment `mlengine serve` reads
    order = [s.key for s in SERVERS]
    return sorted(keys, key=order.index), "inprocess" in tokens


def in_process(model: str, ctx: Context, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        ["taskset", "-c", SERVER_CPU, PYTHON, str(PEERS_DIR / "inprocess.py"), model,
         ctx.models[model]["dir"], ctx.bodies["v1_1"]["path"], ctx.bodies["v1_64"]["path"],
         str(seconds)],
        capture_output=True,
        text=True,
        env=base_env(),
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"in-process {model} failed: {out.stderr.strip()[-800:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure_server(spec: ServerSpec, ctx: Context, settings: Settings, expected: dict) -> dict:
    record: dict[str, Any] = {"label": spec.label, "body": spec.body, "cells": []}
    models = [m for m in ctx.selected_models if m in spec.models]
    if not models:
        record.update(status="skipped", reason="serves none of the selected models")
        return record
    log(f"{spec.key}: starting")
    try:
        started = spec.start(ctx)
    except Exception as exc:  # anything a peer does wrong is recorded, and the run goes on
        record.update(status=_status(exc), reason=_reason(exc))
        log(f"{spec.key}: {record['status']}: {record['reason']}")
        return record
    process = started.process
    record.update(config=started.config, log=str(process.logfile))
    try:
        targets = [t for t in started.targets if t.model in models or t.model == "any"]
        timeout, final = started.ready_timeout, started.final_statuses
        record["startup_s"] = round(wait_ready(process, targets[0], ctx.bodies, timeout, final), 2)
        time.sleep(0.5)
        pids = tree_pids(process.pid)
        record["processes"] = len(pids)
        record["rss_mb_idle"] = tree_rss_mb(pids)
        record["cpus_allowed"] = sorted(
            set().union(*(_affinity(p) for p in pids)) if pids else set()
        )
        record["check"] = {}
        for target in targets:
            check_model = models[0] if target.model == "any" else target.model
            if target.model != "any":
                wait_ready(process, target, ctx.bodies, timeout, final)
            record["check"][check_model] = check_target(target, ctx.bodies, expected[check_model])
        for target in targets:
            record["cells"] += load_cells(process, target, ctx.bodies, settings)
        record["rss_mb_after"] = tree_rss_mb(tree_pids(process.pid))
        record["status"] = "ok"
    except Exception as exc:
        record.update(status=_status(exc), reason=_reason(exc))
        log(f"{spec.key}: {record['status']}: {record['reason']}")
    finally:
        process.stop()
        for path in started.cleanup:
            shutil.rmtree(path, ignore_errors=True)
    return record


def _affinity(pid: int) -> set[int]:
    try:
        return set(os.sched_getaffinity(pid))
    except OSError:
        return set()


# -- report -----------------------------------------------------------------------------------


def cell_of(record: dict, model: str, conc: int, rows: int) -> dict | None:
    for cell in record.get("cells", []):
        if cell["model"] in (model, "any") and (cell["conc"], cell["rows"]) == (conc, rows):
            return cell.get("median")
    return None


def ratios(model: str, servers: dict[str, dict], inproc: dict | None) -> dict[str, Any]:
    def rps(key: str, conc: int, rows: int) -> float | None:
        cell = cell_of(servers.get(key, {}), model, conc, rows)
        return cell["rps"] if cell else None

    def p99(key: str, conc: int, rows: int) -> float | None:
        cell = cell_of(servers.get(key, {}), model, conc, rows)
        return cell["p99_ms"] if cell else None

    peers = {k: rps(k, 64, 1) for k in PEER_KEYS if servers.get(k, {}).get("status") == "ok"}
    peers = {k: v for k, v in peers.items() if v}
    best_rps = max(peers.items(), key=lambda kv: kv[1]) if peers else None
    peer_p99 = {k: p99(k, 64, 1) for k in peers}
    peer_p99 = {k: v for k, v in peer_p99.items() if v}
    best_p99 = min(peer_p99.items(), key=lambda kv: kv[1]) if peer_p99 else None
    ceiling = rps("http-ceiling", 64, 1)
    raw64 = ((inproc or {}).get("cases", {}).get("raw", {}).get("64") or {}).get("rows_per_cpu_s")
    out: dict[str, Any] = {
        "best_peer_rps_c64_1row": {
            "server": best_rps[0],
            "rps": best_rps[1],
            "p99_ms": peer_p99.get(best_rps[0]),
        }
        if best_rps
        else None,
        "lowest_peer_p99_c64_1row": {"server": best_p99[0], "p99_ms": best_p99[1]}
        if best_p99
        else None,
        "http_ceiling_rps_c64_1row": ceiling,
        "inprocess_rows_per_cpu_s_64rows": raw64,
        "ours": {},
    }
    for key in OURS_KEYS:
        if servers.get(key, {}).get("status") != "ok":
            continue
        mine, mine_p99 = rps(key, 64, 1), p99(key, 64, 1)
        rows64 = [
            c["rows_s"]
            for conc in (8, 64)
            if (c := cell_of(servers[key], model, conc, 64)) is not None
        ]
        out["ours"][key] = {
            "rps_c64_1row": mine,
            "vs_best_peer_rps": _div(mine, best_rps[1] if best_rps else None),
            "p99_ms_c64_1row": mine_p99,
            "p99_vs_lowest_peer_p99": _div(mine_p99, best_p99[1] if best_p99 else None),
            "vs_http_ceiling": _div(mine, ceiling),
            "rows_s_64rows_best": max(rows64) if rows64 else None,
            "rows_s_64rows_vs_inprocess": _div(max(rows64) if rows64 else None, raw64),
        }
    return out


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{value:.{digits}f}"


def print_report(report: dict[str, Any], settings: Settings) -> None:
    cells = settings.cells
    for model in report["models"]:
        print(f"\n== {model} ({MODEL_NAMES[model]}): rps / p99 ms per conc×rows-per-request "
              f"({settings.duration:g} s runs, median of {settings.repeat}) ==")  # fmt: skip
        header = f"{'server':<22}" + "".join(f"{f'c{c}×{r}':>17}" for c, r in cells)
        print(header + f"{'rows/s×64':>10}{'cores':>7}{'errors':>8}  notes")
        for key, record in report["servers"].items():
            models = {c["model"] for c in record.get("cells", [])}
            if record.get("status") == "ok" and not ({model, "any"} & models):
                continue
            if record.get("status") != "ok":
                if record.get("reason") == "serves none of the selected models":
                    continue
                if model not in next((s.models for s in SERVERS if s.key == key), ()):
                    continue
                print(f"{key:<22}{record.get('status', '?')}: {record.get('reason', '')[:150]}")
                continue
            line, cores, rows_s, errors, noisy = f"{key:<22}", [0.0], [], 0, False
            for conc, rows in cells:
                cell = cell_of(record, model, conc, rows)
                if cell is None:
                    line += f"{'—':>17}"
                    continue
                line += f"{_fmt(cell['rps']) + ' / ' + _fmt(cell['p99_ms'], 1):>17}"
                cores.append(cell["server_cores"])
                rows_s += [cell["rows_s"]] if rows > 1 else []
                errors += cell["errors"]
                noisy = noisy or cell["foreign_cores"] > 0.2
            notes = "foreign load > 0.2 core" if noisy else ""
            best_rows = _fmt(max(rows_s)) if rows_s else "—"
            print(line + f"{best_rows:>10}{_fmt(max(cores), 2):>7}{errors:>8}  {notes}")
        inproc = report["inprocess"].get(model)
        if inproc:
            for case, by_rows in inproc.get("cases", {}).items():
                one, many = by_rows.get("1", {}), by_rows.get("64", {})
                print(
                    f"{'inprocess-' + case:<22}1 row: {_fmt(one.get('calls_per_cpu_s'))} "
                    f"calls/CPU-s (p50 {one.get('wall_p50_ms')} ms); 64 rows: "
                    f"{_fmt(many.get('calls_per_cpu_s'))} calls/CPU-s = "
                    f"{_fmt(many.get('rows_per_cpu_s'))} rows/CPU-s"
                )
            if inproc.get("mlengine_error"):
                print(f"{'inprocess-mlengine':<22}n/a: {inproc['mlengine_error'][:120]}")
        r = report["ratios"].get(model, {})
        best, best_p99 = r.get("best_peer_rps_c64_1row"), r.get("lowest_peer_p99_c64_1row")
        print(
            f"best peer c=64×1: {best['server']} {best['rps']:.0f} rps" if best else
            "best peer c=64×1: —",
            f"| lowest peer p99 c=64×1: {best_p99['server']} {best_p99['p99_ms']:.1f} ms"
            if best_p99 else "",
            f"| HTTP ceiling c=64×1: {_fmt(r.get('http_ceiling_rps_c64_1row'))} rps",
            f"| in-process 64 rows: {_fmt(r.get('inprocess_rows_per_cpu_s_64rows'))} rows/CPU-s",
        )  # fmt: skip
        if not r.get("ours"):
            ran = any(k in report["servers"] for k in OURS_KEYS)
            print("ours: no result (see the status lines above)" if ran else "ours: not selected")
        for key, o in r.get("ours", {}).items():
            print(
                f"{key}: ÷ best peer rps {_fmt(o['vs_best_peer_rps'], 2)}, p99 ÷ lowest peer p99 "
                f"{_fmt(o['p99_vs_lowest_peer_p99'], 2)}, ÷ HTTP ceiling "
                f"{_fmt(o['vs_http_ceiling'], 3)}, 64-row rows/s ÷ in-process rows/CPU-s "
                f"{_fmt(o['rows_s_64rows_vs_inprocess'], 2)}"
            )


def parse_cells(text: str) -> tuple[tuple[int, int], ...]:
    cells = []
    for part in text.split(","):
        conc, _, rows = part.strip().partition("x")
        cells.append((int(conc), int(rows or 1)))
    return tuple(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s runs, cells 1x1,64x1,8x64")
    parser.add_argument("--only", help="comma list: server names or prefixes, peers, ceilings, "
                        "inprocess (default: everything)")  # fmt: skip
    parser.add_argument("--models", default="sklearn,onnx", help="sklearn,onnx")
    parser.add_argument("--duration", type=float, help="seconds per load run (default 10)")
    parser.add_argument("--cells", help="CONCxROWS list, e.g. 1x1,8x1,64x1,8x64,64x64")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell (median reported)")
    parser.add_argument("--setup-only", action="store_true", help="train, install, no load")
    parser.add_argument("--out", type=Path, default=RESULTS / "serving.json")
    args = parser.parse_args()
    os.environ.update(THREADS)
    if shutil.which("wrk") is None and not args.setup_only:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 CPUs: the server on CPU 0, wrk on CPU 1")
    settings = Settings(
        duration=args.duration or (3.0 if args.quick else 10.0),
        cells=parse_cells(args.cells) if args.cells else QUICK_CELLS if args.quick else FULL_CELLS,
        repeat=max(1, args.repeat),
        inproc_seconds=1.0 if args.quick else 3.0,
    )
    keys, want_inproc = selected(args.only)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or set(models) - set(MODEL_NAMES):
        raise SystemExit(f"--models: choose from {', '.join(MODEL_NAMES)}")
    CACHE.mkdir(parents=True, exist_ok=True)

    main_versions = pip_versions(PYTHON)
    pins = {k: main_versions[k] for k in ("scikit-learn", "numpy", "pandas", "uvicorn")}
    ctx = Context(
        models=prepare_models(models, main_versions),
        bodies=prepare_bodies(),
        pins=pins,
        selected_models=models,
        versions={"project": main_versions},
    )
    if args.setup_only:
        for peer in PEER_PACKAGES:
            try:
                ensure_venv(peer, pins)
                ctx.versions[peer] = pip_versions(str(VENVS / peer / "bin" / "python"))
            except Unavailable as exc:
                log(f"{peer}: {exc}")
        print(json.dumps(ctx.versions, indent=2))
        return

    report: dict[str, Any] = {
        "benchmark": "serving",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "settings": {
            "duration_s": settings.duration,
            "cells": [{"conc": c, "rows": r} for c, r in settings.cells],
            "repeat": settings.repeat,
            "server_cpu": SERVER_CPU,
            "wrk_cpu": WRK_CPU,
            "threads": THREADS,
            "wrk": "-t1 -cN --timeout 10s --latency, post.lua",
            "servers": keys,
        },
        "machine": machine_info(),
        "versions": ctx.versions,
        "models": ctx.models,
        "bodies": ctx.bodies,
        "inprocess": {},
        "servers": {},
        "ratios": {},
    }
    specs = {s.key: s for s in SERVERS}
    expected = {}
    for model in models:
        seconds = settings.inproc_seconds if want_inproc else 0
        log(f"in-process {model} ({'measuring' if seconds else 'expected predictions only'})")
        result = in_process(model, ctx, seconds)
        expected[model] = result.pop("expected")
        if want_inproc:
            report["inprocess"][model] = result
    targets = sum(
        1 if key.startswith("http-ceiling") else len(set(models) & set(specs[key].models))
        for key in keys
    )
    # Per run: the duration + 1.3 s; per server 15-25 s to start, check and stop (Ray: 40).
    minutes = (targets * len(settings.cells) * settings.repeat * (settings.duration + 1.3)
               + len(keys) * 25) / 60  # fmt: skip
    log(
        f"{len(keys)} servers, {targets} server×model targets × {len(settings.cells)} cells × "
        f"{settings.duration:g} s: about {minutes:.0f} min (plus first-run installs)"
    )
    try:
        for key in keys:
            report["servers"][key] = measure_server(specs[key], ctx, settings, expected)
    finally:
        if ctx.ours_home is not None:
            shutil.rmtree(ctx.ours_home, ignore_errors=True)
    for model in models:
        report["ratios"][model] = ratios(model, report["servers"], report["inprocess"].get(model))
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    print_report(report, settings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
