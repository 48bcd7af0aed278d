"""Where the local executor's replicas go: which plans fit this machine, GPUs and ports.

:class:`~mlengine.executors.local.LocalProcessExecutor` asks this module three things:

- what the machine has (:func:`detect_gpus` from ``nvidia-smi -L``, :func:`memory_gib` from
  ``/proc/meminfo``; CPUs come from ``os.cpu_count()``);
- whether a plan can *ever* run here (:func:`placement_problem`: TPUs never, GPUs always as
  hard limits, CPU and memory only under strict placement);
- what a plan gets *now*: devices (:func:`assign_gpus`) and cluster ports (:func:`free_ports`),
  given what the running runs' handles (``"resources"``, ``"gpus"``, ``"port"``) already hold.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterable, Mapping, Sequence

from mlengine.domain.errors import ResourceExhausted
from mlengine.domain.machine_types import Resources
from mlengine.domain.replicas import ReplicaPlan
from mlengine.executors.base import RunHandle


def placement_problem(plan: ReplicaPlan, capacity: Resources, *, strict: bool) -> str | None:
    """Why ``plan`` can never run on a machine with ``capacity``, or None."""
    replicas = plan.replicas()
    for r in replicas:
        if r.resources.tpus:
            return (
                f"{r.name} ({r.machine_type}) asks for {r.resources.tpus} TPU cores; the local "
                "executor has no TPUs. Use a CPU or GPU machine type."
            )
    biggest = max(replicas, key=lambda r: r.resources.gpus)
    have = f"this machine has {capacity.gpus}"
    if biggest.resources.gpus > capacity.gpus:
        kind = f" {biggest.resources.gpu_type}" if biggest.resources.gpu_type else ""
        return f"{biggest.name} asks for {biggest.resources.gpus}{kind} GPU(s) but {have}."
    total = plan.total_resources()
    if total.gpus > capacity.gpus:
        parts = ", ".join(f"{r.name} {r.resources.gpus}" for r in replicas if r.resources.gpus)
        return f"the replicas ask for {total.gpus} GPUs in total ({parts}) but {have}."
    if strict:
        cpus = {r.name: r.resources.cpus for r in replicas}
        memory = {r.name: r.resources.memory_gib for r in replicas}
        return _strict_problem(cpus, capacity.cpus, "vCPUs") or _strict_problem(
            memory, capacity.memory_gib, "GiB of memory"
        )
    return None


def _strict_problem(need: Mapping[str, float], have: float, what: str) -> str | None:
    biggest = max(need, key=lambda name: need[name])
    strict = f"this machine has {have:g} (strict placement is on)"
    if need[biggest] > have:
        return f"{biggest} asks for {need[biggest]:g} {what} but {strict}."
    if sum(need.values()) > have:
        return f"the replicas ask for {sum(need.values()):g} {what} in total but {strict}."
    return None


def assign_gpus(plan: ReplicaPlan, free: Sequence[int]) -> dict[str, list[int]]:
    """Each replica's devices, lowest free ids first; ResourceExhausted if too few are free."""
    need = plan.total_resources().gpus
    if need > len(free):
        raise ResourceExhausted(
            f"The run needs {need} GPU(s) but only {len(free)} are free now; wait for a run to end."
        )
    pool = sorted(free)
    out = {}
    for replica in plan.replicas():
        count = replica.resources.gpus
        out[replica.name], pool = pool[:count], pool[count:]
    return out


def free_ports(count: int, reserved: set[int], port_range: tuple[int, int]) -> list[int]:
    """``count`` ports in ``port_range`` that no running run holds and 127.0.0.1 can bind."""
    ports: list[int] = []
    low, high = port_range
    for port in range(low, high + 1):
        if len(ports) == count:
            break
        if port not in reserved and _bindable(port):
            ports.append(port)
    if len(ports) < count:
        raise ResourceExhausted(
            f"No {count} free ports in {low}-{high} on 127.0.0.1; wait for a run to end."
        )
    return ports


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def detect_gpus() -> list[int]:
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    ids = [
        line.split(":")[0].split()[1] for line in listing.splitlines() if line.startswith("GPU ")
    ]
    return [int(i) for i in ids if i.isdigit()]


def memory_gib() -> float:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / (1 << 20), 2)
    except OSError:
        pass
    return 0.0


def local_handles(running: Iterable[RunHandle]) -> list[RunHandle]:
    return [h for h in running if h.get("executor") == "local"]


def resources_of(running: Iterable[RunHandle]) -> Resources:
    total = Resources(0, 0)
    for handle in local_handles(running):
        doc = handle.get("resources") or {}
        total = total + Resources(float(doc.get("cpus", 0)), float(doc.get("memory_gib", 0)))
    return total


def resources_doc(resources: Resources) -> dict[str, float]:
    return {"cpus": resources.cpus, "memory_gib": resources.memory_gib, "gpus": resources.gpus}


def ports_of(running: Iterable[RunHandle]) -> set[int]:
    return {
        int(r["port"])
        for h in local_handles(running)
        for r in h["replicas"]
        if r.get("port") is not None
    }
